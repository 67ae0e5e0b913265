"""Greedy k-center: the lazy engine must give the brute force's picks, in order, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alloop.select import SelectionInputs, select
from alloop.select.coreset import closest_to_mean, k_center_greedy


def brute_medoid(x: np.ndarray, cand: np.ndarray) -> int:
    """Closest to the candidates' mean, as argmin ||n x - sum||^2 (exact for integers); lowest row on ties."""
    x = x.astype(np.float64)
    n = int(cand.sum())
    d = ((x * n - x[cand].sum(0)) ** 2).sum(1)
    d[~cand] = np.inf
    return int(np.argmin(d))


def brute_k_center(x: np.ndarray, k: int, labeled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Textbook greedy k-center in float64: full distance pass per pick, np.argmax takes the lowest row."""
    x = x.astype(np.float64)
    cand = ~labeled.copy()
    u = np.full(len(x), np.inf)
    for c in np.flatnonzero(labeled):
        u = np.minimum(u, ((x - x[c]) ** 2).sum(1))
    picks, dists = [], []
    for _ in range(min(k, int(cand.sum()))):
        if np.isinf(u).all():
            i = brute_medoid(x, cand)
        else:
            i = int(np.argmax(np.where(cand, u, -np.inf)))
        picks.append(i)
        dists.append(np.sqrt(u[i]))
        cand[i] = False
        u = np.minimum(u, ((x - x[i]) ** 2).sum(1))
    return np.array(picks, dtype=np.int64), np.array(dists)


@st.composite
def integer_problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, int | None]:
    """Small integer embeddings (exact float arithmetic, many ties), a labeled mask, k and a hot-set size."""
    n = draw(st.integers(2, 40))
    d = draw(st.integers(1, 4))
    x = draw(arrays(np.float32, (n, d), elements=st.integers(-3, 3).map(float)))
    labeled = draw(arrays(np.bool_, n, elements=st.booleans()))
    if labeled.all():
        labeled[draw(st.integers(0, n - 1))] = False
    k = draw(st.integers(1, int((~labeled).sum())))
    hot = draw(st.sampled_from([None, 1, 2, 3, 7]))
    return x, labeled, k, hot


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(integer_problems())
def test_same_picks_as_brute_force_with_ties(problem: tuple[np.ndarray, np.ndarray, int, int | None]) -> None:
    x, labeled, k, hot = problem
    picks, dists = k_center_greedy(x, k, labeled, hot_size=hot)
    want, want_d = brute_k_center(x, k, labeled)
    np.testing.assert_array_equal(picks, want)
    np.testing.assert_allclose(dists, want_d, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("hot", [None, 5, 40])
def test_same_picks_as_brute_force_on_normalised_floats(seed: int, hot: int | None) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labeled = rng.random(300) < 0.1
    picks, dists = k_center_greedy(x, 60, labeled, hot_size=hot)
    want, want_d = brute_k_center(x, 60, labeled)
    np.testing.assert_array_equal(picks, want)
    np.testing.assert_allclose(dists, want_d, rtol=1e-4)


def test_first_pick_without_labels_is_closest_to_mean() -> None:
    # Mean (2.8, 2.8): (4, 4) is closest to it; (0, 0) would be the sum-of-distances medoid (25.66 < 25.74).
    x = np.array([[0, 0], [10, 0], [0, 10], [4, 4], [0, 0]], dtype=np.float32)
    picks, dists = k_center_greedy(x, 3, np.zeros(5, bool))
    assert picks[0] == 3
    assert np.isinf(dists[0])
    assert list(picks[1:]) == [1, 2]  # both at distance sqrt(52) from (4, 4): the lower row first
    assert dists[1] == pytest.approx(np.sqrt(52))


def test_medoid_ties_go_to_the_lowest_row() -> None:
    x = np.array([[5, 0], [1, 0], [-1, 0], [-5, 0]], dtype=np.float32)  # mean 0: rows 1 and 2 tie
    assert closest_to_mean(torch.from_numpy(x), np.ones(4, bool)) == 1
    assert (
        closest_to_mean(torch.from_numpy(x), np.array([False, False, True, True])) == 2
    )  # mean -3: row 2 (-1) and 3 (-5) tie


def test_ties_later_go_to_the_lowest_row_and_labeled_are_centers() -> None:
    x = np.array([[2], [0], [-2], [1], [-1]], dtype=np.float32)
    labeled = np.array([False, True, False, False, False])
    picks, dists = k_center_greedy(x, 4, labeled)
    assert list(picks) == [0, 2, 3, 4]
    np.testing.assert_allclose(dists, [2, 2, 1, 1])


def test_exact_duplicates_of_a_center_come_last() -> None:
    x = np.array([[0, 0], [0, 0], [3, 4], [0, 0]], dtype=np.float32)
    picks, dists = k_center_greedy(x, 3, np.array([True, False, False, False]))
    assert list(picks) == [2, 1, 3]
    np.testing.assert_allclose(dists, [5, 0, 0])


def test_selection_carries_distances_and_scores() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 4)).astype(np.float32)
    labeled = np.zeros(50, bool)
    labeled[:5] = True
    scores = rng.random(50)
    sel = select("coreset", 10, SelectionInputs(x, labeled, scores))
    assert sel.method == "coreset" and sel.indices.dtype == np.int64
    np.testing.assert_allclose(sel.scores, scores[sel.indices].astype(np.float32))
    assert np.all(np.diff(sel.distances) <= 1e-6)  # greedy k-center distances never increase
    assert sel.options["first_center"] == "labeled set"
    assert not sel.indices.flags.writeable


def test_threads_option_gives_the_same_picks_and_restores_torch_settings() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 8)).astype(np.float32)
    labeled = np.zeros(400, bool)
    before = (torch.get_num_threads(), torch.get_float32_matmul_precision())
    one = select("coreset", 20, SelectionInputs(x, labeled), hot_size=16)
    two = select("coreset", 20, SelectionInputs(x, labeled), hot_size=16, threads=2)
    np.testing.assert_array_equal(one.indices, two.indices)
    assert one.options["threads"] == 1 and two.options["threads"] == 2
    assert (torch.get_num_threads(), torch.get_float32_matmul_precision()) == before


def test_read_only_float64_input_is_accepted_and_not_modified() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 3))
    x.setflags(write=False)
    before = x.copy()
    picks, _ = k_center_greedy(x, 5, np.zeros(40, bool))
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(picks, brute_k_center(x.astype(np.float32), 5, np.zeros(40, bool))[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_picks() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(-4, 5, (2000, 16)).astype(np.float32)
    labeled = rng.random(2000) < 0.05
    cpu, _ = k_center_greedy(x, 100, labeled, device="cpu", hot_size=64)
    gpu, _ = k_center_greedy(x, 100, labeled, device="cuda", hot_size=64)
    np.testing.assert_array_equal(cpu, gpu)
    gpu_all_hot, _ = k_center_greedy(x, 100, labeled, device="cuda")  # CUDA default: every row hot
    np.testing.assert_array_equal(cpu, gpu_all_hot)
