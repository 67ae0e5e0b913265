"""CORAL selection: diversity and uncertainty in one greedy objective.

Lightly described CORAL as "coreset + scores" without publishing the formula; alloop's version is a
greedy k-center whose pick maximises, over the remaining candidates i,

    objective_i = alpha * d_i / max_j d_j + (1 - alpha) * s_i

where d_i is i's Euclidean min-distance to the labeled + already selected images (normalised by the
current farthest candidate, so the farthest one scores 1 on this term) and s_i the uncertainty score
min-max normalised over the unlabeled pool (the most uncertain image scores 1). With the
``typicality`` option (tau in [0, 1], default 0) s_i becomes (1 - tau) * s_i + tau * t_i, t_i the
image's typicality (TypiClust's 1 / mean 20-NN distance, min-max normalised over the pool), so dense
regions of the pool win over outliers (Lightly's TYPICALITY strategy; Hacohen et al. 2022).

Default ``alpha = 0.5``: both terms span [0, 1] with their best candidate at 1, so equal weights let
neither dominate by units. In practice high-dimensional distances concentrate (after a few picks most
candidates have d_i / max d in roughly [0.7, 1]) while min-max scores spread over [0, 1], so at 0.5 the
score ranks most candidates and the distance term mainly vetoes near-duplicates of labeled or selected
images (d_i -> 0) -- the failure of pure uncertainty sampling, whose batches fill with near-identical
hard images. alpha = 1 is coreset (same picks), alpha = 0 is pure top-score.

Options:
- ``score_threshold``: candidates whose raw score is below it are skipped. If fewer than k remain, a
  :class:`SelectionWarning` says so and the batch is filled by continuing the same greedy objective over
  the images below the threshold (the batch keeps its size and its diversity with respect to what was
  already picked; the report can tell the filled picks by their score).
- ``balance`` (lambda in [0, 1]; ``true`` means 0.5, ``false`` 0):
  objective = (1 - lambda) * objective + lambda * b_i with b_i = sum_c q_ic * r_c, where
  q_ic = image i's share of confident predicted boxes in class c, and
  r_c = min_c' pi_c' / pi_c the rarity of c among labeled + selected boxes, pi_c = (T_c + 1) / (sum T + C)
  (Laplace-smoothed class shares of ``predicted_classes`` rows of labeled + selected images; the loop
  may put ground-truth counts in labeled rows). b_i = 1 when all of i's boxes are of the rarest class,
  0 for an image without predicted boxes. Updated after every pick (cf. Lightly's BALANCE strategy).

Exact greedy; the lazy engine of :mod:`alloop.select.coreset` is reused: a hot set holds the top rows
by distance and by objective, cold rows are bounded by the Pareto front of their stale (d, s) values
(the objective is increasing in both). Balance changes every image's b_i at each pick, so with
``balance > 0`` every row is kept exact (one N x D pass per pick).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from alloop.errors import SelectionError
from alloop.select.base import (
    MISSING_HINTS,
    Selection,
    SelectionInputs,
    SelectionWarning,
    make_selection,
    torch_device,
    unit_weight,
)
from alloop.select.coreset import (
    DEFAULT_THREADS,
    MinDistanceIndex,
    as_tensor,
    check_engine_options,
    closest_to_mean,
    default_hot_size,
    engine_settings,
)
from alloop.select.typicality import typicality as typicality_of

DEFAULT_ALPHA = 0.5
DEFAULT_BALANCE = 0.5  # the weight `balance=true` stands for


def normalised_scores(scores: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(s - min) / (max - min) over the pool rows (0 elsewhere; all 0 when the pool's scores are equal)."""
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = float(s[pool].min()), float(s[pool].max())
    out = np.zeros(len(s), dtype=np.float32)
    if hi > lo:
        out[pool] = ((s[pool] - lo) / (hi - lo)).astype(np.float32)
    return out, lo, hi


def class_rarity(totals: np.ndarray) -> np.ndarray:
    """r_c = min pi / pi_c, pi_c = (T_c + 1) / (sum T + C): 1 for the rarest class, less for common ones."""
    pi = (np.asarray(totals, dtype=np.float64) + 1.0) / (float(np.sum(totals)) + len(totals))
    return pi.min() / pi


def objective(d: torch.Tensor, sb: torch.Tensor, dmax: float, alpha: float) -> torch.Tensor:
    """alpha * (d / dmax) + sb, where sb = (1 - alpha) * s is precomputed.

    Plain, separately rounded float32 operations (no fused multiply-add), so a row's value is the
    same wherever it is computed: the hot set, the cold bound and the re-ranking agree bit for bit.
    """
    dn = d / dmax if dmax > 0 else torch.zeros_like(d)
    return dn.mul_(alpha).add_(sb)


def _f32_sqrt(v2: float) -> float:
    """sqrt in float32, as torch.sqrt gives it for a row, so that the top row's d / dmax is exactly 1."""
    return float(np.sqrt(np.float32(v2)))


def pareto_front(d: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points not dominated in (d, s): the max of any increasing function of (d, s) over all is on it."""
    if len(d) == 0:
        return d, s
    order = torch.argsort(d, descending=True, stable=True)
    ds, ss = d[order], s[order]
    best_before = torch.cummax(ss, 0).values
    keep = torch.ones_like(ss, dtype=torch.bool)
    keep[1:] = ss[1:] > best_before[:-1]
    return ds[keep], ss[keep]


def coral_greedy(
    embeddings: np.ndarray | torch.Tensor,
    scores: np.ndarray,
    k: int,
    labeled: np.ndarray,
    *,
    alpha: float = DEFAULT_ALPHA,
    score_threshold: float | None = None,
    balance: float = 0.0,
    predicted_classes: np.ndarray | None = None,
    device: str = "cpu",
    hot_size: int | None = None,
    threads: int = DEFAULT_THREADS,
    typicality: float = 0.0,
    typical: np.ndarray | None = None,
    trace: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Greedy argmax of (1 - lambda) * (alpha * d / max d + (1 - alpha) * s) + lambda * b, k times.

    Returns (indices, distances, objective values, info). The first pick with nothing labeled has no
    distance (inf; every candidate counts as maximally far); ties go to the candidate closest to the
    mean, later ties to the lowest row. ``trace``, when given, receives per pick ``dmax`` (the
    normaliser of d at that pick; inf for the first pick without a center) and ``balance`` (b_i of the
    pick, nan without balance), so a caller can split each pick's objective into its terms.
    """
    dev = torch_device(device)
    labeled = np.asarray(labeled, dtype=bool)
    pool = ~labeled
    n = len(labeled)
    k = int(min(k, int(pool.sum())))
    snorm, lo, hi = normalised_scores(scores, np.flatnonzero(pool))
    if typicality > 0:
        # The static term mixes uncertainty and typicality; both are fixed per row, so the lazy
        # engine's bounds (the objective is increasing in d and in this term) stay exact.
        if typical is None:
            typical = typicality_of(np.asarray(embeddings.cpu() if isinstance(embeddings, torch.Tensor) else embeddings),
                                    threads=threads)
        tnorm, _, _ = normalised_scores(typical, np.flatnonzero(pool))
        snorm = ((1.0 - typicality) * snorm.astype(np.float64) + typicality * tnorm).astype(np.float32)
    raw = np.asarray(scores, dtype=np.float64)
    eligible = pool & (raw >= score_threshold) if score_threshold is not None else pool.copy()
    n_eligible = int(eligible.sum())
    if n_eligible < k:
        warnings.warn(
            f"coral: only {n_eligible} unlabeled images score >= score_threshold {score_threshold}; "
            f"the other {k - n_eligible} picks continue the same greedy objective over the images below it",
            SelectionWarning,
            stacklevel=4,
        )
    info: dict[str, Any] = {"score_min": lo, "score_max": hi, "n_eligible": n_eligible}
    info["filled_below_threshold"] = max(0, k - n_eligible)
    use_balance = balance > 0
    picks = np.empty(k, dtype=np.int64)
    dists = np.empty(k, dtype=np.float32)
    objs = np.empty(k, dtype=np.float32)
    pick_dmax = np.full(k, np.inf, dtype=np.float64)
    pick_b = np.full(k, np.nan, dtype=np.float64)

    with engine_settings(threads) as gemm:
        x = as_tensor(embeddings, dev)
        sb_t = torch.as_tensor(snorm, device=dev).mul_(1.0 - alpha)  # the score term, (1 - alpha) * s
        q_t: torch.Tensor | None = None
        totals = np.zeros(0)
        counts = np.zeros((n, 0))
        if use_balance:
            assert predicted_classes is not None
            counts = np.asarray(predicted_classes, dtype=np.float64)
            row = counts.sum(1, keepdims=True)
            q = np.divide(counts, row, out=np.zeros_like(counts), where=row > 0)
            q_t = torch.as_tensor(q, dtype=torch.float32, device=dev)
            totals = counts[labeled].sum(0)
        # Balance rescores every row each pick: keep all rows exact (hot_size >= n means all hot).
        hs = n if use_balance else (hot_size or default_hot_size(k, n, dev))
        first_cand = eligible if n_eligible else pool
        index = MinDistanceIndex(
            x, first_cand, np.flatnonzero(labeled), hot_size=hs, capacity=k, gemm_threads=gemm
        )

        def priority(u: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
            v2 = float(torch.where(cand, u, -math.inf).max())
            return objective(u.sqrt(), sb_t, _f32_sqrt(v2), alpha)

        if not use_balance:
            index.priority = priority

        def balance_term() -> torch.Tensor:
            assert q_t is not None
            r = torch.as_tensor(class_rarity(totals), dtype=torch.float32, device=dev)
            return q_t @ r

        def combine(obj: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
            return obj if b is None else obj.mul_(1.0 - balance).add_(b.mul_(balance))

        front_epoch, front_d, front_s, hot_s = -1, torch.empty(0), torch.empty(0), torch.empty(0)
        t = 0
        if index.n_centers == 0 and k > 0:
            # No center yet: every candidate is maximally far (d / max d = 1), so the score decides.
            cand = torch.as_tensor(first_cand, device=dev)
            ones = torch.ones(n, device=dev)
            b0 = balance_term() if use_balance else None
            if b0 is not None:
                b_first = b0.clone()
            first = combine(objective(ones, sb_t, 1.0, alpha), b0)
            first = torch.where(cand, first, -math.inf)
            best = first.max()
            i = closest_to_mean(x, cand & (first == best))
            picks[0], dists[0], objs[0] = i, math.inf, float(best)
            if use_balance:
                pick_b[0] = float(b_first[i])
            index.add_center(i)
            if use_balance:
                totals = totals + counts[i]
            t = 1
        while t < k:
            if t == n_eligible and n_eligible:
                # Threshold exhausted: fill from the images below it, same objective and centers.
                index.set_candidates(pool)
            _, v2 = index.farthest()
            dmax = _f32_sqrt(v2)
            if use_balance:
                d = index.uh.sqrt()
                b = balance_term()
                b_row = b.clone()
                obj = combine(objective(d, sb_t, dmax, alpha), b)
                obj = torch.where(index.hcand, obj, -math.inf)
                j = int(torch.argmax(obj))  # all rows are hot: the position is the row
                i = j
                pick_b[t] = float(b_row[j])
            else:
                for attempt in range(2):
                    if index.rebuilds != front_epoch:
                        cold = index.cold()
                        front_d, front_s = pareto_front(index.u[cold].sqrt(), sb_t[cold])
                        hot_s = sb_t[index.hot]
                        front_epoch = index.rebuilds
                    d = index.uh.sqrt()
                    obj = torch.where(index.hcand, objective(d, hot_s, dmax, alpha), -math.inf)
                    j = int(torch.argmax(obj))  # first maximum: the lowest row
                    bound = (
                        float(objective(front_d, front_s, dmax, alpha).max()) if len(front_d) else -math.inf
                    )
                    if float(obj[j]) > bound or attempt == 1:
                        break
                    # A cold row might beat the hot best: bring all rows up to date, re-rank, retry.
                    # After the rebuild every cold objective is below the hot threshold: attempt 1 is final.
                    index.rebuild()
                i = int(index.hot_np[j])
            picks[t], dists[t], objs[t] = i, float(d[j]), float(obj[j])
            pick_dmax[t] = dmax
            index.add_center(i)
            if use_balance:
                totals = totals + counts[i]
            t += 1
    if trace is not None:
        trace["dmax"], trace["balance"] = pick_dmax, pick_b
    return picks, dists, objs, info


def run_coral(
    k: int,
    inputs: SelectionInputs,
    pool: np.ndarray,
    *,
    seed: int = 0,
    device: str = "cpu",
    alpha: float = DEFAULT_ALPHA,
    score_threshold: float | None = None,
    balance: float | bool = 0.0,
    hot_size: int | None = None,
    threads: int = DEFAULT_THREADS,
    typicality: float = 0.0,
) -> Selection:
    """The ``coral`` selector (deterministic: ``seed`` unused)."""
    assert inputs.embeddings is not None and inputs.scores is not None
    alpha = _unit_interval("alpha", alpha)
    typicality = _unit_interval("typicality", typicality)
    if isinstance(balance, bool):  # `-o balance=true` switches it on at the default weight
        balance = DEFAULT_BALANCE if balance else 0.0
    balance = _unit_interval("balance", balance)
    if isinstance(score_threshold, bool):
        raise SelectionError(f"coral option score_threshold must be a number, got {score_threshold!r}")
    if score_threshold is not None:
        try:
            score_threshold = float(score_threshold)
        except (TypeError, ValueError):
            raise SelectionError(
                f"coral option score_threshold must be a number, got {score_threshold!r}"
            ) from None
        if not math.isfinite(score_threshold):
            raise SelectionError(f"coral option score_threshold must be finite, got {score_threshold}")
    if balance > 0 and inputs.predicted_classes is None:
        raise SelectionError(f"coral balance={balance} needs {MISSING_HINTS['predicted_classes']}")
    check_engine_options("coral", hot_size, threads)
    picks, dists, objs, info = coral_greedy(
        inputs.embeddings,
        inputs.scores,
        k,
        inputs.labeled,
        alpha=alpha,
        score_threshold=score_threshold,
        balance=balance,
        predicted_classes=inputs.predicted_classes,
        device=device,
        hot_size=hot_size,
        threads=threads,
        typicality=typicality,
    )
    options: dict[str, Any] = {"alpha": alpha, "score_threshold": score_threshold, "balance": balance,
                               "typicality": typicality}
    options.update(info, threads=threads)
    if hot_size is not None:
        options["hot_size"] = hot_size
    return make_selection("coral", picks, dists, inputs.scores, options, objective=objs)


def _unit_interval(name: str, value: Any) -> float:
    """A coral weight must be a number in [0, 1]."""
    return unit_weight("coral", name, value)
