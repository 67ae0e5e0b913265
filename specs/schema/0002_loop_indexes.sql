-- 0002_loop_indexes: an index for each query the loop and `alloop status` run that 0001 left to a
-- full scan or a sort, so they stay fast on a pool of a million images (issue 14).

-- The pool count of `alloop status`: COUNT(*) reads the narrowest index (about 90 ms -> 3 ms at
-- 1M images), and which images are set aside as missing or changed.
CREATE INDEX images_state ON images(state);

-- labeled_ids(split), annotations(split) and the train/val counts: the split's rows only.
CREATE INDEX labels_split ON labels(split);

-- queued_ids() and the queued count: DISTINCT image_id over the selections, each checked against
-- labels by primary key.
CREATE INDEX tag_members_image ON tag_members(image_id);

-- tag_members(name): a tag's members already in pick order, no sort.
CREATE INDEX tag_members_order ON tag_members(tag_id, pick_order);
