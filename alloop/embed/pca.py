"""Optional PCA of embeddings to fewer dimensions, seeded, rows L2-normalised again."""

from __future__ import annotations

import numpy as np

from alloop.errors import EmbedError


def reduce_dims(x: np.ndarray, d: int, seed: int = 0, *, normalize: bool = True) -> np.ndarray:
    """(N, D) -> (N, d) float32 by PCA (scikit-learn, ``random_state=seed``); rows re-normalised.

    Projection onto the top-d principal components of the centred data (Pearson 1901); rows are
    L2-normalised afterwards (unless ``normalize=False``) so the result is a valid embedding again.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise EmbedError(f"PCA needs an (N, D) array, got shape {x.shape}")
    n, dim = x.shape
    if not isinstance(d, (int, np.integer)) or d < 1:
        raise EmbedError(f"PCA dimension must be a positive integer, got {d!r}; fix the pca option")
    if d > min(n, dim):
        raise EmbedError(
            f"PCA to {d} dims needs at least {d} images and {d} input dims; have {n} images of {dim} dims: "
            f"lower the pca option to <= {min(n, dim)}"
        )
    if not np.isfinite(x).all():
        raise EmbedError("PCA input has non-finite values; re-embed the pool")
    from sklearn.decomposition import PCA

    out = PCA(n_components=int(d), random_state=seed).fit_transform(x.astype(np.float64)).astype(np.float32)
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.where(norms > 0, norms, 1.0)
    return out
