"""Tags: each selection's batch in pick order, and the queue of picked-but-unlabeled images."""

from __future__ import annotations

from alloop.boxes import ImageAnnotation


def test_queued_is_selected_minus_labeled(store, ids):
    store.create_tag("initial-selection", iteration=0, method="coreset",
                     members=[(ids["a.jpg"], 0.5, None), (ids["sub/b.jpg"], 0.25, float("nan"))])
    assert store.queued_ids() == {ids["a.jpg"], ids["sub/b.jpg"]} and store.counts()["queued"] == 2
    store.write_labels([(ids["a.jpg"], ImageAnnotation("a.jpg", 100, 80, ()), "train")], iteration=1, source="x")
    assert store.queued_ids() == {ids["sub/b.jpg"]} and store.counts()["queued"] == 1
    members = store.tag_members("initial-selection")
    assert [(m.path, m.pick_order) for m in members] == [("a.jpg", 0), ("sub/b.jpg", 1)]
    assert members[1].score is None  # NaN is stored as NULL, never as a poisoned float


def test_an_image_in_two_tags_is_queued_once(store, ids):
    store.create_tag("t1", iteration=0, method="random", members=[(ids["c.jpg"], None, None)])
    store.create_tag("t2", iteration=1, method="random", members=[(ids["c.jpg"], None, None)])
    assert store.queued_ids() == {ids["c.jpg"]} and store.counts()["queued"] == 1


def test_tag_by_name_with_size_options_and_export_dir(store, ids):
    store.create_tag("iteration-1", iteration=1, method="coral", options={"alpha": 0.5},
                     members=[(ids["c.jpg"], 1.0, 0.5), (ids["a.jpg"], 0.5, 0.25)])
    store.set_tag_export_dir("iteration-1", "artifacts/exports/iteration-1")
    tag = store.tag("iteration-1")
    assert (tag.size, tag.method, dict(tag.options)) == (2, "coral", {"alpha": 0.5})
    assert tag.export_dir == "artifacts/exports/iteration-1" and store.tags() == [tag]
    assert [m.path for m in store.tag_members("iteration-1")] == ["c.jpg", "a.jpg"]
    assert store.tag("nope") is None and store.tag_members("nope") == []


def test_delete_tag_keeps_images_and_labels(store, ids):
    store.create_tag("t", iteration=0, method="random", members=[(ids["a.jpg"], None, None)])
    store.write_labels([(ids["a.jpg"], ImageAnnotation("a.jpg", 100, 80, ()), "train")], iteration=1, source="x")
    store.delete_tag("t")
    assert store.tags() == [] and store.counts()["images"] == 3 and store.labeled_ids() == {ids["a.jpg"]}
    assert store.conn.execute("SELECT COUNT(*) FROM tag_members").fetchone()[0] == 0
