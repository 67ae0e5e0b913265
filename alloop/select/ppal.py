"""``ppal``: uncertainty first, then diversity by category-conditioned matching similarity.

PPAL (Yang et al., "Plug and Play Active Learning for Object Detection", CVPR 2024;
github.com/ChenhongyiYang/PPAL, ``diversity_sampler.py`` and ``models/utils.py``) selects in two
stages:

1. **Candidates**: the ``ratio * k`` pool images with the highest uncertainty score (PPAL's is the
   difficulty-calibrated ``dcus``; ``ppal@dcus`` asks for it, any score works).
2. **Diversity among them**: k-medoids over the candidates under CCMS, the category-conditioned
   matching distance of two images. For image i's boxes a (score >= ``box_threshold``, at most
   ``max_boxes``, highest score first) and image j:

       d(i -> j) = sum_a s_a * m(a, j) / sum_a s_a,    m(a, j) = min over j's boxes b of class(a): 1 - cos(f_a, f_b)

   and m(a, j) = 2 (the largest cosine distance) when j has no box of a's class; the image distance
   is the symmetric 0.5 * (d(i -> j) + d(j -> i)). Two images are alike only when they hold
   similar-looking objects *of the same classes*, which whole-image embeddings do not see. f is the
   detector's own box descriptor (:attr:`alloop.boxes.Detections.features`).

   One rule differs from PPAL's code, where an image without boxes is at distance 0 from every image
   (their comment calls it a potential bug): here an image without boxes matches nothing, so it is
   at 1 from an image with boxes (0 one way, 2 the other) and at 0 from another empty one.

k-medoids starts from a farthest-first pick seeded by ``seed`` and alternates assignment and medoid
update (the member with the least summed distance to its cluster) until nothing changes (at most
``iterations`` rounds), as PPAL's ``kmeans`` does on its distance matrix. The medoids are the batch,
most uncertain first (a box budget keeps the prefix).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from alloop.errors import SelectionError
from alloop.select.base import PoolBoxes, Selection, SelectionInputs, make_selection, torch_device

DEFAULT_RATIO = 3.0
DEFAULT_BOX_THRESHOLD = 0.05
DEFAULT_MAX_BOXES = 32
DEFAULT_ITERATIONS = 100
NO_MATCH = 2.0  # cosine distance ranges over [0, 2]; "no box of that class" is the farthest
_BLOCK_ELEMENTS = 1 << 24  # similarity entries per block (rows x boxes of a class): bounds the temporaries


def candidate_boxes(
    boxes: PoolBoxes, images: np.ndarray, *, box_threshold: float, max_boxes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The boxes CCMS compares: of each of ``images`` (positions into the pool's rows), those scoring
    at least ``box_threshold``, its ``max_boxes`` best. Returns (image position 0..len(images)-1,
    label, score, L2-normalised feature) per box, images in the given order."""
    owner, label, score, rows = [], [], [], []
    for pos, image in enumerate(np.asarray(images, np.int64)):
        a, b = int(boxes.offsets[image]), int(boxes.offsets[image + 1])
        s = np.asarray(boxes.scores[a:b], np.float64)
        keep = np.flatnonzero(s >= box_threshold)
        keep = keep[np.argsort(-s[keep], kind="stable")][:max_boxes]
        owner.append(np.full(len(keep), pos, np.int64))
        label.append(np.asarray(boxes.labels[a:b])[keep])
        score.append(s[keep])
        rows.append(a + keep)
    rows_all = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    feats = np.asarray(np.asarray(boxes.features)[rows_all], np.float32)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    feats = np.divide(feats, norms, out=np.zeros_like(feats), where=norms > 0)
    cat = lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    return cat(owner, np.int64), cat(label, np.int64), cat(score, np.float64), feats


def ccms_distances(
    boxes: PoolBoxes,
    images: np.ndarray,
    *,
    box_threshold: float = DEFAULT_BOX_THRESHOLD,
    max_boxes: int = DEFAULT_MAX_BOXES,
    device: str = "cpu",
) -> np.ndarray:
    """(M, M) symmetric CCMS distances between ``images`` (M positions into the pool's rows), in [0, 2]."""
    m = len(images)
    owner, label, score, feats = candidate_boxes(boxes, images, box_threshold=box_threshold, max_boxes=max_boxes)
    dev = torch_device(device)
    num = torch.zeros((m, m), dtype=torch.float64, device=dev)  # sum_a s_a * m(a, j), rows i = owner of a
    for c in np.unique(label):
        at = np.flatnonzero(label == c)
        f = torch.from_numpy(feats[at]).to(dev)
        own = torch.from_numpy(owner[at]).to(dev)
        s = torch.from_numpy(score[at]).to(dev)
        block = max(1, min(len(at), _BLOCK_ELEMENTS // max(len(at), m)))
        for start in range(0, len(at), block):
            sim = f[start : start + block] @ f.T  # (rows, n_c) cosine similarities
            # best[a, j]: the closest box of class c in image j (-inf: j has none, m(a, j) = 2)
            best = torch.full((len(sim), m), -math.inf, dtype=sim.dtype, device=dev)
            best.scatter_reduce_(1, own.expand(len(sim), -1), sim, reduce="amax")
            dist = torch.where(torch.isinf(best), torch.full_like(best, NO_MATCH), (1.0 - best).clamp(0.0, NO_MATCH))
            num.index_add_(0, own[start : start + block], dist.double() * s[start : start + block, None])
    weight = np.bincount(owner, weights=score, minlength=m)  # sum_a s_a per image i
    w = torch.from_numpy(weight).to(dev)
    directed = torch.where(w[:, None] > 0, num / w.clamp_min(1e-300)[:, None], torch.zeros_like(num))
    out = (0.5 * (directed + directed.T)).cpu().numpy()
    np.fill_diagonal(out, 0.0)
    return out


def k_medoids(dist: np.ndarray, k: int, *, seed: int = 0, iterations: int = DEFAULT_ITERATIONS) -> tuple[np.ndarray, int]:
    """k medoids of a (M, M) distance matrix: farthest-first start from a seeded random point, then
    assignment / medoid update until stable. Returns (medoid positions, rounds run)."""
    n = len(dist)
    if k >= n:
        return np.arange(n, dtype=np.int64), 0
    rng = np.random.default_rng(seed)
    medoids = [int(rng.integers(n))]
    nearest = dist[:, medoids[0]].copy()
    for _ in range(k - 1):
        gap = nearest.copy()
        gap[medoids] = -1.0
        c = int(np.argmax(gap))
        medoids.append(c)
        nearest = np.minimum(nearest, dist[:, c])
    current = np.array(medoids, np.int64)
    rounds = 0
    for rounds in range(1, iterations + 1):
        assign = np.argmin(dist[:, current], axis=1)
        assign[current] = np.arange(k)  # a medoid stays in its own cluster, also among duplicates
        new = current.copy()
        for c in range(k):
            members = np.flatnonzero(assign == c)
            new[c] = members[np.argmin(dist[np.ix_(members, members)].sum(axis=1))]
        if np.array_equal(new, current):
            break
        current = new
    return current, rounds


def run_ppal(
    k: int,
    inputs: SelectionInputs,
    pool: np.ndarray,
    *,
    seed: int = 0,
    device: str = "cpu",
    ratio: float = DEFAULT_RATIO,
    box_threshold: float = DEFAULT_BOX_THRESHOLD,
    max_boxes: int = DEFAULT_MAX_BOXES,
    iterations: int = DEFAULT_ITERATIONS,
) -> Selection:
    """The ``ppal`` selector: the ``ratio * k`` most uncertain pool images, then k CCMS medoids of them."""
    ratio, box_threshold = _ratio(ratio), _threshold(box_threshold)
    max_boxes, iterations = _count("max_boxes", max_boxes), _count("iterations", iterations)
    assert inputs.scores is not None and inputs.boxes is not None  # the registry checks `needs`
    scores = np.asarray(inputs.scores, np.float64)[pool]
    m = min(len(pool), max(k, math.ceil(ratio * k)))
    order = np.lexsort((pool, -scores))  # most uncertain first; ties by row
    candidates = pool[order[:m]]
    dist = ccms_distances(inputs.boxes, candidates, box_threshold=box_threshold, max_boxes=max_boxes, device=device)
    medoids, rounds = k_medoids(dist, k, seed=seed, iterations=iterations)
    picks = candidates[np.sort(medoids)]  # candidates are in uncertainty order: sorted positions keep it
    options = {"ratio": ratio, "candidates": int(m), "box_threshold": box_threshold, "max_boxes": max_boxes,
               "iterations": iterations, "rounds": rounds}
    return make_selection("ppal", picks, None, inputs.scores, options)


def _ratio(value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not math.isfinite(v) or v < 1.0:
        raise SelectionError(f"ppal option ratio must be a number >= 1 (candidates per pick), got {value!r}")
    return v


def _threshold(value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not 0.0 <= v < 1.0:
        raise SelectionError(f"ppal option box_threshold must be a score in [0, 1), got {value!r}")
    return v


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SelectionError(f"ppal option {name} must be a whole number >= 1, got {value!r}")
    return int(value)


__all__ = ["DEFAULT_RATIO", "candidate_boxes", "ccms_distances", "k_medoids", "run_ppal"]
