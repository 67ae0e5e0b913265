"""CORAL: alpha * d / max d + (1 - alpha) * s, greedy, with thresholds and class balance."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alloop.errors import SelectionError
from alloop.select import SelectionInputs, SelectionWarning, select
from alloop.select.coral import class_rarity, coral_greedy, pareto_front
from alloop.select.coreset import k_center_greedy


def brute_coral(
    x: np.ndarray,
    scores: np.ndarray,
    k: int,
    labeled: np.ndarray,
    *,
    alpha: float = 0.5,
    score_threshold: float | None = None,
    balance: float = 0.0,
    counts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The documented objective in float64, one full pass per pick; returns picks and their objectives."""
    x = x.astype(np.float64)
    pool = ~labeled
    s = np.asarray(scores, np.float64)
    lo, hi = s[pool].min(), s[pool].max()
    sn = np.where(pool, (s - lo) / (hi - lo), 0.0) if hi > lo else np.zeros(len(s))
    eligible = pool & (s >= score_threshold) if score_threshold is not None else pool.copy()
    n_elig = int(eligible.sum())
    taken = labeled.copy()
    u = np.full(len(x), np.inf)
    for c in np.flatnonzero(labeled):
        u = np.minimum(u, ((x - x[c]) ** 2).sum(1))
    totals = counts[labeled].sum(0).astype(np.float64) if counts is not None else None
    picks, objs = [], []
    for t in range(k):
        cand = (eligible if t < n_elig else pool) & ~taken
        if balance > 0:
            assert counts is not None and totals is not None
            row = counts.sum(1, keepdims=True)
            q = np.divide(counts, row, out=np.zeros(counts.shape), where=row > 0)
            b = q @ class_rarity(totals)
        else:
            b = np.zeros(len(x))
        if np.isinf(u).all():
            obj = (1 - balance) * (alpha + (1 - alpha) * sn) + balance * b
            obj = np.where(cand, obj, -np.inf)
            tied = obj == obj.max()
            n = int(tied.sum())
            dm = ((x * n - x[tied].sum(0)) ** 2).sum(1)
            i = int(np.argmin(np.where(tied, dm, np.inf)))
        else:
            d = np.sqrt(u)
            dmax = d[cand].max()
            dn = d / dmax if dmax > 0 else np.zeros(len(x))
            obj = (1 - balance) * (alpha * dn + (1 - alpha) * sn) + balance * b
            obj = np.where(cand, obj, -np.inf)
            i = int(np.argmax(obj))
        picks.append(i)
        objs.append(obj[i])
        taken[i] = True
        u = np.minimum(u, ((x - x[i]) ** 2).sum(1))
        if totals is not None:
            totals = totals + counts[i]
    return np.array(picks), np.array(objs)


def normal_problem(seed: int, n: int = 300, d: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, rng.gamma(2.0, size=n), rng.random(n) < 0.1


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("hot", [None, 4, 30])
def test_same_picks_as_brute_force(seed: int, alpha: float, hot: int | None) -> None:
    x, s, labeled = normal_problem(seed)
    picks, _, objs, _ = coral_greedy(x, s, 50, labeled, alpha=alpha, hot_size=hot)
    want, want_obj = brute_coral(x, s, 50, labeled, alpha=alpha)
    np.testing.assert_array_equal(picks, want)
    np.testing.assert_allclose(objs, want_obj, rtol=1e-5)


def test_same_picks_as_brute_force_without_labels() -> None:
    x, s, _ = normal_problem(3)
    labeled = np.zeros(len(x), bool)
    picks, dists, _, _ = coral_greedy(x, s, 30, labeled, hot_size=8)
    np.testing.assert_array_equal(picks, brute_coral(x, s, 30, labeled)[0])
    assert picks[0] == int(np.argmax(s)) and np.isinf(dists[0])  # nothing labeled: the top score first


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(2, 30).flatmap(
        lambda n: st.tuples(
            arrays(np.float32, (n, 2), elements=st.integers(-3, 3).map(float)),
            arrays(np.bool_, n, elements=st.booleans()),
            arrays(np.float64, n, elements=st.integers(0, 3).map(float)),
            st.sampled_from([None, 1, 3]),
        )
    )
)
def test_alpha_one_is_coreset(problem: tuple[np.ndarray, np.ndarray, np.ndarray, int | None]) -> None:
    x, labeled, s, hot = problem
    if labeled.all():
        labeled[0] = False
    k = int((~labeled).sum())
    picks, *_ = coral_greedy(x, s, k, labeled, alpha=1.0, hot_size=hot)
    np.testing.assert_array_equal(picks, k_center_greedy(x, k, labeled)[0])


def test_alpha_zero_is_top_score_with_ties_to_the_lowest_row() -> None:
    x, _, _ = normal_problem(4, n=8)
    s = np.array([0.0, 5, 1, 5, 3, 0, 9, 2])
    labeled = np.zeros(8, bool)
    labeled[0] = True
    picks, *_ = coral_greedy(x, s, 7, labeled, alpha=0.0)
    assert list(picks) == [6, 1, 3, 4, 7, 2, 5]


def test_duplicates_tie_and_go_to_the_lowest_row() -> None:
    x = np.array([[0, 0], [3, 4], [3, 4], [0, 1]], dtype=np.float32)
    s = np.array([0.0, 1.0, 1.0, 0.5])
    picks, dists, objs, _ = coral_greedy(
        x, s, 3, np.array([True, False, False, False]), alpha=0.6, hot_size=1
    )
    assert list(picks) == [
        1,
        3,
        2,
    ]  # rows 1 and 2 tie (objective 1): the lower first; then 2 is at distance 0
    np.testing.assert_allclose(dists, [5, 1, 0])
    np.testing.assert_allclose(objs, [1.0, 0.6, 0.4], rtol=1e-6)


def test_score_threshold_picks_eligible_first_then_fills_with_a_warning() -> None:
    x, s, labeled = normal_problem(5, n=120)
    threshold = np.quantile(s[~labeled], 0.9)
    n_elig = int(((s >= threshold) & ~labeled).sum())
    with pytest.warns(SelectionWarning, match=f"only {n_elig} unlabeled images score >= score_threshold"):
        sel = select("coral", n_elig + 5, SelectionInputs(x, labeled, s), score_threshold=threshold)
    assert np.all(s[sel.indices[:n_elig]] >= threshold)
    assert np.all(s[sel.indices[n_elig:]] < threshold)
    assert sel.options["n_eligible"] == n_elig and sel.options["filled_below_threshold"] == 5
    want, _ = brute_coral(x, s, n_elig + 5, labeled, score_threshold=threshold)
    np.testing.assert_array_equal(sel.indices, want)


def test_score_threshold_with_enough_eligible_does_not_warn() -> None:
    x, s, labeled = normal_problem(6, n=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sel = select("coral", 5, SelectionInputs(x, labeled, s), score_threshold=float(np.median(s)))
    assert np.all(s[sel.indices] >= np.median(s))


def test_balance_prefers_images_of_classes_rare_among_labeled() -> None:
    rng = np.random.default_rng(7)
    n = 60
    x = rng.standard_normal((n, 4)).astype(np.float32)
    s = rng.random(n)
    counts = np.zeros((n, 2))
    counts[: n // 2, 0] = 3  # first half: class 0 only
    counts[n // 2 :, 1] = 1  # second half: class 1 only
    labeled = np.zeros(n, bool)
    labeled[:10] = True  # 30 boxes of class 0 labeled, none of class 1
    inputs = SelectionInputs(x, labeled, s, counts)
    sel = select("coral", 6, inputs, balance=1.0)
    assert np.all(sel.indices >= n // 2)  # class 1 stays rarer (30 vs <= 6 boxes) for these 6 picks
    plain = select("coral", 6, inputs)
    assert np.any(plain.indices < n // 2)  # without balance, class 0 images are picked too
    want, _ = brute_coral(x, s, 6, labeled, balance=1.0, counts=counts)
    np.testing.assert_array_equal(sel.indices, want)


def test_balance_true_means_the_default_weight() -> None:
    x, s, labeled = normal_problem(14, n=60)
    counts = np.random.default_rng(14).integers(0, 3, (60, 2)).astype(float)
    inp = SelectionInputs(x, labeled, s, counts)
    on = select("coral", 8, inp, balance=True)
    assert on.options["balance"] == 0.5
    np.testing.assert_array_equal(on.indices, select("coral", 8, inp, balance=0.5).indices)
    assert select("coral", 8, inp, balance=False).options["balance"] == 0.0


@pytest.mark.parametrize("lam", [0.3, 0.7])
def test_balance_matches_brute_force(lam: float) -> None:
    x, s, labeled = normal_problem(8, n=150)
    counts = np.random.default_rng(8).integers(0, 3, (150, 3)).astype(float)
    sel = select("coral", 20, SelectionInputs(x, labeled, s, counts), balance=lam, alpha=0.6)
    want, want_obj = brute_coral(x, s, 20, labeled, alpha=0.6, balance=lam, counts=counts)
    np.testing.assert_array_equal(sel.indices, want)
    assert sel.objective is not None
    np.testing.assert_allclose(sel.objective, want_obj, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("balance", [0.0, 0.5])
def test_cuda_gives_the_cpu_picks(balance: float) -> None:
    rng = np.random.default_rng(13)
    x = rng.integers(-4, 5, (1500, 8)).astype(np.float32)
    s, labeled = rng.integers(0, 50, 1500).astype(float), rng.random(1500) < 0.05
    counts = rng.integers(0, 3, (1500, 3)).astype(float)
    inp = SelectionInputs(x, labeled, s, counts)
    cpu = select("coral", 60, inp, balance=balance, hot_size=64)
    gpu = select("coral", 60, inp, balance=balance, device="cuda")
    np.testing.assert_array_equal(cpu.indices, gpu.indices)


def test_class_rarity_is_one_for_the_rarest_class() -> None:
    np.testing.assert_allclose(class_rarity(np.array([0.0, 1.0, 4.0])), [1.0, 0.5, 0.2])


def test_pareto_front_keeps_the_max_of_any_increasing_objective() -> None:
    rng = np.random.default_rng(9)
    d, s = (
        torch.from_numpy(rng.random(500).astype(np.float32)),
        torch.from_numpy(rng.random(500).astype(np.float32)),
    )
    fd, fs = pareto_front(d, s)
    assert len(fd) < 50
    for a in (0.0, 0.3, 0.7, 1.0):
        assert float((a * fd + (1 - a) * fs).max()) == float((a * d + (1 - a) * s).max())


def test_nan_score_on_a_labeled_image_is_ignored_but_not_on_the_pool() -> None:
    x, s, labeled = normal_problem(10, n=40)
    s = s.copy()
    s[np.flatnonzero(labeled)[0]] = np.nan
    assert len(select("coral", 3, SelectionInputs(x, labeled, s)).indices) == 3
    s[np.flatnonzero(~labeled)[0]] = np.nan
    with pytest.raises(SelectionError, match="NaN or inf"):
        select("coral", 3, SelectionInputs(x, labeled, s))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"alpha": "big"}, "alpha must be a number"),
        ({"balance": -0.1}, r"balance must be in \[0, 1\]"),
        ({"score_threshold": float("nan")}, "score_threshold must be finite"),
        ({"score_threshold": True}, "score_threshold must be a number"),
        ({"hot_size": 0}, "hot_size must be a positive integer"),
        ({"threads": -1}, "threads must be an integer >= 0"),
        ({"balance": 0.5}, "needs predicted classes per image"),
    ],
)
def test_bad_options_are_clear_errors(options: dict, message: str) -> None:
    x, s, labeled = normal_problem(11, n=20)
    with pytest.raises(SelectionError, match=message):
        select("coral", 3, SelectionInputs(x, labeled, s), **options)


def test_equal_scores_leave_diversity_to_decide() -> None:
    x, _, labeled = normal_problem(12, n=80)
    s = np.full(80, 0.7)
    coral = select("coral", 10, SelectionInputs(x, labeled, s), alpha=0.3)
    coreset = select("coreset", 10, SelectionInputs(x, labeled, s))
    np.testing.assert_array_equal(coral.indices, coreset.indices)
    assert coral.options["score_min"] == coral.options["score_max"] == 0.7
