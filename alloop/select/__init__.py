"""Selection strategies behind one call: ``select(method, k, inputs)`` -> :class:`Selection`.

Each strategy is registered with the inputs it needs and the options it accepts, so the loop checks
and calls them all the same way. ``k`` is always the number of NEW picks (the batch size).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from alloop.errors import SelectionError
from alloop.select.auto import (
    DEFAULT_LATER,
    DEFAULT_LOW_BUDGET,
    DEFAULT_MAX_SHARE,
    DEFAULT_UNCERTAINTY,
    reads_boxes,
    run_auto,
)
from alloop.select.base import (
    MISSING_HINTS,
    PoolBoxes,
    Selection,
    SelectionInputs,
    SelectionWarning,
    Selector,
    check_inputs,
    check_k,
    torch_device,
)
from alloop.select.compose import is_spec, parse_spec, spec_selector
from alloop.select.coral import DEFAULT_ALPHA, coral_greedy, run_coral
from alloop.select.coreset import DEFAULT_THREADS, k_center_greedy, run_coreset
from alloop.select.maxherding import max_herding, run_maxherding
from alloop.select.ppal import (
    DEFAULT_BOX_THRESHOLD,
    DEFAULT_ITERATIONS,
    DEFAULT_MAX_BOXES,
    DEFAULT_RATIO,
    run_ppal,
)
from alloop.select.random import random_sample, run_random
from alloop.select.typiclust import run_typiclust, typiclust

__all__ = [
    "PoolBoxes",
    "Selection",
    "SelectionInputs",
    "SelectionWarning",
    "Selector",
    "available_methods",
    "coral_greedy",
    "inputs_read",
    "is_spec",
    "k_center_greedy",
    "max_herding",
    "parse_spec",
    "random_sample",
    "register",
    "select",
    "selector_for",
    "selectors",
    "typiclust",
]

_REGISTRY: dict[str, Selector] = {}


def register(selector: Selector) -> None:
    """Add a strategy to the registry (built-ins below; a plugin may add more)."""
    unknown = [n for n in selector.needs if n not in MISSING_HINTS]
    if unknown:
        raise SelectionError(
            f"selector {selector.name!r} needs unknown inputs {unknown}; known: {sorted(MISSING_HINTS)}"
        )
    _REGISTRY[selector.name] = selector


register(Selector("random", (), MappingProxyType({}), run_random, "uniform over the unlabeled pool, seeded"))
register(
    Selector(
        "coreset",
        ("embeddings",),
        MappingProxyType({"hot_size": None, "threads": DEFAULT_THREADS}),
        run_coreset,
        "greedy k-center on embeddings (Sener & Savarese 2018), exact",
    )
)
register(
    Selector(
        "coral",
        ("embeddings", "scores"),
        MappingProxyType(
            {
                "alpha": DEFAULT_ALPHA,
                "score_threshold": None,
                "balance": 0.0,
                "hot_size": None,
                "threads": DEFAULT_THREADS,
                "typicality": 0.0,
            }
        ),
        run_coral,
        "greedy alpha * normalised distance + (1 - alpha) * normalised uncertainty (and typicality)",
    )
)
register(
    Selector(
        "typiclust",
        ("embeddings",),
        MappingProxyType({"uncertainty": 0.0, "threads": DEFAULT_THREADS}),
        run_typiclust,
        "most typical image of the least-covered k-means clusters (Hacohen et al. 2022); "
        "uncertainty > 0 weighs the score in",
        wants=("scores",),
    )
)
register(
    Selector(
        "maxherding",
        ("embeddings",),
        MappingProxyType({"sigma": "auto", "uncertainty": 0.0}),
        run_maxherding,
        "greedy Gaussian-kernel coverage of the pool (Bae et al. 2024; ProbCover without a radius); "
        "uncertainty > 0 weighs uncertain images up",
        wants=("scores",),
    )
)
register(
    Selector(
        "ppal",
        ("scores", "boxes"),
        MappingProxyType({"ratio": DEFAULT_RATIO, "box_threshold": DEFAULT_BOX_THRESHOLD,
                          "max_boxes": DEFAULT_MAX_BOXES, "iterations": DEFAULT_ITERATIONS}),
        run_ppal,
        "the ratio*k most uncertain images, then k-medoids under category-conditioned box similarity "
        "(PPAL, Yang et al. 2024); pair it with its score: ppal@dcus",
    )
)


register(
    Selector(
        "auto",
        ("embeddings",),
        MappingProxyType({"low_budget": DEFAULT_LOW_BUDGET, "uncertainty": DEFAULT_UNCERTAINTY,
                          "alpha": DEFAULT_ALPHA, "threads": DEFAULT_THREADS, "later": DEFAULT_LATER,
                          "max_share": DEFAULT_MAX_SHARE}),
        run_auto,
        "by regime: typiclust at the cold start, maxherding + uncertainty below low_budget labeled images, "
        "then coral (or ppal: later = \"ppal\"); max_share caps any k-means region's share of the labels",
        wants=("scores",),
    )
)


def inputs_read(method: str, options: Mapping[str, Any] | None = None, labeled: int | None = None) -> tuple[str, ...]:
    """Every input ``method`` with ``options`` reads: its selector's, plus the box features ``auto`` reads
    when its later strategy is ppal and ``labeled`` (labeled or queued images; None: unknown) reaches its
    low_budget. The loop records box features only for a selection that reads them."""
    uses = selector_for(method).uses
    if method == "auto" and reads_boxes(options or {}, labeled) and "boxes" not in uses:
        uses += ("boxes",)
    return uses


def available_methods() -> dict[str, tuple[str, ...]]:
    """Method name -> the SelectionInputs fields it needs."""
    return {name: s.needs for name, s in sorted(_REGISTRY.items())}


def selectors() -> Mapping[str, Selector]:
    """The registered strategies (read-only), e.g. for ``--help`` texts and option defaults."""
    return MappingProxyType(_REGISTRY)


def selector_for(method: str) -> Selector:
    """The strategy a method names: a registered name, or a term spec ``"diversity=1, uncertainty=0.5"``."""
    if is_spec(method):
        return spec_selector(method)
    selector = _REGISTRY.get(method)
    if selector is None:
        raise SelectionError(
            f"unknown selection method {method!r}; known: {', '.join(sorted(_REGISTRY))}, "
            "or weighted terms such as \"diversity=1, uncertainty=0.5\" (alloop.select.compose)"
        )
    return selector


def select(
    method: str, k: int, inputs: SelectionInputs, *, seed: int = 0, device: str = "cpu", **options: Any
) -> Selection:
    """Run strategy ``method`` (a name or a term spec) for ``k`` new picks; checks inputs, options and k
    first (SelectionError).

    k above the unlabeled count warns (:class:`SelectionWarning`) and returns the whole pool.
    """
    selector = selector_for(method)
    unknown = sorted(set(options) - set(selector.defaults))
    if unknown:
        known = ", ".join(sorted(selector.defaults)) or "none"
        raise SelectionError(f"{method}: unknown option(s) {', '.join(unknown)}; known: {known}")
    missing = [name for name in selector.needs if getattr(inputs, name) is None]
    if missing:
        raise SelectionError(f"{method} needs {MISSING_HINTS[missing[0]]}")
    torch_device(device)
    pool = check_inputs(inputs, selector.needs)
    k = check_k(k, len(pool), method)
    resolved = {**selector.defaults, **options}
    return selector.run(k, inputs, pool, seed=seed, device=device, **resolved)
