-- 0003_score_arrays: a score of the whole pool as one row (issue 14). A step stores 8 scores per
-- image; at a million images that was 8 million rows of `scores` (about a minute of inserts on
-- 2 cores), and every reader wanted the whole pool's values anyway. Here each (iteration, score)
-- is one row: the image ids as little-endian int64 and the values as little-endian float64, both
-- sorted by image id. Rows an older alloop wrote to `scores` stay there and are still read.
CREATE TABLE score_arrays (
    iteration INTEGER NOT NULL,
    name TEXT NOT NULL,
    image_ids BLOB NOT NULL,
    score_values BLOB NOT NULL,
    PRIMARY KEY (iteration, name)
);
