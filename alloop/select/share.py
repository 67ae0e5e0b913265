"""A cap on how much of the labeled set any one region of the pool may take.

Uncertainty (and distance from what is labeled) keep pointing at images a detector cannot learn at its
resolution: far-away canopies of hundreds of tiny apples stay uncertain however many of them are labeled.
A strategy that follows the score there spends the budget on them and under-buys the scenes that make up
most of the pool, and so of what the model meets after. Karamcheti et al. ("Mind Your Outliers!", ACL 2021)
call these collective outliers and show they are why uncertainty sampling fails to beat random on some tasks;
the classic answer is to weigh informativeness by density (Settles & Craven 2008).

This is that answer in its bluntest form. The pool (labeled images included) is split into regions by k-means
on the selection embeddings; region c holds a share p_c of it. After the batch, no region may hold more than

    ceil(max_share * p_c * (labeled + k))

of the labeled + selected images (``max_share = 2``: twice the share random sampling would give it, on
average). The strategy runs as usual; a pick in a region that is full is dropped, the region then counts as
covered (its remaining images are set as labeled for the strategy: no picks there, and nothing near them
looks uncovered), and the strategy picks again for the places left. A rare region is still bought (its
ceiling is at least one image), and a region the labeled set under-covers (a scene the first model never saw)
is not held back until it holds twice its share. With ``max_share >= 1`` the regions always have room for the
whole batch: a region's ceiling is at least its share p_c of the labeled + selected images, so the room left
where images are left adds up to at least k.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from alloop.errors import SelectionError
from alloop.select.base import Selection, SelectionInputs, make_selection
from alloop.select.typiclust import cluster

MAX_REGIONS = 50

# run(k, inputs, pool) -> Selection: the strategy being capped, its own options bound
Strategy = Callable[[int, SelectionInputs, np.ndarray], Selection]


def n_regions(n: int) -> int:
    """Regions for a pool of ``n`` images: sqrt(n / 2) (the rule of thumb for k-means), 2 to 50."""
    return int(min(MAX_REGIONS, max(2, round(math.sqrt(n / 2)))))


def check_max_share(value: Any) -> float:
    """``max_share`` as a float: 0 (no cap) or a number >= 1 (below 1 the regions could not hold a batch)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SelectionError(f"auto option max_share must be 0 (off) or a number >= 1, got {value!r}")
    v = float(value)
    if not (v == 0 or (math.isfinite(v) and v >= 1)):
        raise SelectionError(f"auto option max_share must be 0 (off) or a number >= 1, got {value!r}")
    return v


def region_room(regions: np.ndarray, labeled: np.ndarray, k: int, max_share: float) -> np.ndarray:
    """Per region, how many more images the batch may put there (>= 0)."""
    n_reg = int(regions.max()) + 1 if len(regions) else 0
    size = np.bincount(regions, minlength=n_reg)
    held = np.bincount(regions[labeled], minlength=n_reg)
    total = int(labeled.sum()) + k
    ceiling = np.ceil(max_share * size / max(len(regions), 1) * total - 1e-9).astype(np.int64)
    return np.maximum(np.maximum(ceiling, 1) - held, 0)


def capped(
    strategy: Strategy, k: int, inputs: SelectionInputs, regions: np.ndarray, max_share: float
) -> tuple[Selection, dict[str, Any]]:
    """``strategy``'s picks with no region above ``max_share`` times its pool share (see the module).

    Returns the selection (picks in the order they were accepted, with the distances, scores and objective
    the strategy gave them) and what the cap did, for the report.
    """
    labeled = np.asarray(inputs.labeled, bool)
    regions = np.asarray(regions, np.int64)
    if regions.shape != labeled.shape:
        raise SelectionError(f"regions must have one entry per image ({labeled.shape}), got {regions.shape}")
    room = region_room(regions, labeled, k, max_share)
    taken = labeled.copy()
    picks: list[int] = []
    dist: list[np.ndarray] = []
    objective: list[np.ndarray] | None = []
    first: Selection | None = None
    dropped = runs = 0
    while len(picks) < k:
        mask = taken | (room[regions] <= 0)  # a full region counts as covered
        if mask.all():  # cannot happen with max_share >= 1 (see the module), kept as a guard against a loop
            break
        sel = strategy(k - len(picks), replace(inputs, labeled=mask), np.flatnonzero(~mask))
        runs += 1
        first = first or sel
        keep = []
        for j, i in enumerate(sel.indices):
            if room[regions[i]] > 0:
                room[regions[i]] -= 1
                taken[i] = True
                picks.append(int(i))
                keep.append(j)
        dropped += len(sel.indices) - len(keep)
        dist.append(sel.distances[keep])
        objective = None if objective is None or sel.objective is None else [*objective, sel.objective[keep]]
        if len(keep) == len(sel.indices):
            break  # nothing dropped: the strategy had all it asked for
    size = np.bincount(regions, minlength=len(room))
    share = np.bincount(regions[taken], minlength=len(room)) / max(int(taken.sum()), 1) / (size / len(regions))
    info = {"max_share": max_share, "regions": len(room), "dropped": dropped, "reruns": max(runs - 1, 0),
            "largest_share": round(float(share[size > 0].max()), 3) if len(regions) else 0.0}
    sel = make_selection(
        first.method if first else "capped", np.array(picks, np.int64),
        np.concatenate(dist) if dist else np.zeros(0, np.float32), inputs.scores,
        dict(first.options) if first else {}, objective=np.concatenate(objective) if objective else None)
    return sel, info


def pool_regions(embeddings: np.ndarray, seed: int) -> np.ndarray:
    """(N,) region of each image: k-means (seeded) on the selection embeddings into :func:`n_regions`."""
    return cluster(embeddings, n_regions(len(embeddings)), seed)


__all__ = ["capped", "check_max_share", "n_regions", "pool_regions", "region_room"]
