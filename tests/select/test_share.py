"""The share cap (``auto`` option ``max_share``): exact against a brute-force reference, never above the
ceiling, a no-op when nothing fills, seeded, and its edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alloop.errors import SelectionError
from alloop.select import SelectionInputs, select
from alloop.select.base import make_selection
from alloop.select.share import capped, check_max_share, n_regions, pool_regions, region_room


def top_score(k, inputs, pool):
    """A non-adaptive strategy: the k highest scores of the pool (ties by row)."""
    s = np.asarray(inputs.scores)[pool]
    order = pool[np.lexsort((pool, -s))][:k]
    return make_selection("top", order, None, inputs.scores, {"k": k}, objective=np.asarray(inputs.scores)[order])


def brute_capped_top(scores, labeled, regions, k, max_share):
    """The definition for a non-adaptive strategy: walk the images by score, take one while its region has room."""
    n = len(scores)
    total = int(labeled.sum()) + k
    ceiling = {}
    for c in set(regions.tolist()):
        size = int((regions == c).sum())
        ceiling[c] = max(1, math.ceil(max_share * size / n * total - 1e-9))
    held = {c: int((regions[labeled] == c).sum()) for c in ceiling}
    order = sorted(np.flatnonzero(~labeled), key=lambda i: (-scores[i], i))
    picks = []
    for i in order:
        if len(picks) == k:
            break
        if held[regions[i]] < ceiling[regions[i]]:
            picks.append(int(i))
            held[regions[i]] += 1
    return picks


@pytest.mark.parametrize("seed", range(6))
def test_capped_matches_the_definition_for_a_fixed_ranking(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 60))
    regions = rng.integers(0, int(rng.integers(2, 6)), size=n)
    scores = rng.random(n)
    scores[regions == 0] += 1.0  # region 0 is where the score points: the cap must bite there
    labeled = rng.random(n) < 0.3
    k = int(rng.integers(1, n - labeled.sum() + 1))
    max_share = float(rng.choice([1.0, 1.5, 2.0, 3.0]))
    inputs = SelectionInputs(None, labeled, scores)
    sel, info = capped(top_score, k, inputs, regions, max_share)
    assert sel.indices.tolist() == brute_capped_top(scores, labeled, regions, k, max_share)
    np.testing.assert_allclose(sel.objective, scores[sel.indices])  # each pick keeps what chose it
    assert info["max_share"] == max_share and info["regions"] == len(np.unique(regions))


@pytest.mark.parametrize("seed", range(4))
def test_no_region_goes_above_its_ceiling_with_auto(seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 8))
    sizes = [150, 60, 40, 25, 15, 10]
    x = np.concatenate([c + rng.normal(0, 0.05, (m, 8)) for c, m in zip(centres, sizes)]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    scene = np.repeat(np.arange(6), sizes)
    scores = rng.random(len(x)) * 0.2 + (scene == 5)  # the smallest scene is the uncertain one
    labeled = np.zeros(len(x), bool)
    labeled[rng.choice(150, 20, replace=False)] = True
    regions = pool_regions(x, seed)
    total = int(labeled.sum()) + 30
    ceilings = np.maximum(np.ceil(2 * np.bincount(regions) / len(x) * total - 1e-9), 1)
    for low_budget in (1000, 0):  # maxherding and coral regimes
        sel = select("auto", 30, SelectionInputs(x, labeled, scores), seed=seed, low_budget=low_budget,
                     max_share=2)
        assert len(set(sel.indices.tolist())) == 30 and not labeled[sel.indices].any()
        held = np.bincount(regions[labeled], minlength=len(ceilings)) + np.bincount(
            regions[sel.indices], minlength=len(ceilings))
        assert (held <= np.maximum(ceilings, np.bincount(regions[labeled], minlength=len(ceilings)))).all()
        assert sel.options["max_share"] == 2.0
    # coral follows the score into the small uncertain scene; the cap holds it to twice its share
    free = select("auto", 30, SelectionInputs(x, labeled, scores), seed=seed, low_budget=0)
    sel = select("auto", 30, SelectionInputs(x, labeled, scores), seed=seed, low_budget=0, max_share=2)
    assert (scene[sel.indices] == 5).sum() <= math.ceil(2 * 10 / len(x) * total) < (scene[free.indices] == 5).sum()
    assert sel.options["dropped"] > 0


def scattered_pool(n: int, n_labeled: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit rows without structure, the first ``n_labeled`` labeled, uniform scores."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labeled = np.arange(n) < n_labeled
    return x, labeled, rng.random(n)


def test_the_cap_changes_nothing_when_no_region_fills():
    x, labeled, scores = scattered_pool(80, 10, seed=3)
    for low_budget in (1000, 0):
        plain = select("auto", 5, SelectionInputs(x, labeled, scores), seed=2, low_budget=low_budget)
        loose = select("auto", 5, SelectionInputs(x, labeled, scores), seed=2, low_budget=low_budget,
                       max_share=50)
        np.testing.assert_array_equal(plain.indices, loose.indices)
        assert loose.options["dropped"] == 0 and loose.options["reruns"] == 0


def test_auto_with_the_cap_is_deterministic_per_seed_and_off_at_the_cold_start():
    x, labeled, scores = scattered_pool(120, 15, seed=8)
    runs = [select("auto", 12, SelectionInputs(x, labeled, scores), seed=4, max_share=1).indices for _ in range(2)]
    np.testing.assert_array_equal(*runs)
    cold = select("auto", 12, SelectionInputs(x, np.zeros(120, bool)), seed=4, max_share=1)
    assert "max_share" not in cold.options  # typical images first: nothing to cap
    np.testing.assert_array_equal(cold.indices, select("auto", 12, SelectionInputs(x, np.zeros(120, bool)),
                                                        seed=4).indices)


@pytest.mark.parametrize("seed", range(6))
def test_the_regions_always_have_room_for_the_whole_batch(seed):
    """With max_share >= 1 the ceilings leave room for k picks, however skewed the labeled set already is."""
    rng = np.random.default_rng(seed)
    n = 40
    regions = rng.integers(0, 4, size=n)
    labeled = (regions == 0) | (rng.random(n) < 0.2)  # region 0 already far above its share
    scores = rng.random(n) + 2.0 * (regions == 0)
    k = int((~labeled).sum())
    sel, _ = capped(top_score, k, SelectionInputs(None, labeled, scores), regions, 1.0)
    assert sorted(sel.indices.tolist()) == np.flatnonzero(~labeled).tolist()


def test_edge_cases_k_at_least_the_pool_duplicates_and_equal_scores():
    x = np.tile(np.eye(4, dtype=np.float32), (6, 1))  # 24 rows, 4 distinct points
    labeled = np.zeros(24, bool)
    labeled[:2] = True
    scores = np.full(24, 0.5)
    every = select("auto", 50, SelectionInputs(x, labeled, scores), seed=1, max_share=2)
    assert sorted(every.indices.tolist()) == list(range(2, 24))
    some = select("auto", 7, SelectionInputs(x, labeled, scores), seed=1, max_share=1)
    assert len(set(some.indices.tolist())) == 7 and not labeled[some.indices].any()


def test_region_room():
    regions = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    labeled = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], bool)
    # 3 labeled + 2 new = 5; ceilings ceil(2 * share * 5): 4, 2, 4
    assert region_room(regions, labeled, 2, 2.0).tolist() == [1, 2, 4]
    assert region_room(regions, labeled, 2, 1.0).tolist() == [0, 1, 2]  # ceil(2), ceil(1), ceil(2)
    assert n_regions(10) == 2 and n_regions(240) == 11 and n_regions(10**6) == 50


@pytest.mark.parametrize("bad", [0.5, -1, True, "two", float("nan"), float("inf")])
def test_bad_max_share_is_refused(bad):
    with pytest.raises(SelectionError, match="max_share must be 0 \\(off\\) or a number >= 1"):
        check_max_share(bad)
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(SelectionError, match="max_share"):
        select("auto", 1, SelectionInputs(x, np.array([1, 0, 0, 0], bool), np.zeros(4)), max_share=bad)


def test_regions_must_match_the_pool():
    with pytest.raises(SelectionError, match="one entry per image"):
        capped(top_score, 1, SelectionInputs(None, np.zeros(4, bool), np.zeros(4)), np.zeros(3, np.int64), 2.0)
