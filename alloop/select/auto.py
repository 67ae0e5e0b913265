"""``auto``: pick the strategy by regime, so a user does not have to know the literature.

- **Cold start** (no model yet, so no uncertainty scores: ``alloop init``): TypiClust. With nothing
  labeled the images worth labeling first are the typical ones (Hacohen et al., ICML 2022); coreset's
  farthest-point rule buys outliers instead (rare scenes, fewer boxes per label), which is what
  benchmarks/RESULTS.md measured for it.
- **Low budget** (fewer than ``low_budget`` images labeled): MaxHerding with ``uncertainty`` (0.5):
  greedy kernel coverage of the pool *relative to what is labeled*, each image weighted by its
  uncertainty. A scene type no labeled image covers is bought even where the model is confidently
  wrong about it. CORAL does not do that: on a family whose first model never saw a dark cluttered
  scene (24% of the pool) CORAL put 4% of its first batch there, with either score and with or
  without typicality, because a weak model is *least* uncertain where it sees nothing and the
  scene's images sit close together in embedding space; MaxHerding put 28% there
  (benchmarks/RESULTS.md, "Selection strategies").
- **Later rounds**: CORAL on diversity and uncertainty, the regime where uncertainty sampling is
  known to pay (the "high budget" side of Hacohen et al.). The switch at 100 images was measured
  against never switching (``low_budget = 1000``) from 100 to 150 labels on two families, 2 seeds:
  no difference beyond noise either way (AUC 0.679 vs 0.677 and 0.507 vs 0.508), so it stays where
  it was, measured rather than justified by a gain (benchmarks/RESULTS.md, "To 150 labels").

``later = "ppal"`` runs PPAL (:mod:`alloop.select.ppal`) instead of CORAL in the later rounds: on the same two
families it ended 0.010 and 0.024 mAP@0.5 higher at 150 labels with equal AUC (2 seeds, one round of difference),
a lead not yet enough to make it the default, which would also make those steps' predictions files ~15x bigger
(benchmarks/RESULTS.md, "Detector features and PPAL").

``max_share`` (default 0: off) caps any k-means region of the pool at that many times its pool share of the labels
after the cold start (:mod:`alloop.select.share`). On the orchard (670 images, 2 seeds) ``auto`` put 27% of its
labels into a dense far-away scene (6% of the pool) it cannot learn at 320x240; ``max_share = 2`` held that to 16%
and bought the same mAP@0.5 with 22% fewer boxes (14% fewer on the blind cultivars, equal AUC), but beat random in
images no more than ``auto`` does, so it is an option (benchmarks/RESULTS.md, "A pool of MinneApple's size").

Against random sampling with 670 images (25 -> 150 labels, detector features after round 1): ahead on every
seed at 100 and 150 labels where the first model never saw a scene (5 seeds: +0.039 mAP@0.5 at 150 labels,
random's final with 85% of its labels), random's equal on the plain orchard (4 seeds); benchmarks/RESULTS.md,
"The default against random at 670 images". The switch points and weights, and why, are in benchmarks/RESULTS.md
("Selection strategies"). The report shows which regime chose each batch (``regime`` in the batch options).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np

from alloop.errors import SelectionError
from alloop.select.base import MISSING_HINTS, Selection, SelectionInputs, make_selection
from alloop.select.coral import DEFAULT_ALPHA, run_coral
from alloop.select.coreset import DEFAULT_THREADS
from alloop.select.maxherding import run_maxherding
from alloop.select.ppal import run_ppal
from alloop.select.share import capped, check_max_share, pool_regions
from alloop.select.typiclust import run_typiclust

DEFAULT_LOW_BUDGET = 100
DEFAULT_UNCERTAINTY = 0.5
LATER = ("coral", "ppal")  # the strategies auto may run from low_budget labeled images on
DEFAULT_LATER = "coral"
DEFAULT_MAX_SHARE = 0.0  # no cap (see alloop.select.share)


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
    uncertainty: float = DEFAULT_UNCERTAINTY,
    alpha: float = DEFAULT_ALPHA,
    threads: int = DEFAULT_THREADS,
    later: str = DEFAULT_LATER,
    max_share: float = DEFAULT_MAX_SHARE,
) -> Selection:
    """The ``auto`` selector: TypiClust at the cold start, MaxHerding + uncertainty at low budgets, then
    ``later`` (CORAL, or PPAL on the detector's box features)."""
    if isinstance(low_budget, bool) or not isinstance(low_budget, (int, np.integer)) or low_budget < 0:
        raise SelectionError(f"auto option low_budget must be a whole number of images >= 0, got {low_budget!r}")
    if later not in LATER:
        raise SelectionError(f"auto option later must be one of {', '.join(LATER)}, got {later!r}")
    cap = check_max_share(max_share)
    n_labeled = int(np.asarray(inputs.labeled).sum())
    which = regime(n_labeled, inputs.scores is not None, int(low_budget))
    if which == "cold-start":
        inner = run_typiclust(k, inputs, pool, seed=seed, device=device, threads=threads)
        capping: dict[str, Any] = {}
    else:
        if which == "low-budget":
            strategy = partial(run_maxherding, seed=seed, device=device, uncertainty=uncertainty)
        elif later == "ppal":
            if inputs.boxes is None:
                raise SelectionError(f"auto with later = \"ppal\" needs {MISSING_HINTS['boxes']}")
            strategy = partial(run_ppal, seed=seed, device=device)
        else:
            strategy = partial(run_coral, seed=seed, device=device, alpha=alpha, threads=threads)
        if cap > 0:
            assert inputs.embeddings is not None
            inner, capping = capped(strategy, k, inputs, pool_regions(inputs.embeddings, seed), cap)
        else:
            inner, capping = strategy(k, inputs, pool), {}
    options: dict[str, Any] = {"regime": which, "strategy": inner.method, "low_budget": int(low_budget),
                               **dict(inner.options), **capping}
    return make_selection("auto", inner.indices, inner.distances if which == "uncertainty" else None,
                          inputs.scores, options, objective=inner.objective)


def reads_boxes(options: Mapping[str, Any], labeled: int | None = None) -> bool:
    """Whether ``auto`` with ``options`` reads the detector's box features: its later strategy is ppal and,
    when the number of ``labeled`` (or queued) images is known, the selection is in that regime."""
    if options.get("later", DEFAULT_LATER) != "ppal":
        return False
    return labeled is None or labeled >= int(options.get("low_budget", DEFAULT_LOW_BUDGET))


__all__ = ["DEFAULT_LATER", "DEFAULT_LOW_BUDGET", "DEFAULT_MAX_SHARE", "DEFAULT_UNCERTAINTY", "LATER", "reads_boxes", "regime", "run_auto"]
