"""MaxHerding (Bae, Lee, Wang & Sutherland, "Generalized Coverage for More Robust Low-Budget Active
Learning", ECCV 2024).

Greedy maximisation of the generalised coverage of the pool by the labeled set S:

    C(S) = (1 / N) * sum_i max_{s in S} k(x_i, s),   k(x, y) = exp(-||x - y||^2 / (2 sigma^2))

Each pick is the candidate c with the largest gain sum_i max(0, k(x_i, c) - cur_i), cur_i being the
current coverage of x_i. With a 0/1 ball kernel this is ProbCover (Yehuda et al., NeurIPS 2022); the
Gaussian kernel removes ProbCover's fragile radius, which is why the paper calls it more robust. C
is monotone submodular, so the greedy gets (1 - 1/e) of the optimum.

``sigma``: ``auto`` (default) takes the median distance of an image to its 20th nearest neighbour,
the scale at which a pick covers its own neighbourhood; or a positive number in embedding units.

``uncertainty`` (w in [0, 1], default 0 = MaxHerding exactly): once a model exists, each covered point
counts with weight (1 - w) + w * s_i, s_i its uncertainty min-max normalised over the pool, so the
greedy covers the uncertain part of the pool first; in the spirit of Uncertainty Herding (Bae et al.,
"One Active Learning Method for All Label Budgets", 2025). Coverage is relative to what is labeled: a
scene with no labeled image is uncovered, so it is bought even where the model's uncertainty there is
low, which is exactly the blind spot of issue 20.

Exact (every row is a candidate and counts in C) up to :data:`EXACT_ROWS` images: the N x N kernel
is computed once in float32 (256 MB at 8k); picks are made by lazy greedy evaluation, exact for a
submodular objective. Above that both the
candidates and the covered points are a seeded uniform sample of :data:`EXACT_ROWS` unlabeled rows
(plus the labeled rows as the starting set), an unbiased estimate of C.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np
import torch

from alloop.errors import SelectionError
from alloop.select.base import Selection, SelectionInputs, make_selection, unit_weight
from alloop.select.typicality import K_NEIGHBOURS, knn_distances

EXACT_ROWS = 8192
ROW_CHUNK = 1024


def auto_sigma(x: np.ndarray, seed: int = 0) -> float:
    """Median distance to the 20th nearest neighbour (over at most 4096 rows); > 0."""
    rows = np.arange(len(x))
    if len(rows) > 4096:
        rows = np.sort(np.random.default_rng(seed).choice(len(x), 4096, replace=False))
    d = knn_distances(x, K_NEIGHBOURS, rows=rows, seed=seed)
    sigma = float(np.median(d[:, -1])) if d.size else 0.0
    return sigma if sigma > 0 else 1.0


def kernel(a: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    """exp(-||a_i - b_j||^2 / (2 sigma^2)), float32, (len(a), len(b))."""
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return torch.exp(d2.clamp_(min=0.0).div_(-2.0 * sigma * sigma))


def max_herding(
    embeddings: np.ndarray, labeled: np.ndarray, k: int, *, sigma: float | str = "auto", seed: int = 0,
    exact_rows: int = EXACT_ROWS, scores: np.ndarray | None = None, uncertainty: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """k picks (rows, in order) and each pick's coverage gain (as a share of the covered points)."""
    x = np.asarray(embeddings, dtype=np.float32)
    labeled = np.asarray(labeled, dtype=bool)
    n = len(x)
    unl = np.flatnonzero(~labeled)
    k = int(min(k, len(unl)))
    if sigma == "auto":
        sig = auto_sigma(x, seed)
    else:
        sig = float(sigma)
        if not (math.isfinite(sig) and sig > 0):
            raise SelectionError(f"maxherding option sigma must be 'auto' or a positive number, got {sigma!r}")
    exact = n <= exact_rows
    cand = unl if exact or len(unl) <= exact_rows else np.sort(
        np.random.default_rng(seed).choice(unl, exact_rows, replace=False))
    points = np.arange(n) if exact else np.concatenate([np.flatnonzero(labeled), cand])
    xt = torch.from_numpy(x)
    xp = xt[torch.as_tensor(points)]
    # K[c, p]: kernel between candidate c and covered point p, computed once.
    kmat = torch.cat([kernel(xt[torch.as_tensor(cand[s:s + ROW_CHUNK])], xp, sig)
                      for s in range(0, len(cand), ROW_CHUNK)]) if len(cand) else torch.zeros(0, len(points))
    cur = torch.zeros(len(points))
    lab = np.flatnonzero(labeled)
    for s in range(0, len(lab), ROW_CHUNK):
        cur = torch.maximum(cur, kernel(xt[torch.as_tensor(lab[s:s + ROW_CHUNK])], xp, sig).max(0).values)
    picks = np.empty(k, np.int64)
    gains = np.empty(k, np.float32)
    weight = torch.ones(len(points))
    if scores is not None and uncertainty > 0:
        s = np.asarray(scores, np.float64)
        lo, hi = float(s[unl].min()), float(s[unl].max())
        sn = np.clip((s - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros(n)
        weight = torch.as_tensor((1.0 - uncertainty) + uncertainty * sn[points], dtype=torch.float32)
    # Lazy greedy (Minoux 1978): coverage is submodular, so a candidate's gain only shrinks as picks are
    # added and last round's gain is an upper bound. Re-evaluate the best bound until it stays on top:
    # the same picks as a full pass per pick, at a few rows per pick instead of the whole matrix.
    gains_now = ((kmat - cur[None, :]).clamp_(min=0.0) @ weight).tolist() if len(cand) else []
    heap = [(-g, j) for j, g in enumerate(gains_now)]
    heapq.heapify(heap)
    for t in range(k):
        while True:
            _, j = heapq.heappop(heap)
            g = float((kmat[j] - cur).clamp_(min=0.0) @ weight)
            if not heap or -heap[0][0] <= g:
                break
            heapq.heappush(heap, (-g, j))
        picks[t], gains[t] = cand[j], g / float(weight.sum())
        cur = torch.maximum(cur, kmat[j])
    info = {"sigma": sig, "exact": bool(exact), "coverage": float(cur.mean()),
            "uncertainty": float(uncertainty) if scores is not None else 0.0}
    return picks, gains, info


def run_maxherding(
    k: int, inputs: SelectionInputs, pool: np.ndarray, *, seed: int = 0, device: str = "cpu",
    sigma: float | str = "auto", uncertainty: float = 0.0,
) -> Selection:
    """The ``maxherding`` selector (deterministic below EXACT_ROWS images; ``seed`` samples above)."""
    assert inputs.embeddings is not None
    if isinstance(sigma, bool):
        raise SelectionError(f"maxherding option sigma must be 'auto' or a positive number, got {sigma!r}")
    if sigma != "auto":
        try:
            sigma = float(sigma)
        except (TypeError, ValueError):
            raise SelectionError(
                f"maxherding option sigma must be 'auto' or a positive number, got {sigma!r}") from None
    w = unit_weight("maxherding", "uncertainty", uncertainty)
    picks, gains, info = max_herding(inputs.embeddings, inputs.labeled, k, sigma=sigma, seed=seed,
                                     scores=inputs.scores, uncertainty=w)
    return make_selection("maxherding", picks, None, inputs.scores, {"seed": seed, **info}, objective=gains)


__all__ = ["EXACT_ROWS", "auto_sigma", "kernel", "max_herding", "run_maxherding"]
