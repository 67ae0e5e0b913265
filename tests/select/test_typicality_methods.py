"""Typicality, TypiClust and MaxHerding: exact against brute force, seeded, and their edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from alloop.errors import SelectionError
from alloop.select import SelectionInputs, SelectionWarning, select
from alloop.select.coral import coral_greedy
from alloop.select.maxherding import max_herding
from alloop.select.typicality import knn_distances, typicality
from alloop.select.typiclust import typiclust


def unit_rows(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_typicality(x: np.ndarray, k: int) -> np.ndarray:
    d = np.linalg.norm(x[:, None, :].astype(np.float64) - x[None, :, :], axis=2)
    np.fill_diagonal(d, np.inf)
    return 1.0 / (np.sort(d, axis=1)[:, :k].mean(axis=1) + 1e-5)


def brute_herding(x: np.ndarray, labeled: np.ndarray, k: int, sigma: float) -> list[int]:
    x = x.astype(np.float64)
    kmat = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1) / (2 * sigma**2))
    cur = kmat[labeled].max(0) if labeled.any() else np.zeros(len(x))
    taken, picks = labeled.copy(), []
    for _ in range(k):
        gain = np.clip(kmat - cur[None], 0, None).sum(1)
        gain[taken] = -1
        j = int(np.argmax(gain))
        picks.append(j)
        taken[j] = True
        cur = np.maximum(cur, kmat[j])
    return picks


def test_typicality_matches_brute_force():
    x = unit_rows(200)
    np.testing.assert_allclose(typicality(x, 20), brute_typicality(x, 20), rtol=1e-4)


def test_typicality_of_duplicates_is_high_and_finite():
    x = unit_rows(30)
    x[5] = x[6]
    t = typicality(x, 1)
    assert np.all(np.isfinite(t)) and t[5] == t.max() and t[6] == t.max()


def test_typicality_sampled_above_exact_rows_is_seeded_and_close():
    rng = np.random.default_rng(3)
    # Density that varies: blobs of different spreads (on uniform data every row is equally typical).
    x = np.concatenate([rng.normal(c, s, (150, 4)) for c, s in ((0, 0.2), (3, 0.5), (-3, 1.0), (6, 2.0))])
    exact = typicality(x, 10)
    a = typicality(x, 10, exact_rows=300, seed=1)
    b = typicality(x, 10, exact_rows=300, seed=1)
    np.testing.assert_array_equal(a, b)
    # A density estimate from half the rows ranks like the exact one.
    assert np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(exact)))[0, 1] > 0.8


def test_knn_distances_never_count_a_row_as_its_own_neighbour():
    x = unit_rows(10)
    assert np.all(knn_distances(x, 3) > 0)


def test_typiclust_picks_the_densest_point_of_each_blob():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    x = np.concatenate([c + rng.normal(0, 0.5, (40, 2)) for c in centres]).astype(np.float32)
    picks, _, info = typiclust(x, np.zeros(len(x), bool), 3, seed=0)
    assert info["clusters"] == 3
    # One pick per blob, each its blob's most typical member (K = min(20, 40 // 2)).
    best = sorted(40 * b + int(np.argmax(brute_typicality(x[40 * b : 40 * b + 40], 20))) for b in range(3))
    assert sorted(picks.tolist()) == best


def test_typiclust_prefers_uncovered_clusters_and_is_seeded():
    rng = np.random.default_rng(1)
    x = np.concatenate([c + rng.normal(0, 0.3, (30, 2)) for c in ([0, 0], [8, 0], [0, 8])]).astype(np.float32)
    labeled = np.zeros(len(x), bool)
    labeled[:2] = True  # the first blob is covered already
    picks, _, _ = typiclust(x, labeled, 2, seed=4)
    assert all(p >= 30 for p in picks)
    np.testing.assert_array_equal(picks, typiclust(x, labeled, 2, seed=4)[0])


@pytest.mark.parametrize("method", ["typiclust", "coral"])
def test_the_typicality_pass_takes_threads_and_picks_the_same(method):
    x = unit_rows(300, seed=3)
    labeled = np.zeros(300, bool)
    labeled[:4] = True
    inputs = SelectionInputs(x, labeled, np.random.default_rng(2).random(300))
    extra = {"typicality": 0.5} if method == "coral" else {}
    one = select(method, 12, inputs, seed=1, threads=1, **extra)
    two = select(method, 12, inputs, seed=1, threads=2, **extra)
    np.testing.assert_array_equal(one.indices, two.indices)
    with pytest.raises(SelectionError, match=f"{method} option threads must be an integer >= 0"):
        select(method, 12, inputs, threads=-1, **extra)


def test_maxherding_matches_brute_force():
    x = unit_rows(120, seed=2)
    labeled = np.zeros(120, bool)
    labeled[[3, 50]] = True
    picks, gains, info = max_herding(x, labeled, 10, sigma=0.6)
    assert picks.tolist() == brute_herding(x, labeled, 10, 0.6)
    assert np.all(np.diff(gains) <= 1e-6)  # submodular: gains never grow
    assert info["exact"]


def test_maxherding_sampled_above_exact_rows_never_repicks_labeled():
    x = unit_rows(500, seed=5)
    labeled = np.zeros(500, bool)
    labeled[:50] = True
    picks, _, info = max_herding(x, labeled, 20, seed=1, exact_rows=200)
    assert not info["exact"] and len(set(picks.tolist())) == 20 and not labeled[picks].any()
    np.testing.assert_array_equal(picks, max_herding(x, labeled, 20, seed=1, exact_rows=200)[0])


@pytest.mark.parametrize("method", ["typiclust", "maxherding"])
def test_k_at_least_pool_returns_the_whole_pool(method):
    x = unit_rows(12)
    labeled = np.zeros(12, bool)
    labeled[:4] = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sel = select(method, 50, SelectionInputs(x, labeled))
    assert any(issubclass(w.category, SelectionWarning) for w in caught)
    assert sorted(sel.indices.tolist()) == list(range(4, 12))


@pytest.mark.parametrize("method", ["typiclust", "maxherding"])
def test_all_duplicates_and_empty_labeled_set(method):
    x = np.tile(unit_rows(1), (20, 1))
    sel = select(method, 5, SelectionInputs(x, np.zeros(20, bool)), seed=2)
    assert len(set(sel.indices.tolist())) == 5


def test_maxherding_bad_sigma_is_one_line_error():
    x = unit_rows(10)
    with pytest.raises(SelectionError, match="sigma must be 'auto' or a positive number"):
        select("maxherding", 2, SelectionInputs(x, np.zeros(10, bool)), sigma="wide")
    with pytest.raises(SelectionError, match="sigma"):
        select("maxherding", 2, SelectionInputs(x, np.zeros(10, bool)), sigma=-1)


def test_coral_typicality_one_is_pure_typicality_with_alpha_zero():
    x = unit_rows(80, seed=7)
    labeled = np.zeros(80, bool)
    scores = np.random.default_rng(0).random(80)
    picks, _, _, _ = coral_greedy(x, scores, 1, labeled, alpha=0.0, typicality=1.0)
    assert picks[0] == int(np.argmax(brute_typicality(x, 20)))


def test_coral_typicality_zero_changes_nothing():
    x = unit_rows(80, seed=8)
    labeled = np.zeros(80, bool)
    labeled[:3] = True
    scores = np.random.default_rng(1).random(80)
    a = coral_greedy(x, scores, 10, labeled)[0]
    b = coral_greedy(x, scores, 10, labeled, typicality=0.0)[0]
    np.testing.assert_array_equal(a, b)


def test_coral_typicality_out_of_range_is_refused():
    x = unit_rows(10)
    with pytest.raises(SelectionError, match="typicality must be in"):
        select("coral", 2, SelectionInputs(x, np.zeros(10, bool), np.zeros(10)), typicality=2)


def test_auto_regimes():
    from alloop.select.auto import regime

    assert regime(0, has_scores=False) == "cold-start"
    assert regime(500, has_scores=False) == "cold-start"
    assert regime(99, has_scores=True, low_budget=100) == "low-budget"
    assert regime(100, has_scores=True, low_budget=100) == "uncertainty"


def test_auto_is_typiclust_without_scores_and_coral_with_them():
    x = unit_rows(60, seed=9)
    labeled = np.zeros(60, bool)
    cold = select("auto", 5, SelectionInputs(x, labeled), seed=3)
    assert cold.options["regime"] == "cold-start" and cold.method == "auto"
    np.testing.assert_array_equal(cold.indices, select("typiclust", 5, SelectionInputs(x, labeled), seed=3).indices)
    labeled[:10] = True
    scores = np.random.default_rng(2).random(60)
    warm = select("auto", 5, SelectionInputs(x, labeled, scores), low_budget=50)
    same = select("maxherding", 5, SelectionInputs(x, labeled, scores), uncertainty=0.5)
    assert warm.options["regime"] == "low-budget" and warm.options["strategy"] == "maxherding"
    np.testing.assert_array_equal(warm.indices, same.indices)
    late = select("auto", 5, SelectionInputs(x, labeled, scores), low_budget=10)
    np.testing.assert_array_equal(late.indices, select("coral", 5, SelectionInputs(x, labeled, scores)).indices)


def test_typiclust_and_maxherding_bad_uncertainty():
    x = unit_rows(10)
    for method in ("typiclust", "maxherding"):
        with pytest.raises(SelectionError, match=rf"{method} option uncertainty must be in \[0, 1\], got 3.0"):
            select(method, 2, SelectionInputs(x, np.zeros(10, bool), np.zeros(10)), uncertainty=3)
        with pytest.raises(SelectionError, match="uncertainty must be a number in"):
            select(method, 2, SelectionInputs(x, np.zeros(10, bool), np.zeros(10)), uncertainty="high")


def test_auto_bad_low_budget():
    x = unit_rows(10)
    with pytest.raises(SelectionError, match="low_budget must be a whole number"):
        select("auto", 2, SelectionInputs(x, np.zeros(10, bool)), low_budget=-3)


def test_typiclust_uncertainty_picks_inside_the_same_clusters():
    rng = np.random.default_rng(5)
    x = np.concatenate([c + rng.normal(0, 0.4, (30, 2)) for c in ([0, 0], [9, 0], [0, 9])]).astype(np.float32)
    labeled = np.zeros(len(x), bool)
    scores = rng.random(len(x))
    plain, _, _ = typiclust(x, labeled, 3, seed=1)
    mixed, _, info = typiclust(x, labeled, 3, seed=1, scores=scores, uncertainty=1.0)
    # The clusters decide where the batch goes; with w = 1 the score decides which member.
    assert sorted(p // 30 for p in plain) == sorted(p // 30 for p in mixed) == [0, 1, 2]
    for p in mixed:
        blob = np.arange(30 * (p // 30), 30 * (p // 30) + 30)
        assert scores[p] == scores[blob].max()
    assert info["uncertainty"] == 1.0
    np.testing.assert_array_equal(typiclust(x, labeled, 3, seed=1, scores=scores, uncertainty=0.0)[0], plain)


def test_maxherding_uncertainty_weights_covered_points():
    x = unit_rows(120, seed=4)
    labeled = np.zeros(120, bool)
    scores = np.zeros(120)
    scores[77] = 1.0  # one very uncertain image: with w = 1 only its neighbourhood counts
    picks, _, _ = max_herding(x, labeled, 1, sigma=0.3, scores=scores, uncertainty=1.0)
    assert picks[0] == 77
    plain = max_herding(x, labeled, 4, sigma=0.6)[0]
    np.testing.assert_array_equal(max_herding(x, labeled, 4, sigma=0.6, scores=scores, uncertainty=0.0)[0], plain)


def test_a_scene_nobody_labeled_is_covered_by_maxherding_not_by_coral():
    """Issue 20 in miniature: a tight blob the model is confidently wrong about (lowest scores)."""
    rng = np.random.default_rng(0)
    seen = rng.normal(0, 1.0, (80, 8))
    blind = rng.normal(0, 0.05, (20, 8)) + 4.0
    x = np.concatenate([seen, blind]).astype(np.float32)
    labeled = np.zeros(100, bool)
    labeled[:10] = True
    scores = np.concatenate([rng.uniform(0.5, 1.0, 80), rng.uniform(0.0, 0.1, 20)])
    inputs = SelectionInputs(x, labeled, scores)
    coral = select("coral", 10, inputs)
    herd = select("maxherding", 10, inputs, uncertainty=0.5)
    in_blind = lambda sel: int(np.sum(sel.indices >= 80))  # noqa: E731
    # Uncertainty alone never reaches the blob; coverage buys it (one pick covers so tight a blob).
    assert in_blind(coral) == 0 and in_blind(herd) >= 1


def plain_knn_pass(x: np.ndarray, k: int, ref: np.ndarray) -> np.ndarray:
    """The plain pass the blocked one must equal bit for bit: per 2048 rows, topk(clamp(q2 + r2 - 2 q.r))."""
    import torch

    xt = torch.from_numpy(x)
    r = xt[torch.as_tensor(ref)]
    r2 = (r * r).sum(1)
    pos = np.full(len(x), -1)
    pos[ref] = np.arange(len(ref))
    out = []
    for s in range(0, len(x), 2048):
        q = xt[s : s + 2048]
        d2 = (q * q).sum(1, keepdim=True) + r2[None, :] - 2.0 * (q @ r.T)
        d2.clamp_(min=0.0)
        own = pos[s : s + 2048]
        rows = np.flatnonzero(own >= 0)
        d2[torch.as_tensor(rows), torch.as_tensor(own[rows])] = float("inf")
        out.append(torch.topk(d2, k, dim=1, largest=False).values.sqrt_().numpy())
    return np.concatenate(out)


@pytest.mark.parametrize("n, exact_rows", [(2049, 20_000), (4500, 20_000), (5000, 4000)])
def test_knn_distances_equal_the_plain_pass_bit_for_bit(n, exact_rows):
    x = unit_rows(n, d=32, seed=n)
    got = knn_distances(x, 20, exact_rows=exact_rows, seed=4)
    ref = np.arange(n) if n <= exact_rows else np.sort(np.random.default_rng(4).choice(n, 4000, replace=False))
    np.testing.assert_array_equal(got, plain_knn_pass(x, 20, ref))


def test_knn_distances_leave_torch_threads_as_they_were():
    import torch

    before = torch.get_num_threads()
    knn_distances(unit_rows(300), 5, threads=2)
    assert torch.get_num_threads() == before


def test_typiclust_computes_each_clusters_typicality_once(monkeypatch):
    import sys

    tc = sys.modules["alloop.select.typiclust"]  # alloop.select.typiclust is also the function's name
    monkeypatch.setattr(tc, "MAX_CLUSTERS", 8)  # 40 picks from 8 clusters: 5 visits each
    x = unit_rows(400, seed=11)
    labeled = np.zeros(400, bool)
    labeled[[3, 50]] = True
    expected = typiclust(x, labeled, 40, seed=2)[0]
    calls = []

    def counted(emb, k, **options):
        calls.append(len(emb))
        return typicality(emb, k, **options)

    monkeypatch.setattr(tc, "typicality", counted)
    picks, _, info = typiclust(x, labeled, 40, seed=2)
    np.testing.assert_array_equal(picks, expected)
    assert info["clusters"] == 8 and len(calls) == 8
    # The cached values are the same as computed afresh: each pick is its cluster's most typical free row.
    ids = tc.cluster(x, 8, 2)
    taken = labeled.copy()
    for p in picks:
        members = np.flatnonzero(ids == ids[p])
        typ = typicality(x[members], max(1, min(20, len(members) // 2)))
        typ[taken[members]] = -np.inf
        assert members[int(np.argmax(typ))] == p
        taken[p] = True
