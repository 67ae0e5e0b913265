"""A small store with three images and two classes."""

from __future__ import annotations

import pytest

from alloop.store import Store


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "alloop.db", create=True)
    s.add_images([("a.jpg", "sha-a", 100, 80), ("sub/b.jpg", "sha-b", 100, 80), ("c.jpg", "sha-c", 50, 50)])
    s.add_classes(["apple", "leaf"])
    yield s
    s.close()


@pytest.fixture()
def ids(store) -> dict[str, int]:
    """Image id by path."""
    return {r.path: r.id for r in store.images()}
