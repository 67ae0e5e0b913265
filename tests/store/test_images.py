"""The image pool's tables."""

from __future__ import annotations


def test_add_images_counts_only_new_paths(store):
    assert store.add_images([("a.jpg", "sha-a", 100, 80), ("d.jpg", "sha-d", 10, 10)]) == 1
    assert store.add_images(iter([("e.jpg", "sha-e", 10, 10), ("f.jpg", "sha-f", 10, 10)])) == 2
    assert [r.path for r in store.images()] == ["a.jpg", "sub/b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"]


def test_images_by_ids_and_state_in_one_query(store, ids):
    store.set_image_state(ids["c.jpg"], "missing")
    assert [r.path for r in store.images({ids["c.jpg"], ids["a.jpg"], 999})] == ["a.jpg", "c.jpg"]
    assert [r.path for r in store.images(state="ok")] == ["a.jpg", "sub/b.jpg"]
    assert [r.path for r in store.images([ids["c.jpg"]], state="ok")] == [] and store.images([]) == []


def test_image_state_and_hash(store, ids):
    store.set_image_state(ids["a.jpg"], "changed", sha256="sha-new")
    store.set_image_state(ids["c.jpg"], "missing")
    rows = store.image_by_path()
    assert (rows["a.jpg"].state, rows["a.jpg"].sha256) == ("changed", "sha-new")
    assert (rows["c.jpg"].state, rows["c.jpg"].sha256) == ("missing", "sha-c")


def test_bad_images_keep_the_latest_reason(store):
    store.record_bad_images([("z.jpg", "truncated"), ("y.jpg", "not an image")])
    store.record_bad_images([("z.jpg", "still truncated")])
    assert store.bad_images() == [("y.jpg", "not an image"), ("z.jpg", "still truncated")]
    assert store.counts()["bad_images"] == 2
