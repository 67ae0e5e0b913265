"""Typicality: how dense the embedding space is around an image (TypiClust, Hacohen et al., ICML 2022).

    typicality(x) = 1 / (mean_{x' in kNN(x)} ||x - x'|| + eps),   K = 20 neighbours

A typical image sits among many similar ones; an outlier has far neighbours. "Active Learning on a
Budget" shows that at low budgets the images worth labeling first are the typical ones, while
coreset's farthest-point rule buys outliers (what benchmarks/RESULTS.md measured: rare scenes
over-bought, fewer boxes per label). The value is used by the ``typiclust`` selector and as the
``typicality`` term of ``coral``.

Exact k-NN over every row up to :data:`EXACT_ROWS` images. Above that the neighbours are searched in a
seeded uniform reference sample of :data:`REFERENCE_ROWS` rows, a density estimate of the same kind (the
K-th neighbour distance of a sample scales with the density), so 1M x 128 costs one 1M x 4096 GEMM pass
instead of 1M x 1M.

Speed, with the plain pass's values bit for bit (``topk(clamp(||q||^2 + ||r||^2 - 2 q.r))`` per block
of 2048 rows): the products go into a reused buffer and the distances are formed in place,
``ROW_CHUNK`` rows at a time so the block stays in cache (the plain expression allocated four 32 MB
temporaries per block); the pass runs on ``threads`` intra-op threads (default 1, as the selection
engine: on a shared CPU one descheduled OpenMP thread stalls every op; benchmarks/RESULTS.md, "Threads").
"""

from __future__ import annotations

import numpy as np
import torch

from alloop.errors import SelectionError
from alloop.select.coreset import DEFAULT_THREADS, engine_settings, gemm_threads

K_NEIGHBOURS = 20
EXACT_ROWS = 20_000
REFERENCE_ROWS = 4096
GEMM_ROWS = 2048  # rows per distance GEMM (2048 x 4096 products: 32 MB)
ROW_CHUNK = 256  # rows per top-k block (256 x 4096 float32: 4 MB, stays in cache)
EPS = 1e-5


def knn_distances(
    x: np.ndarray | torch.Tensor,
    k: int = K_NEIGHBOURS,
    *,
    rows: np.ndarray | None = None,
    seed: int = 0,
    exact_rows: int = EXACT_ROWS,
    threads: int = DEFAULT_THREADS,
) -> np.ndarray:
    """(len(rows), k') float32 Euclidean distances to each row's nearest other rows, ascending.

    ``rows``: which rows to compute for (default all); neighbours are searched among all rows (or a
    seeded reference sample of ``exact_rows`` above that size). k' = min(k, available neighbours);
    a row is never its own neighbour, duplicates of it are (distance 0). ``threads``: intra-op
    threads for the pass (0: torch's current setting).
    """
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x).float()
    n = xt.shape[0]
    rows_np = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    if n > exact_rows:
        ref = np.sort(np.random.default_rng(seed).choice(n, min(REFERENCE_ROWS, exact_rows), replace=False))
    else:
        ref = np.arange(n)
    kk = min(int(k), len(ref) - 1)
    if kk <= 0:
        return np.zeros((len(rows_np), 0), np.float32)
    out = np.empty((len(rows_np), kk), np.float32)
    pos_in_ref = np.full(n, -1, np.int64)
    pos_in_ref[ref] = np.arange(len(ref))
    with engine_settings(threads) as gemm, gemm_threads(gemm):
        r = xt[torch.as_tensor(ref)]
        r2 = (r * r).sum(1)
        qr = torch.empty((min(GEMM_ROWS, len(rows_np)), len(ref)), device=xt.device)
        buf = torch.empty((min(ROW_CHUNK, len(rows_np)), len(ref)), device=xt.device)
        for start in range(0, len(rows_np), GEMM_ROWS):
            idx = rows_np[start : start + GEMM_ROWS]
            q = xt[torch.as_tensor(idx)]
            # One product per GEMM_ROWS rows, as the plain pass: MKL's rounding of a product depends
            # on the shape it is given, so keeping the blocks keeps the values.
            torch.mm(q, r.T, out=qr[: len(idx)])
            q2 = (q * q).sum(1, keepdim=True)
            own = pos_in_ref[idx]
            for s in range(0, len(idx), ROW_CHUNK):
                e = min(s + ROW_CHUNK, len(idx))
                d2 = buf[: e - s]
                # (||q||^2 + ||r||^2) - 2 q.r, rounded as the plain expression (2 q.r is exact).
                torch.add(q2[s:e], r2[None, :], out=d2)
                d2.sub_(qr[s:e], alpha=2.0)
                mask = own[s:e] >= 0
                if mask.any():  # a row is not its own neighbour
                    d2[torch.as_tensor(np.flatnonzero(mask)), torch.as_tensor(own[s:e][mask])] = float("inf")
                # clamp(., 0) after the top-k: it is monotone, so the k smallest are the same values.
                vals = torch.topk(d2, kk, dim=1, largest=False).values.clamp_(min=0.0)
                out[start + s : start + e] = vals.sqrt_().cpu().numpy()
    return out


def typicality(
    embeddings: np.ndarray | torch.Tensor,
    k: int = K_NEIGHBOURS,
    *,
    rows: np.ndarray | None = None,
    seed: int = 0,
    exact_rows: int = EXACT_ROWS,
    threads: int = DEFAULT_THREADS,
) -> np.ndarray:
    """(len(rows),) float64: 1 / (mean distance to the k nearest neighbours + 1e-5) (TypiClust)."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0)
    if n == 1:
        return np.ones(1)
    if k < 1:
        raise SelectionError(f"typicality needs at least 1 neighbour, got k={k}")
    d = knn_distances(embeddings, k, rows=rows, seed=seed, exact_rows=exact_rows, threads=threads)
    return 1.0 / (d.astype(np.float64).mean(axis=1) + EPS)


def normalised(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """(v - min) / (max - min) over the pool rows, 0 elsewhere (all 0 when equal)."""
    v = np.asarray(values, dtype=np.float64)
    out = np.zeros(len(v), np.float32)
    if len(pool) == 0:
        return out
    lo, hi = float(v[pool].min()), float(v[pool].max())
    if hi > lo:
        out[pool] = ((v[pool] - lo) / (hi - lo)).astype(np.float32)
    return out


__all__ = ["EXACT_ROWS", "K_NEIGHBOURS", "REFERENCE_ROWS", "knn_distances", "normalised", "typicality"]
