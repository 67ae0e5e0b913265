"""The embedding cache: keyed by content hash and embedder key; a hit never recomputes."""

from __future__ import annotations

import numpy as np
import pytest

from alloop.embed.cache import cached_embeddings, load_cached_embeddings
from alloop.errors import EmbedError
from alloop.store import Store


class CountingEmbedder:
    """A real (tiny) embedder: mean colour of the file's bytes, L2-normalised; counts what it embeds."""

    name = "counting"

    def __init__(self, key: str = "k1", bad: bool = False) -> None:
        self._key, self.bad, self.embedded = key, bad, []

    def key(self) -> str:
        return self._key

    def embed(self, images, *, batch_size=32, progress=True):
        self.embedded.extend(images)
        rows = []
        for p in images:
            b = np.frombuffer(p.read_bytes(), np.uint8).astype(np.float32)
            v = np.array([b.mean(), b.std(), len(b) % 97 + 1.0], np.float32)
            rows.append(v / np.linalg.norm(v))
        out = np.stack(rows)
        return out * np.nan if self.bad else out


@pytest.fixture()
def setup(tmp_path):
    store = Store(tmp_path / "alloop.db", create=True)
    paths = []
    for i in range(5):
        p = tmp_path / f"img{i}.bin"
        p.write_bytes(bytes([i]) * (10 + i))
        paths.append(p)
    shas = [f"sha{i}" for i in range(5)]
    yield store, tmp_path / "emb", paths, shas
    store.close()


def test_second_run_computes_nothing(setup):
    store, directory, paths, shas = setup
    e = CountingEmbedder()
    first, misses = cached_embeddings(store, directory, e, shas, paths, progress=False)
    assert misses == 5 and len(e.embedded) == 5
    again, misses = cached_embeddings(store, directory, e, shas, paths, progress=False)
    assert misses == 0 and len(e.embedded) == 5
    np.testing.assert_array_equal(first, again)


def test_only_new_images_are_embedded_and_order_follows_the_request(setup):
    store, directory, paths, shas = setup
    e = CountingEmbedder()
    part, _ = cached_embeddings(store, directory, e, shas[:3], paths[:3], progress=False)
    full, misses = cached_embeddings(store, directory, e, shas[::-1], paths[::-1], progress=False)
    assert misses == 2 and sorted(p.name for p in e.embedded[3:]) == ["img3.bin", "img4.bin"]
    np.testing.assert_array_equal(full[::-1][:3], part)
    assert len(list(directory.glob("shard-*.npy"))) == 2


def test_same_content_under_two_names_is_embedded_once(setup):
    store, directory, paths, _ = setup
    e = CountingEmbedder()
    cached_embeddings(store, directory, e, ["same", "same"], paths[:2], progress=False)
    assert len(e.embedded) == 1


def test_another_embedder_key_is_a_separate_cache(setup):
    store, directory, paths, shas = setup
    cached_embeddings(store, directory, CountingEmbedder("k1"), shas, paths, progress=False)
    e2 = CountingEmbedder("k2")
    _, misses = cached_embeddings(store, directory.parent / "emb2", e2, shas, paths, progress=False)
    assert misses == 5
    assert load_cached_embeddings(store, directory, "k1", shas).shape == (5, 3)
    assert load_cached_embeddings(store, directory, "k1", ["unknown"]) is None


def test_non_finite_vectors_are_refused_and_nothing_is_indexed(setup):
    store, directory, paths, shas = setup
    with pytest.raises(EmbedError, match="non-finite"):
        cached_embeddings(store, directory, CountingEmbedder(bad=True), shas, paths, progress=False)
    assert store.embedding_rows("k1") == {}
