"""Opening, transactions and backups of the store file."""

from __future__ import annotations

import pytest

from alloop.errors import StoreError
from alloop.store import Store


def test_opened_in_wal_mode_with_foreign_keys(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="store not found"):
        Store(tmp_path / "nope.db")


def test_corrupt_store_names_the_backup_folder(tmp_path):
    path = tmp_path / "alloop.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="backups"):
        Store(path)


def test_transaction_rolls_back_everything_on_error(store):
    before = store.counts()
    with pytest.raises(RuntimeError), store.transaction():
        store.add_images([("x.jpg", "sha-x", 1, 1)])
        store.create_tag("t", iteration=0, method="random", members=[(1, None, None)])
        raise RuntimeError("crash mid-stage")
    assert store.counts() == before
    assert store.tag("t") is None


def test_nested_transactions_join_the_outer_one(store):
    with pytest.raises(RuntimeError), store.transaction():
        with store.transaction():
            store.add_classes(["twig"])
        assert store.classes() == ["apple", "leaf", "twig"]  # visible inside, not committed yet
        raise RuntimeError("the outer unit fails")
    assert store.classes() == ["apple", "leaf"]


def test_backup_is_a_readable_copy(store, tmp_path):
    store.backup_to(tmp_path / "backup" / "b.db")
    with Store(tmp_path / "backup" / "b.db") as copy:
        assert copy.counts()["images"] == 3 and copy.classes() == ["apple", "leaf"]
    assert store.integrity_check() == "ok"
