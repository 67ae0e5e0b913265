"""Per-image scores of each iteration and the embedding cache's index."""

from __future__ import annotations

import numpy as np
import pytest


def test_scores_round_trip_and_replace(store, ids):
    a, b = ids["a.jpg"], ids["sub/b.jpg"]
    store.write_scores(2, "entropy:max", [a, b], np.array([0.5, 0.25], np.float32))
    store.write_scores(2, "entropy:max", [a], np.array([0.75]))
    store.write_scores(2, "least_confidence:max", [a], np.array([0.1]))
    assert store.scores(2, "entropy:max") == {a: 0.75, b: 0.25}
    assert store.score_names(2) == ["entropy:max", "least_confidence:max"] and store.score_names(1) == []


def test_embedding_index_roundtrip(store):
    store.add_embedding_rows("key1", "shard-00000.npy", ["sha-a", "sha-b"])
    store.add_embedding_rows("key2", "shard-00000.npy", ["sha-a"])
    assert store.embedding_rows("key1") == {"sha-a": ("shard-00000.npy", 0), "sha-b": ("shard-00000.npy", 1)}
    assert store.embedding_rows("other") == {}
    assert store.embedding_shards() == {("key1", "shard-00000.npy"), ("key2", "shard-00000.npy")}


def test_a_score_is_one_row_of_arrays_and_old_rows_still_read(store, ids):
    a, b = ids["a.jpg"], ids["sub/b.jpg"]
    store.write_scores(3, "margin:max", [b, a, b], np.array([0.1, 0.2, 0.3]))  # the last value of b wins
    assert store.conn.execute("SELECT COUNT(*) FROM score_arrays").fetchone()[0] == 1
    got_ids, got_values = store.score_array(3, "margin:max")
    assert got_ids.tolist() == sorted([a, b]) and store.scores(3, "margin:max") == {a: 0.2, b: 0.3}
    # a project an older alloop scored: one row per image in `scores`
    store.conn.execute("INSERT INTO scores (iteration, image_id, name, value) VALUES (4, ?, 'old', 0.5)", (a,))
    assert store.scores(4, "old") == {a: 0.5} and store.score_names(4) == ["old"]
    store.write_scores(4, "old", [b], np.array([0.25]))  # folds the old rows in
    assert store.scores(4, "old") == {a: 0.5, b: 0.25}
    assert store.conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 0
    store.delete_iteration(3)
    assert store.scores(3, "margin:max") == {} and store.score_names(3) == []
    with pytest.raises(ValueError, match="2 image ids for 1 values"):
        store.write_scores(5, "x", [a, b], np.array([0.5]))


def test_embedding_index_is_read_once_until_it_changes(store):
    store.add_embedding_rows("k", "shard-00000.npy", ["sha-a"])
    first = store.embedding_rows("k")
    first["sha-x"] = ("elsewhere", 9)  # callers get their own copy
    assert store.embedding_rows("k") == {"sha-a": ("shard-00000.npy", 0)}
    store.add_embedding_rows("k", "shard-00001.npy", ["sha-b"])
    assert set(store.embedding_rows("k")) == {"sha-a", "sha-b"} and store.embedding_rows("other") == {}
    import sqlite3

    other = sqlite3.connect(store.path)
    other.execute("DELETE FROM embedding_index WHERE sha256 = 'sha-a'")
    other.commit()
    other.close()
    assert set(store.embedding_rows("k")) == {"sha-b"}
