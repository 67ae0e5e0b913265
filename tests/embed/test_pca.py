"""PCA to fewer dimensions."""

from __future__ import annotations

import numpy as np
import pytest

from alloop.embed.pca import reduce_dims
from alloop.errors import EmbedError


def _embeddings(n: int = 40, dim: int = 32, rank: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_reduces_to_unit_float32_rows_deterministically():
    x = _embeddings()
    a = reduce_dims(x, 5, seed=1)
    b = reduce_dims(x, 5, seed=1)
    assert a.shape == (40, 5) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)


def test_keeps_pairwise_distances_of_data_in_a_low_rank_subspace():
    x = _embeddings(rank=3)
    y = reduce_dims(x, 3, seed=0, normalize=False)

    def distances(a):
        return np.linalg.norm(a[:, None, :] - a[None, :, :], axis=-1)

    np.testing.assert_allclose(distances(y), distances(x), atol=1e-4)


@pytest.mark.parametrize("d", [0, 41])
def test_impossible_dimension_is_an_error(d):
    with pytest.raises(EmbedError, match="pca option"):
        reduce_dims(_embeddings(), d)


def test_non_finite_input_is_an_error():
    x = _embeddings()
    x[3, 0] = np.nan
    with pytest.raises(EmbedError, match="non-finite"):
        reduce_dims(x, 2)
