"""Weighted term specs (alloop.select.compose): parsing, exactness against a brute force, contributions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from alloop.errors import SelectionError
from alloop.select import SelectionInputs, SelectionWarning, is_spec, parse_spec, select, selector_for
from alloop.select.coral import class_rarity
from alloop.select.typicality import typicality


def _inputs(n: int = 120, d: int = 8, labeled: int = 4, seed: int = 0) -> SelectionInputs:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    lab = np.zeros(n, bool)
    lab[:labeled] = True
    scores = rng.random(n).astype(np.float32)
    classes = rng.integers(0, 4, size=(n, 3)).astype(np.float32)
    return SelectionInputs(x, lab, scores, classes)


def _brute_force(inp: SelectionInputs, k: int, wd: float, wu: float, wt: float, lam: float) -> list[int]:
    """The objective of the module docstring evaluated for every candidate at every pick, in float64."""
    x = inp.embeddings.astype(np.float64)
    pool = np.flatnonzero(~inp.labeled)
    s = inp.scores.astype(np.float64)
    sn = (s - s[pool].min()) / (s[pool].max() - s[pool].min())
    t = typicality(inp.embeddings).astype(np.float64)
    tn = (t - t[pool].min()) / (t[pool].max() - t[pool].min())
    counts = inp.predicted_classes.astype(np.float64)
    q = counts / np.maximum(counts.sum(1, keepdims=True), 1e-12)
    centers = list(np.flatnonzero(inp.labeled))
    picks: list[int] = []
    for _ in range(k):
        cand = np.array([i for i in pool if i not in picks])
        d = np.array([min(np.linalg.norm(x[i] - x[c]) for c in centers) for i in cand])
        dn = d / d.max()
        totals = counts[centers].sum(0)
        b = q[cand] @ class_rarity(totals)
        total = wd + wu + wt
        obj = (1 - lam) * (wd * dn + wu * sn[cand] + wt * tn[cand]) / total + lam * b
        best = int(cand[int(np.argmax(obj))])
        picks.append(best)
        centers.append(best)
    return picks


@pytest.mark.parametrize(
    ("spec", "weights"),
    [
        ("diversity=1, uncertainty=1", (1, 1, 0, 0)),
        ("diversity=1, uncertainty=3, typicality=1", (1, 3, 1, 0)),
        ("diversity=2, uncertainty=1, balance=0.4", (2, 1, 0, 0.4)),
        ("diversity=1, typicality=0.5, uncertainty=1, balance=0.3", (1, 1, 0.5, 0.3)),
    ],
)
def test_spec_equals_brute_force(spec: str, weights: tuple[float, float, float, float]) -> None:
    inp = _inputs()
    picks = select(spec, 12, inp).indices.tolist()
    assert picks == _brute_force(inp, 12, *weights)


def test_contributions_add_up_to_the_objective() -> None:
    sel = select("diversity=1, typicality=0.5, uncertainty=1, balance=0.3", 15, _inputs())
    assert set(sel.terms) == {"diversity", "uncertainty", "typicality", "balance"}
    total = sum(v.astype(np.float64) for v in sel.terms.values())
    np.testing.assert_allclose(total, sel.objective, atol=1e-5)
    assert all(np.all(v >= 0) for v in sel.terms.values())


def test_same_picks_as_coral_with_the_mapped_options() -> None:
    inp = _inputs(seed=3)
    coral = select("coral", 10, inp, alpha=0.4, typicality=0.25, balance=0.3)
    spec = select("diversity=2, uncertainty=2.25, typicality=0.75, balance=0.3", 10, inp)
    assert coral.indices.tolist() == spec.indices.tolist()


def test_coverage_spec_is_maxherding_with_the_uncertainty_share() -> None:
    inp = _inputs(seed=5)
    herd = select("maxherding", 8, inp, uncertainty=0.25)
    spec = select("coverage=3, uncertainty=1", 8, inp)
    assert herd.indices.tolist() == spec.indices.tolist()
    assert list(spec.terms) == ["coverage"]


def test_deterministic_and_never_picks_labeled_or_twice() -> None:
    inp = _inputs(seed=1)
    a = select("diversity=1, uncertainty=1, typicality=1", 30, inp).indices
    b = select("diversity=1, uncertainty=1, typicality=1", 30, inp).indices
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist())) == 30
    assert not inp.labeled[a].any()


def test_threshold_prefers_images_above_it_then_fills() -> None:
    inp = _inputs(seed=2)
    above = int(((inp.scores >= 0.9) & ~inp.labeled).sum())
    with pytest.warns(SelectionWarning, match="score_threshold"):
        sel = select("diversity=1, uncertainty=1, threshold=0.9", above + 3, inp)
    assert (inp.scores[sel.indices[:above]] >= 0.9).all()
    assert (inp.scores[sel.indices[above:]] < 0.9).all()


def test_k_above_pool_returns_the_pool_with_a_warning() -> None:
    inp = _inputs(n=20, labeled=5)
    with pytest.warns(SelectionWarning, match="only 15 unlabeled"):
        sel = select("diversity=1, uncertainty=1", 50, inp)
    assert sorted(sel.indices.tolist()) == list(range(5, 20))


def test_empty_labeled_set_and_equal_scores() -> None:
    inp = _inputs(labeled=0)
    flat = SelectionInputs(inp.embeddings, inp.labeled, np.full(len(inp.labeled), 0.5, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sel = select("diversity=1, uncertainty=1", 5, flat)
    assert len(set(sel.indices.tolist())) == 5
    assert sel.terms["uncertainty"].tolist() == [0.0] * 5  # equal scores normalise to 0
    assert sel.terms["diversity"][0] == pytest.approx(0.5)  # first pick: no center, counts as farthest


def test_duplicate_rows_are_not_both_picked_by_diversity() -> None:
    inp = _inputs(n=30, labeled=0)
    x = np.concatenate([inp.embeddings[:15], inp.embeddings[:15]])
    sel = select("diversity=1", 15, SelectionInputs(x, np.zeros(30, bool)))
    assert len({int(i) % 15 for i in sel.indices}) == 15


def test_pure_uncertainty_needs_no_embeddings() -> None:
    inp = _inputs()
    sel = select("uncertainty=1", 5, SelectionInputs(None, inp.labeled, inp.scores))
    pool = np.flatnonzero(~inp.labeled)
    assert sel.indices.tolist() == pool[np.argsort(-inp.scores[pool], kind="stable")][:5].tolist()


def test_parse_names_the_score_and_canonical_text() -> None:
    spec = parse_spec(" typicality=0.5 ,diversity=1, uncertainty=entropy:mean@2, threshold=0.1")
    assert spec.score == "entropy:mean"
    assert dict(spec.weights) == {"typicality": 0.5, "diversity": 1.0, "uncertainty": 2.0}
    assert spec.text() == "diversity=1, uncertainty=entropy:mean@2, typicality=0.5, threshold=0.1"
    assert spec.needs == ("embeddings", "scores")
    assert parse_spec("uncertainty=margin:max").weights["uncertainty"] == 1.0
    assert is_spec("diversity=1") and not is_spec("coral")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("diversity", "must be NAME=VALUE"),
        ("novelty=1", "unknown term 'novelty'; terms: diversity, coverage"),
        ("diversity=1, diversity=2", "given twice"),
        ("diversity=-1", r"diversity='-1' must be a number in \[0, inf\]"),
        ("diversity=nan", "must be a number in"),
        ("diversity=1, balance=2", r"balance='2' must be a number in \[0, 1\]"),
        ("uncertainty=@1", "needs a score before '@'"),
        ("uncertainty=entropy:mean@x", "uncertainty='x' must be a number"),
        ("balance=0.5", "give at least one of diversity, coverage, uncertainty, typicality"),
        ("diversity=0, uncertainty=0", "give at least one of"),
        ("coverage=1, diversity=1", "coverage \\(MaxHerding\\) combines with uncertainty only"),
        ("threshold=abc, diversity=1", "threshold='abc' must be a number"),
    ],
)
def test_bad_specs_are_refused_with_the_fix(text: str, message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        parse_spec(text)
    if is_spec(text):  # the registry's lookup checks a spec the same way
        with pytest.raises(SelectionError, match=message):
            selector_for(text)


def test_missing_inputs_say_what_to_run() -> None:
    inp = _inputs()
    with pytest.raises(SelectionError, match="needs uncertainty scores"):
        select("diversity=1, uncertainty=1", 3, SelectionInputs(inp.embeddings, inp.labeled))
    with pytest.raises(SelectionError, match="predicted classes"):
        select("diversity=1, balance=0.5", 3, SelectionInputs(inp.embeddings, inp.labeled, inp.scores))


def test_unknown_method_mentions_term_specs() -> None:
    with pytest.raises(SelectionError, match="weighted terms such as"):
        selector_for("corral")


def test_spec_needs_follow_the_terms() -> None:
    assert selector_for("uncertainty=1").needs == ("scores",)
    assert selector_for("diversity=1, balance=0.2").needs == ("embeddings", "predicted_classes")
    assert selector_for("diversity=1, threshold=0.3").needs == ("embeddings", "scores")


def test_spec_score_names_the_score_or_refuses_a_different_one() -> None:
    from alloop.select.compose import spec_score

    assert spec_score("coral") is None
    assert spec_score("diversity=1, uncertainty=0.5") is None
    assert spec_score("diversity=1, uncertainty=dcus@0.5") == "dcus"
    assert spec_score("diversity=1, uncertainty=dcus@0.5", "dcus") == "dcus"
    with pytest.raises(SelectionError, match="names score 'dcus'.*--score is 'entropy:max'; drop one"):
        spec_score("diversity=1, uncertainty=dcus@0.5", "entropy:max")
