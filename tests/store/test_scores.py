"""Per-image scores of each iteration and the embedding cache's index."""

from __future__ import annotations

import numpy as np


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
