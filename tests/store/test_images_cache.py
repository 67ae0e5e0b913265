"""The pool's rows are read once and served from memory until the images table changes."""

from __future__ import annotations

import sqlite3

from alloop.store import Store


def _store(tmp_path) -> Store:
    store = Store(tmp_path / "alloop.db", create=True)
    store.add_images([("a.jpg", "1" * 64, 10, 10), ("b.jpg", "2" * 64, 20, 20)])
    return store


def test_whole_pool_reads_share_one_read_until_this_store_writes(tmp_path, monkeypatch):
    store = _store(tmp_path)
    first = store.images()
    assert [r.path for r in first] == ["a.jpg", "b.jpg"]
    first.clear()  # callers get their own list
    assert store.images() == store.images(state="ok") and len(store.images()) == 2
    assert store._all_images() is store._all_images()  # one read served twice
    store.set_image_state(store.images()[0].id, "missing")
    assert [r.path for r in store.images(state="ok")] == ["b.jpg"]
    store.add_images([("c.jpg", "3" * 64, 5, 5)])
    assert set(store.image_by_path()) == {"a.jpg", "b.jpg", "c.jpg"}
    store.close()


def test_a_write_by_another_connection_is_seen(tmp_path):
    store = _store(tmp_path)
    assert len(store.images()) == 2
    other = sqlite3.connect(tmp_path / "alloop.db")
    other.execute("UPDATE images SET state = 'changed' WHERE path = 'a.jpg'")
    other.commit()
    other.close()
    assert [r.path for r in store.images(state="ok")] == ["b.jpg"]
    store.close()
