"""The SQLite store: migrations, transactions, labels never lost."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from alloop.boxes import Box, ImageAnnotation
from alloop.errors import StoreError
from alloop.store import MIGRATIONS, Store


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "alloop.db", create=True)
    s.add_images([("a.jpg", "sha-a", 100, 80), ("sub/b.jpg", "sha-b", 100, 80), ("c.jpg", "sha-c", 50, 50)])
    s.add_classes(["apple", "leaf"])
    yield s
    s.close()


def test_migrations_are_recorded_and_idempotent(tmp_path):
    path = tmp_path / "alloop.db"
    Store(path, create=True).close()
    s = Store(path)
    names = [r[0] for r in s.conn.execute("SELECT name FROM schema_migrations")]
    assert names == [name for name, _ in MIGRATIONS]
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="store not found"):
        Store(tmp_path / "nope.db")


def test_store_from_newer_alloop_is_refused(tmp_path):
    path = tmp_path / "alloop.db"
    Store(path, create=True).close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO schema_migrations VALUES ('9999_future', 'x')")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer alloop"):
        Store(path)


def test_corrupt_store_names_the_backup_folder(tmp_path):
    path = tmp_path / "alloop.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="backups"):
        Store(path)


def test_add_images_ignores_known_paths(store):
    assert store.add_images([("a.jpg", "sha-a", 100, 80), ("d.jpg", "sha-d", 10, 10)]) == 1
    assert [r.path for r in store.images()] == ["a.jpg", "sub/b.jpg", "c.jpg", "d.jpg"]


def test_transaction_rolls_back_everything_on_error(store):
    before = store.counts()
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.add_images([("x.jpg", "sha-x", 1, 1)])
            store.create_tag("t", iteration=0, method="random", members=[(1, None, None)])
            raise RuntimeError("crash mid-stage")
    assert store.counts() == before
    assert store.tag("t") is None


def test_labels_corrections_keep_the_old_version(store):
    ids = {r.path: r.id for r in store.images()}
    ann = ImageAnnotation("a.jpg", 100, 80, (Box(1, 2, 30, 40, "apple"),))
    assert store.write_labels([(ids["a.jpg"], ann, "train")], iteration=1, source="l1.json")["new"] == 1
    # The same labels again change nothing.
    assert store.write_labels([(ids["a.jpg"], ann, "train")], iteration=2, source="l2.json")["unchanged"] == 1
    fixed = ImageAnnotation("a.jpg", 100, 80, (Box(1, 2, 30, 40, "apple"), Box(50, 5, 60, 20, "leaf")))
    assert store.write_labels([(ids["a.jpg"], fixed, "val")], iteration=2, source="l2.json")["corrected"] == 1
    (row, got, split), = store.annotations()
    assert len(got.boxes) == 2 and split == "train"  # the split of an image never changes
    assert store.label_revisions() == 1


def test_empty_annotation_means_labeled_with_no_objects(store):
    ids = {r.path: r.id for r in store.images()}
    store.write_labels([(ids["c.jpg"], ImageAnnotation("c.jpg", 50, 50, ()), "train")], iteration=1, source="x")
    assert store.labeled_ids() == {ids["c.jpg"]}
    assert store.annotations()[0][1].boxes == ()


def test_queued_is_selected_minus_labeled(store):
    ids = [r.id for r in store.images()]
    store.create_tag("initial-selection", iteration=0, method="coreset",
                     members=[(ids[0], 0.5, None), (ids[1], 0.25, float("nan"))])
    assert store.queued_ids() == {ids[0], ids[1]}
    store.write_labels([(ids[0], ImageAnnotation("a.jpg", 100, 80, ()), "train")], iteration=1, source="x")
    assert store.queued_ids() == {ids[1]}
    members = store.tag_members("initial-selection")
    assert [m.pick_order for m in members] == [0, 1]
    assert members[1].score is None  # NaN is stored as NULL, never as a poisoned float


def test_delete_iteration_never_touches_labels(store):
    ids = [r.id for r in store.images()]
    store.start_iteration(1, method="coral", score_spec="entropy:max", config={})
    store.write_labels([(ids[0], ImageAnnotation("a.jpg", 100, 80, ()), "train")], iteration=1, source="x")
    store.write_scores(1, "entropy:max", [ids[1]], np.array([0.5]))
    store.create_tag("iteration-1", iteration=1, method="coral", members=[(ids[2], 1.0, 0.5)])
    store.finish_stage(1, "import", seconds=0.1)
    store.delete_iteration(1)
    assert store.iteration(1) is None and store.stages(1) == {} and store.tag("iteration-1") is None
    assert store.labeled_ids() == {ids[0]}


def test_backup_is_a_readable_copy(store, tmp_path):
    store.backup_to(tmp_path / "backup" / "b.db")
    copy = Store(tmp_path / "backup" / "b.db")
    assert copy.counts()["images"] == 3 and copy.classes() == ["apple", "leaf"]
    copy.close()


def test_embedding_index_roundtrip(store):
    store.add_embedding_rows("key1", "shard-00000.npy", ["sha-a", "sha-b"])
    assert store.embedding_rows("key1") == {"sha-a": ("shard-00000.npy", 0), "sha-b": ("shard-00000.npy", 1)}
    assert store.embedding_rows("other") == {}


def test_annotations_by_split_and_available_images_only(store):
    # Issue 19: a labeled image set aside as missing must not stop training; its labels stay.
    ids = {r.path: r.id for r in store.images()}
    a = ImageAnnotation("a.jpg", 100, 80, (Box(1, 2, 30, 40, "apple"), Box(3, 4, 10, 10, "leaf")))
    b = ImageAnnotation("sub/b.jpg", 100, 80, (Box(5, 5, 20, 20, "leaf"),))
    c = ImageAnnotation("c.jpg", 50, 50, ())
    store.write_labels([(ids["a.jpg"], a, "train"), (ids["sub/b.jpg"], b, "val"), (ids["c.jpg"], c, "train")],
                       iteration=1, source="l.json")
    assert [x[1] for x in store.annotations()] == [a, b, c]
    assert [x[1] for x in store.annotations("train")] == [a, c] and [x[1] for x in store.annotations("val")] == [b]
    store.set_image_state(ids["a.jpg"], "missing")
    assert [x[1] for x in store.annotations("train", available=True)] == [c]
    assert [x[1] for x in store.annotations("train")] == [a, c]  # nothing is lost
    assert store.labeled_ids() == set(ids.values())
