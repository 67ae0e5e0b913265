"""``auto``: pick the strategy by regime, so a user does not have to know the literature.

- **Cold start** (no model yet, so no uncertainty scores: ``alloop init``): TypiClust. With nothing
  labeled the images worth labeling first are the typical ones (Hacohen et al., ICML 2022); coreset's
  farthest-point rule buys outliers instead (rare scenes, fewer boxes per label), which is what
  benchmarks/RESULTS.md measured for it.
- **Low budget** (fewer than ``low_budget`` images labeled): CORAL with the typicality term at
  ``typicality`` (0.5): uncertainty is already informative (issue 20's miss-aware score sees the
  scenes the model is blind to), but outliers must not win only because they are far.
- **Later rounds**: CORAL on diversity and uncertainty alone (typicality 0), the regime where
  uncertainty sampling is known to pay (the "high budget" side of Hacohen et al.).

The switch points and weights, and why, are in benchmarks/RESULTS.md ("Selection strategies"). The
report shows which regime chose each batch (``regime`` in the batch options).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alloop.errors import SelectionError
from alloop.select.base import Selection, SelectionInputs, make_selection
from alloop.select.coral import DEFAULT_ALPHA, run_coral
from alloop.select.coreset import DEFAULT_THREADS
from alloop.select.typiclust import run_typiclust

DEFAULT_LOW_BUDGET = 100
DEFAULT_TYPICALITY = 0.5


def regime(labeled: int, has_scores: bool, low_budget: int = DEFAULT_LOW_BUDGET) -> str:
    """"cold-start" without scores, "low-budget" below ``low_budget`` labeled images, else "uncertainty"."""
    if not has_scores:
        return "cold-start"
    return "low-budget" if labeled < low_budget else "uncertainty"


def run_auto(
    k: int,
    inputs: SelectionInputs,
    pool: np.ndarray,
    *,
    seed: int = 0,
    device: str = "cpu",
    low_budget: int = DEFAULT_LOW_BUDGET,
    typicality: float = DEFAULT_TYPICALITY,
    alpha: float = DEFAULT_ALPHA,
    threads: int = DEFAULT_THREADS,
) -> Selection:
    """The ``auto`` selector: TypiClust at the cold start, then CORAL (+ typicality at low budgets)."""
    if isinstance(low_budget, bool) or not isinstance(low_budget, (int, np.integer)) or low_budget < 0:
        raise SelectionError(f"auto option low_budget must be a whole number of images >= 0, got {low_budget!r}")
    n_labeled = int(np.asarray(inputs.labeled).sum())
    which = regime(n_labeled, inputs.scores is not None, int(low_budget))
    if which == "cold-start":
        inner = run_typiclust(k, inputs, pool, seed=seed, device=device)
    else:
        tau = typicality if which == "low-budget" else 0.0
        inner = run_coral(k, inputs, pool, seed=seed, device=device, alpha=alpha, typicality=tau, threads=threads)
    options: dict[str, Any] = {"regime": which, "strategy": inner.method, "low_budget": int(low_budget),
                               **dict(inner.options)}
    return make_selection("auto", inner.indices, None if which == "cold-start" else inner.distances,
                          inputs.scores, options, objective=inner.objective)


__all__ = ["DEFAULT_LOW_BUDGET", "DEFAULT_TYPICALITY", "regime", "run_auto"]
