"""Classes, labels and boxes: corrections keep the old version, reads take one query."""

from __future__ import annotations

import pytest

from alloop.boxes import Box, ImageAnnotation


def _selects(store, fn):
    """Run ``fn`` and return the SELECT statements it sent to SQLite."""
    seen: list[str] = []
    store.conn.set_trace_callback(seen.append)
    try:
        fn()
    finally:
        store.conn.set_trace_callback(None)
    return [s for s in seen if s.lstrip().upper().startswith("SELECT")]


def test_classes_keep_their_ids(store):
    store.add_classes(["leaf", "twig", "twig"])
    assert store.classes() == ["apple", "leaf", "twig"]


def test_labels_corrections_keep_the_old_version(store, ids):
    ann = ImageAnnotation("a.jpg", 100, 80, (Box(1, 2, 30, 40, "apple"),))
    assert store.write_labels([(ids["a.jpg"], ann, "train")], iteration=1, source="l1.json")["new"] == 1
    # The same labels again change nothing.
    assert store.write_labels([(ids["a.jpg"], ann, "train")], iteration=2, source="l2.json")["unchanged"] == 1
    fixed = ImageAnnotation("a.jpg", 100, 80, (Box(1, 2, 30, 40, "apple"), Box(50, 5, 60, 20, "leaf")))
    assert store.write_labels([(ids["a.jpg"], fixed, "val")], iteration=2, source="l2.json")["corrected"] == 1
    (_, got, split), = store.annotations()
    assert len(got.boxes) == 2 and split == "train"  # the split of an image never changes
    assert store.label_revisions() == 1
    assert store.label_iterations() == {ids["a.jpg"]: 1}


def test_an_image_listed_twice_ends_with_its_last_annotation(store, ids):
    first = ImageAnnotation("a.jpg", 100, 80, (Box(1, 2, 30, 40, "apple"),))
    second = ImageAnnotation("a.jpg", 100, 80, (Box(5, 5, 20, 20, "leaf"),))
    counts = store.write_labels([(ids["a.jpg"], first, "train"), (ids["a.jpg"], second, "train")],
                                iteration=1, source="l.json")
    assert counts == {"new": 1, "corrected": 1, "unchanged": 0}
    assert store.annotations()[0][1] == second
    assert store.label_revisions() == 1 and store.counts()["boxes"] == 1


def test_a_failed_write_leaves_no_label(store, ids):
    good = ImageAnnotation("a.jpg", 100, 80, (Box(1, 2, 30, 40, "apple"),))
    unknown = ImageAnnotation("c.jpg", 50, 50, (Box(1, 1, 9, 9, "pear"),))
    with pytest.raises(KeyError):
        store.write_labels([(ids["a.jpg"], good, "train"), (ids["c.jpg"], unknown, "train")], iteration=1, source="x")
    assert store.labeled_ids() == set() and store.counts()["boxes"] == 0


def test_empty_annotation_means_labeled_with_no_objects(store, ids):
    store.write_labels([(ids["c.jpg"], ImageAnnotation("c.jpg", 50, 50, ()), "train")], iteration=1, source="x")
    assert store.labeled_ids() == {ids["c.jpg"]}
    assert store.annotations()[0][1].boxes == ()


def test_annotations_by_split_and_available_images_only(store, ids):
    # Issue 19: a labeled image set aside as missing must not stop training; its labels stay.
    a = ImageAnnotation("a.jpg", 100, 80, (Box(1, 2, 30, 40, "apple"), Box(3, 4, 10, 10, "leaf")))
    b = ImageAnnotation("sub/b.jpg", 100, 80, (Box(5, 5, 20, 20, "leaf"),))
    c = ImageAnnotation("c.jpg", 50, 50, ())
    store.write_labels([(ids["a.jpg"], a, "train"), (ids["sub/b.jpg"], b, "val"), (ids["c.jpg"], c, "train")],
                       iteration=1, source="l.json")
    assert [x[1] for x in store.annotations()] == [a, b, c]
    assert [x[1] for x in store.annotations("train")] == [a, c] and [x[1] for x in store.annotations("val")] == [b]
    assert store.labeled_ids("val") == {ids["sub/b.jpg"]}
    store.set_image_state(ids["a.jpg"], "missing")
    assert [x[1] for x in store.annotations("train", available=True)] == [c]
    assert [x[1] for x in store.annotations("train")] == [a, c]  # nothing is lost
    assert store.labeled_ids() == set(ids.values())


@pytest.mark.parametrize("n", [3, 60])
def test_reads_and_writes_take_the_same_queries_for_any_batch(store, n):
    # Issue 15: no query per labeled image. The SELECTs sent must not grow with the batch.
    store.add_images([(f"p{i}.jpg", f"sha-p{i}", 64, 48) for i in range(n)])
    rows = [r for r in store.images() if r.path.startswith("p")]
    batch = [(r.id, ImageAnnotation(r.path, 64, 48, (Box(1, 1, 9, 9, "apple"),)), "train") for r in rows]
    assert len(_selects(store, lambda: store.write_labels(batch, iteration=1, source="l1"))) == 3
    fixed = [(i, ImageAnnotation(a.file_name, 64, 48, (Box(2, 2, 9, 9, "leaf"),)), s) for i, a, s in batch]
    assert len(_selects(store, lambda: store.write_labels(fixed, iteration=2, source="l2"))) == 3
    assert len(_selects(store, lambda: store.annotations("train"))) == 1
    assert store.label_revisions() == n and len(store.annotations()) == n
