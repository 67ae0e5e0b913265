"""select(): the registry, input checks, and invariants every strategy keeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alloop.errors import ConfigError, SelectionError
from alloop.select import PoolBoxes, SelectionInputs, SelectionWarning, available_methods, select


def kcenter_radius(x: np.ndarray, centers: np.ndarray) -> float:
    """max over non-centers of the distance to the nearest center (0 when everything is a center)."""
    x = x.astype(np.float64)
    rest = ~centers
    if not rest.any():
        return 0.0
    d = np.sqrt(((x[rest][:, None, :] - x[centers][None, :, :]) ** 2).sum(-1))
    return float(d.min(1).max())


def inputs(n: int = 30, d: int = 4, seed: int = 0, n_labeled: int = 3) -> SelectionInputs:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    labeled = np.zeros(n, bool)
    labeled[:n_labeled] = True
    return SelectionInputs(x, labeled, rng.random(n), rng.integers(0, 3, (n, 2)).astype(float))


@st.composite
def problems(draw: st.DrawFn) -> tuple[SelectionInputs, int, str]:
    n = draw(st.integers(1, 25))
    x = draw(arrays(np.float32, (n, 3), elements=st.floats(-2, 2, width=32)))
    labeled = draw(arrays(np.bool_, n, elements=st.booleans()))
    if labeled.all():
        labeled[0] = False
    scores = draw(arrays(np.float64, n, elements=st.floats(0, 1)))
    k = draw(st.integers(1, n))
    method = draw(st.sampled_from(sorted(available_methods())))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    counts = rng.integers(0, 4, n)  # some images without boxes
    b = int(counts.sum())
    boxes = PoolBoxes(np.concatenate([[0], np.cumsum(counts)]), rng.integers(0, 2, b), rng.random(b),
                      rng.standard_normal((b, 3)).astype(np.float32))
    return SelectionInputs(x, labeled, scores, boxes=boxes), k, method


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_no_duplicates_and_labeled_never_selected(problem: tuple[SelectionInputs, int, str]) -> None:
    inp, k, method = problem
    pool = int((~inp.labeled).sum())
    with pytest.warns(SelectionWarning) if k > pool else _no_warning():
        sel = select(method, k, inp)
    assert len(sel.indices) == min(k, pool)
    assert len(set(sel.indices.tolist())) == len(sel.indices)
    assert not inp.labeled[sel.indices].any()
    assert sel.distances.shape == sel.scores.shape == sel.indices.shape
    assert sel.method == method


class _no_warning:
    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", SelectionWarning)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2**31 - 1))
def test_coreset_radius_is_within_twice_that_of_random(
    problem: tuple[SelectionInputs, int, str], seed: int
) -> None:
    # Greedy k-center is a 2-approximation (Gonzalez 1985): its radius is at most twice that of ANY
    # k new centers, random ones included. "Never worse than random" is not a theorem (random can hit
    # the optimum on tiny inputs), so the strict comparison is checked on realistic inputs below.
    inp, k, _ = problem
    k = min(k, int((~inp.labeled).sum()))
    greedy = select("coreset", k, inp)
    rand = select("random", k, inp, seed=seed)
    centers_g, centers_r = inp.labeled.copy(), inp.labeled.copy()
    centers_g[greedy.indices] = True
    centers_r[rand.indices] = True
    assert kcenter_radius(inp.embeddings, centers_g) <= 2 * kcenter_radius(inp.embeddings, centers_r) + 1e-5


@pytest.mark.parametrize("seed", range(5))
def test_coreset_radius_beats_random_on_realistic_inputs(seed: int) -> None:
    inp = inputs(n=400, d=16, seed=seed, n_labeled=10)
    centers_g, centers_r = inp.labeled.copy(), inp.labeled.copy()
    centers_g[select("coreset", 40, inp).indices] = True
    centers_r[select("random", 40, inp, seed=seed).indices] = True
    assert kcenter_radius(inp.embeddings, centers_g) < kcenter_radius(inp.embeddings, centers_r)


@pytest.mark.parametrize("method", ["random", "coreset", "coral"])
def test_k_above_the_pool_warns_and_returns_the_whole_pool(method: str) -> None:
    inp = inputs(n=12, n_labeled=4)
    with pytest.warns(SelectionWarning, match="asked for 20 new picks but only 8 unlabeled images remain"):
        sel = select(method, 20, inp)
    assert sorted(sel.indices.tolist()) == list(range(4, 12))


def test_available_methods_declare_their_inputs() -> None:
    assert available_methods() == {
        "auto": ("embeddings",),
        "coral": ("embeddings", "scores"),
        "coreset": ("embeddings",),
        "maxherding": ("embeddings",),
        "ppal": ("scores", "boxes"),
        "random": (),
        "typiclust": ("embeddings",),
    }
    # auto reads scores when the loop has them (after the first step) and works without.
    from alloop.select import selectors

    assert selectors()["auto"].uses == ("embeddings", "scores")


def test_random_needs_no_embeddings() -> None:
    labeled = np.array([True, False, False, False])
    sel = select("random", 2, SelectionInputs(None, labeled))
    assert set(sel.indices.tolist()) <= {1, 2, 3}
    assert np.isnan(sel.distances).all() and np.isnan(sel.scores).all()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda i: SelectionInputs(None, i.labeled, i.scores),
            "coreset needs embeddings; run `alloop embed` first",
        ),
        (
            lambda i: SelectionInputs(i.embeddings[:-1], i.labeled, i.scores),
            r"embeddings must be \(30, D\) to match 30 labeled flags, got \(29, 4\)",
        ),
        (
            lambda i: SelectionInputs(i.embeddings, i.labeled, i.scores[:-2]),
            r"scores must be \(30,\) to match 30 labeled flags, got \(28,\)",
        ),
        (
            lambda i: SelectionInputs(i.embeddings, i.labeled.astype(int), i.scores),
            "labeled must be a 1-D bool array",
        ),
        (
            lambda i: SelectionInputs(i.embeddings, np.ones(30, bool), i.scores),
            "nothing to select: all 30 images are already labeled or queued",
        ),
        (
            lambda i: SelectionInputs(i.embeddings, i.labeled, i.scores, np.ones((30, 2)) * -1),
            "predicted_classes must be finite, non-negative",
        ),
    ],
)
def test_bad_inputs_are_clear_errors(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SelectionError, match=message):
        select("coreset", 3, mutate(inputs()))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_embeddings_name_the_row(bad: float) -> None:
    inp = inputs()
    x = inp.embeddings.copy()
    x[17, 2] = bad
    with pytest.raises(SelectionError, match="embeddings row 17 contains NaN or inf"):
        select("coreset", 3, SelectionInputs(x, inp.labeled))


def test_non_finite_embeddings_do_not_matter_to_random() -> None:
    inp = inputs()
    x = inp.embeddings.copy()
    x[5] = np.nan
    assert len(select("random", 3, SelectionInputs(x, inp.labeled)).indices) == 3


def test_coral_without_scores_says_how_to_get_them() -> None:
    inp = inputs()
    with pytest.raises(
        SelectionError, match="coral needs uncertainty scores; run `alloop step` once .* --method coreset"
    ):
        select("coral", 3, SelectionInputs(inp.embeddings, inp.labeled))


@pytest.mark.parametrize("k", [0, -3, 2.5, True, "3"])
def test_bad_k_is_a_clear_error(k: object) -> None:
    with pytest.raises(SelectionError, match="k \\(the number of new picks\\) must be"):
        select("random", k, inputs())  # type: ignore[arg-type]


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(
        SelectionError, match="unknown selection method 'badge'; known: auto, coral, coreset, maxherding, ppal, random, typiclust"
    ):
        select("badge", 3, inputs())


def test_unknown_option_lists_the_known_ones() -> None:
    with pytest.raises(
        SelectionError,
        match="coral: unknown option\\(s\\) beta; known: alpha, balance, hot_size, score_threshold, threads",
    ):
        select("coral", 3, inputs(), beta=0.3)
    with pytest.raises(SelectionError, match="random: unknown option\\(s\\) alpha; known: none"):
        select("random", 3, inputs(), alpha=0.3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_asked_for_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="device 'cuda' asked for but no CUDA device is available"):
        select("coreset", 3, inputs(), device="cuda")


def test_unknown_device_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="device 'tpu' is unknown; use auto, cpu, cuda or cuda:N"):
        select("coreset", 3, inputs(), device="tpu")


def test_selection_is_frozen_and_options_are_resolved() -> None:
    sel = select("coral", 4, inputs())
    assert dict(sel.options)["alpha"] == 0.5 and sel.options["balance"] == 0.0
    with pytest.raises(TypeError):
        sel.options["alpha"] = 1.0  # type: ignore[index]
    with pytest.raises(ValueError):
        sel.indices[0] = 5
