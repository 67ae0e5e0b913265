"""A selection written as weighted terms, in the spirit of Lightly's strategies.

    --method "diversity=1, typicality=0.5, uncertainty=entropy:mean@1, balance=0.3, threshold=0.2"

Lightly's Worker builds a selection from small strategies with strengths (DIVERSITY, TYPICALITY,
WEIGHTS, BALANCE, THRESHOLD; ../shared/ANCHORS.md); alloop's terms, each a number per candidate in
[0, 1], are combined greedily as a weighted sum (one pick at a time, dynamic terms updated after each):

- ``diversity`` (w_d): d_i / max_j d_j, the min distance to the labeled + picked images (coreset's term);
- ``uncertainty`` (w_u): the uncertainty score, min-max normalised over the pool; ``SCORE@W`` names
  the score (``entropy:mean@1``), a bare number uses the project's score (``--score``);
- ``typicality`` (w_t): 1 / mean 20-NN distance, min-max normalised (TypiClust's density);
- ``balance`` (lambda in [0, 1]): objective = (1 - lambda) * sum + lambda * b_i, b_i the rarity of the
  image's predicted classes among the labeled + picked boxes (Lightly's BALANCE);
- ``threshold`` (a raw score): candidates scoring below it are picked only once none above remain;
- ``coverage`` (w_c): MaxHerding's kernel-coverage gain instead of ``diversity``; it combines with
  ``uncertainty`` only (uncertainty then weighs the covered points, as in Uncertainty Herding).

    objective_i = (1 - lambda) * (w_d * d_i / max d + w_u * s_i + w_t * t_i) / (w_d + w_u + w_t) + lambda * b_i

This is CORAL's objective with alpha = w_d / W and typicality tau = w_t / (w_u + w_t), so it runs on
CORAL's exact engine (1M x 128 like ``coral``). Each pick's objective is split into the terms'
contributions (``Selection.terms``, summing to the objective) for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from alloop.errors import SelectionError
from alloop.select.base import MISSING_HINTS, Selection, SelectionInputs, Selector, make_selection
from alloop.select.coral import coral_greedy, normalised_scores
from alloop.select.coreset import DEFAULT_THREADS, check_engine_options
from alloop.select.maxherding import max_herding
from alloop.select.typicality import typicality as typicality_of

WEIGHTED = ("diversity", "coverage", "uncertainty", "typicality")
TERMS = (*WEIGHTED, "balance", "threshold")


@dataclass(frozen=True)
class SelectionSpec:
    """A parsed ``name=value, ...`` selection: term weights, the score it names, the threshold."""

    weights: MappingProxyType  # term -> weight > 0, for the terms given (balance included)
    score: str | None = None  # the score the uncertainty term names (None: the project's score)
    threshold: float | None = None

    @property
    def needs(self) -> tuple[str, ...]:
        """The SelectionInputs fields this spec reads."""
        w = self.weights
        need = []
        if any(w.get(t, 0) > 0 for t in ("diversity", "coverage", "typicality")):
            need.append("embeddings")
        if w.get("uncertainty", 0) > 0 or self.threshold is not None:
            need.append("scores")
        if w.get("balance", 0) > 0:
            need.append("predicted_classes")
        return tuple(need)

    def text(self) -> str:
        """The canonical spec string (terms in TERMS order)."""
        parts = []
        for term in TERMS:
            if term == "threshold" and self.threshold is not None:
                parts.append(f"threshold={self.threshold:g}")
            elif term in self.weights:
                w = f"{self.weights[term]:g}"
                parts.append(f"uncertainty={self.score}@{w}" if term == "uncertainty" and self.score
                             else f"{term}={w}")
        return ", ".join(parts)


def is_spec(method: str) -> bool:
    """True when ``method`` is a term spec (``name=value, ...``) rather than a strategy name."""
    return "=" in method


def parse_spec(text: str) -> SelectionSpec:
    """Parse ``"diversity=1, uncertainty=entropy:mean@0.5, balance=0.3, threshold=0.2"``; SelectionError if bad."""
    weights: dict[str, float] = {}
    score = threshold = None
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not value:
            raise SelectionError(f"selection spec term {part!r} must be NAME=VALUE (e.g. diversity=1)")
        if name not in TERMS:
            raise SelectionError(f"selection spec: unknown term {name!r}; terms: {', '.join(TERMS)}")
        if name in weights or (name == "threshold" and threshold is not None):
            raise SelectionError(f"selection spec: term {name!r} given twice")
        if name == "threshold":
            threshold = _number(name, value, lo=-math.inf)
            continue
        if name == "uncertainty" and not _is_number(value):
            score, _, w = value.rpartition("@") if "@" in value else (value, "", "1")
            if not score:
                raise SelectionError(f"selection spec: uncertainty={value!r} needs a score before '@'")
            value = w
        weights[name] = _number(name, value, hi=1.0 if name == "balance" else math.inf)
    if not any(weights.get(t, 0) > 0 for t in WEIGHTED):
        raise SelectionError(
            f"selection spec {text!r}: give at least one of {', '.join(WEIGHTED)} a weight above 0"
        )
    if weights.get("coverage", 0) > 0 and (weights.get("diversity", 0) > 0 or weights.get("typicality", 0) > 0
                                          or weights.get("balance", 0) > 0 or threshold is not None):
        raise SelectionError(
            "selection spec: coverage (MaxHerding) combines with uncertainty only; "
            "drop diversity, typicality, balance and threshold, or use diversity instead of coverage"
        )
    return SelectionSpec(MappingProxyType({k: v for k, v in weights.items() if v > 0}), score, threshold)


def spec_score(method: str, score: str | None = None) -> str | None:
    """The score a term spec names (``uncertainty=entropy:mean@1``), else None; refuses a different ``score``."""
    if not is_spec(method):
        return None
    named = parse_spec(method).score
    if named and score and score != named:
        raise SelectionError(
            f"the selection names score {named!r} (uncertainty={named}@...) but --score is {score!r}; drop one"
        )
    return named


def spec_selector(text: str) -> Selector:
    """A :class:`Selector` for a term spec, checked now, with the inputs it needs."""
    spec = parse_spec(text)

    def run(k: int, inputs: SelectionInputs, pool: np.ndarray, **options: Any) -> Selection:
        return run_spec(spec, k, inputs, pool, **options)

    return Selector(spec.text(), spec.needs,
                    MappingProxyType({"hot_size": None, "threads": DEFAULT_THREADS, "sigma": "auto"}),
                    run, "weighted terms (alloop.select.compose)")


def run_spec(
    spec: SelectionSpec, k: int, inputs: SelectionInputs, pool: np.ndarray, *, seed: int = 0,
    device: str = "cpu", hot_size: int | None = None, threads: int = DEFAULT_THREADS, sigma: float | str = "auto",
) -> Selection:
    """Run a parsed spec: CORAL's engine, or MaxHerding's when the spec has ``coverage``."""
    for name in spec.needs:
        if getattr(inputs, name) is None:
            raise SelectionError(f"selection spec {spec.text()!r} needs {MISSING_HINTS[name]}")
    w = spec.weights
    options: dict[str, Any] = {"spec": spec.text(), **({"score_named": spec.score} if spec.score else {})}
    if "coverage" in w:
        u = w.get("uncertainty", 0.0) / (w["coverage"] + w.get("uncertainty", 0.0))
        picks, gains, info = max_herding(inputs.embeddings, inputs.labeled, k, sigma=sigma, seed=seed,
                                         scores=inputs.scores, uncertainty=u)
        options.update(info)
        return make_selection("compose", picks, None, inputs.scores, options, objective=gains,
                              terms={"coverage": gains})
    check_engine_options("compose", hot_size, threads)
    n = len(inputs.labeled)
    wd, wu, wt = (w.get(t, 0.0) for t in ("diversity", "uncertainty", "typicality"))
    total = wd + wu + wt
    alpha = wd / total
    tau = wt / (wu + wt) if wu + wt > 0 else 0.0
    lam = w.get("balance", 0.0)
    raw = np.zeros(n, np.float32) if inputs.scores is None else np.asarray(inputs.scores)
    emb = inputs.embeddings if inputs.embeddings is not None else np.zeros((n, 1), np.float32)
    typical = typicality_of(np.asarray(emb), threads=threads) if wt > 0 else None
    trace: dict[str, np.ndarray] = {}
    picks, dists, objs, info = coral_greedy(
        emb, raw, k, inputs.labeled, alpha=alpha, score_threshold=spec.threshold, balance=lam,
        predicted_classes=inputs.predicted_classes, device=device, hot_size=hot_size, threads=threads,
        typicality=tau, typical=typical, trace=trace,
    )
    options.update(info, alpha=alpha, typicality=tau, balance=lam, threads=threads)
    terms = _contributions(picks, dists, trace, raw, typical, pool, alpha, tau, lam, wd, wu, wt)
    return make_selection("compose", picks, dists if wd > 0 else None,
                          inputs.scores, options, objective=objs, terms=terms)


def _contributions(picks: np.ndarray, dists: np.ndarray, trace: dict[str, np.ndarray], raw: np.ndarray,
                   typical: np.ndarray | None, pool: np.ndarray, alpha: float, tau: float, lam: float,
                   wd: float, wu: float, wt: float) -> dict[str, np.ndarray]:
    """Each term's share of each pick's objective (they add up to it, up to float32 rounding)."""
    terms: dict[str, np.ndarray] = {}
    if wd > 0:
        dmax = trace["dmax"]
        finite = np.isfinite(dmax) & (dmax > 0)
        dn = np.where(np.isinf(dmax), 1.0, 0.0)
        dn[finite] = dists[finite] / dmax[finite]
        terms["diversity"] = (1 - lam) * alpha * dn
    if wu > 0:
        s, _, _ = normalised_scores(raw, pool)
        terms["uncertainty"] = (1 - lam) * (1 - alpha) * (1 - tau) * s[picks].astype(np.float64)
    if wt > 0 and typical is not None:
        t, _, _ = normalised_scores(typical, pool)
        terms["typicality"] = (1 - lam) * (1 - alpha) * tau * t[picks].astype(np.float64)
    if lam > 0:
        terms["balance"] = lam * trace["balance"]
    return terms


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _number(name: str, value: str, *, lo: float = 0.0, hi: float = math.inf) -> float:
    try:
        v = float(value)
    except ValueError:
        raise SelectionError(f"selection spec: {name}={value!r} must be a number") from None
    if not math.isfinite(v) or v < lo or v > hi:
        bounds = "a finite number" if lo == -math.inf else f"a number in [{lo:g}, {hi:g}]"
        raise SelectionError(f"selection spec: {name}={value!r} must be {bounds}")
    return v


__all__ = ["TERMS", "SelectionSpec", "is_spec", "parse_spec", "run_spec", "spec_score", "spec_selector"]
