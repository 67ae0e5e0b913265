-- 0001_initial: the tables of alloop 0.1 (images, classes, tags, labels, boxes, iterations, stages,
-- scores, embedding index). Released: never edit it; add a new numbered file instead.

CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,              -- posix path relative to the image root
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    added_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'ok'         -- ok | missing | changed
);
CREATE INDEX images_sha ON images(sha256);
CREATE TABLE bad_images (
    path TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    seen_at TEXT NOT NULL
);
CREATE TABLE classes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE tags (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    iteration INTEGER NOT NULL,
    method TEXT NOT NULL,
    created_at TEXT NOT NULL,
    export_dir TEXT,
    options_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE tag_members (
    tag_id INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id),
    pick_order INTEGER NOT NULL,
    distance REAL,
    score REAL,
    PRIMARY KEY (tag_id, image_id)
);
CREATE TABLE labels (
    image_id INTEGER PRIMARY KEY REFERENCES images(id),
    split TEXT NOT NULL CHECK (split IN ('train', 'val')),
    iteration INTEGER NOT NULL,
    source TEXT NOT NULL,
    labeled_at TEXT NOT NULL
);
CREATE TABLE boxes (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES labels(image_id),
    class_id INTEGER NOT NULL REFERENCES classes(id),
    x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
    attributes_json TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX boxes_image ON boxes(image_id);
-- Earlier versions of an image's labels, kept when a later import corrects them.
CREATE TABLE label_revisions (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id),
    boxes_json TEXT NOT NULL,
    source TEXT NOT NULL,
    replaced_at TEXT NOT NULL
);
CREATE TABLE iterations (
    n INTEGER PRIMARY KEY,
    status TEXT NOT NULL,                    -- running | done
    started_at TEXT NOT NULL,
    finished_at TEXT,
    method TEXT,
    score_spec TEXT,
    n_labeled INTEGER,
    n_train INTEGER,
    n_val INTEGER,
    map50 REAL,
    map REAL,
    checkpoint TEXT,
    metrics_json TEXT NOT NULL DEFAULT '{}',
    timings_json TEXT NOT NULL DEFAULT '{}',
    config_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE stages (
    iteration INTEGER NOT NULL,
    stage TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    seconds REAL,
    info_json TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (iteration, stage)
);
CREATE TABLE scores (
    iteration INTEGER NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images(id),
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (iteration, name, image_id)
);
CREATE TABLE embedding_index (
    sha256 TEXT NOT NULL,
    embedder_key TEXT NOT NULL,
    shard TEXT NOT NULL,                     -- file name under artifacts/embeddings/<key>/
    row INTEGER NOT NULL,
    PRIMARY KEY (embedder_key, sha256)
);
