"""Selection values and checks shared by every strategy: arrays in, a :class:`Selection` out."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from alloop.device import torch_device  # noqa: F401  (strategies import it from here)
from alloop.errors import SelectionError

# Rows checked for NaN/inf at a time: bounds the temporary bool array to ~8 MB at D = 128.
_CHECK_ROWS = 65_536


class SelectionWarning(UserWarning):
    """A selection ran but returned less, or other, than asked (k > pool, too few above a threshold)."""


@dataclass(frozen=True)
class PoolBoxes:
    """Each image's predicted boxes, flat: image i's boxes are rows ``offsets[i]:offsets[i+1]``."""

    offsets: np.ndarray  # (N+1,) int64, non-decreasing, from 0
    labels: np.ndarray  # (B,) int64 class index
    scores: np.ndarray  # (B,) float confidence in [0, 1]
    features: np.ndarray  # (B, D) float box descriptors (the detector's; cosine similarity)

    def check(self, n: int) -> None:
        """SelectionError unless this describes ``n`` images consistently."""
        off = np.asarray(self.offsets)
        if off.shape != (n + 1,) or off[0] != 0 or np.any(np.diff(off) < 0):
            raise SelectionError(f"boxes.offsets must be ({n + 1},) non-decreasing from 0, got shape {off.shape}")
        b = int(off[-1])
        feats = np.asarray(self.features)
        if len(self.labels) != b or len(self.scores) != b or feats.ndim != 2 or len(feats) != b:
            raise SelectionError(
                f"boxes must hold {b} labels, scores and (B, D) features as the offsets say, got "
                f"{len(self.labels)}, {len(self.scores)} and {feats.shape}"
            )


@dataclass(frozen=True)
class SelectionInputs:
    """Everything a strategy may use, one row per image of the project (N rows)."""

    embeddings: np.ndarray | None  # (N, D) float32, L2-normalised rows (distances: Euclidean)
    labeled: np.ndarray  # (N,) bool: labeled or queued for labeling -> centers, never picked
    scores: np.ndarray | None = None  # (N,) uncertainty, higher = more uncertain (any range)
    predicted_classes: np.ndarray | None = None  # (N, C) counts of confident predicted boxes per class
    boxes: PoolBoxes | None = None  # each image's predicted boxes with the detector's box descriptors


@dataclass(frozen=True)
class Selection:
    """The picks in order, with the distance and score that chose each, for the report."""

    indices: np.ndarray  # (k,) int64 row positions into the N inputs, in pick order
    distances: (
        np.ndarray
    )  # (k,) float32 min distance to labeled+selected at the pick (nan: unused, inf: no center yet)
    scores: np.ndarray  # (k,) float32 score of the pick (nan when no scores)
    method: str
    options: Mapping[str, Any] = field(default_factory=dict)  # resolved options, for the report
    objective: np.ndarray | None = None  # (k,) float32 the combined value that won each pick (coral)
    # term name -> (k,) each term's share of the pick's objective (a term spec; they add up to it)
    terms: Mapping[str, np.ndarray] | None = None


@dataclass(frozen=True)
class Selector:
    """A named strategy: what it needs, its options with defaults, and the function that runs it."""

    name: str
    needs: tuple[str, ...]  # SelectionInputs fields that must not be None
    defaults: Mapping[str, Any]  # every accepted option with its default
    run: Callable[..., Selection]  # run(k, inputs, pool, *, seed, device, **options) -> Selection
    summary: str = ""
    wants: tuple[str, ...] = ()  # SelectionInputs fields used when present (the loop provides them)

    @property
    def uses(self) -> tuple[str, ...]:
        """Every input the strategy reads: what it needs and what it uses when present."""
        return self.needs + tuple(w for w in self.wants if w not in self.needs)


# What to tell the user when an input a strategy needs is missing.
MISSING_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "embeddings": "embeddings; run `alloop embed` first",
        "scores": "uncertainty scores; run `alloop step` once with a trained model "
        "or choose --method coreset",
        "predicted_classes": "predicted classes per image; run `alloop step` once with a trained model "
        "or leave the balance option at 0",
        "boxes": "predicted boxes with box features: the pool's predictions hold none; a step with this method "
        "records them (torchvision trainer), or set box_features = true under [trainer.options]",
    }
)


def make_selection(
    method: str,
    indices: np.ndarray,
    distances: np.ndarray | None,
    scores: np.ndarray | None,
    options: Mapping[str, Any],
    objective: np.ndarray | None = None,
    terms: Mapping[str, np.ndarray] | None = None,
) -> Selection:
    """Pack picks into a frozen :class:`Selection`; ``scores`` are the pool's N scores (or None)."""
    indices = np.asarray(indices, dtype=np.int64)
    k = len(indices)
    dist = np.full(k, np.nan, np.float32) if distances is None else np.asarray(distances, np.float32)
    picked = np.full(k, np.nan, np.float32) if scores is None else np.asarray(scores, np.float32)[indices]
    obj = None if objective is None else np.asarray(objective, np.float32)
    parts = None if terms is None else {name: np.asarray(v, np.float32) for name, v in terms.items()}
    for a in (indices, dist, picked, obj, *(parts or {}).values()):
        if a is not None:
            a.setflags(write=False)
    return Selection(indices, dist, picked, method, MappingProxyType(dict(options)), obj,
                     None if parts is None else MappingProxyType(parts))


def truncate(selection: Selection, m: int, **extra_options: Any) -> Selection:
    """The first ``m`` picks of ``selection`` (a greedy order's prefix is itself a valid batch)."""
    obj = None if selection.objective is None else selection.objective[:m]
    terms = None if selection.terms is None else MappingProxyType({n: v[:m] for n, v in selection.terms.items()})
    return Selection(selection.indices[:m], selection.distances[:m], selection.scores[:m], selection.method,
                     MappingProxyType({**dict(selection.options), **extra_options}), obj, terms)


def check_inputs(inputs: SelectionInputs, needs: tuple[str, ...]) -> np.ndarray:
    """Validate shapes and values; return the pool, the (M,) int64 positions of unlabeled rows."""
    labeled = np.asarray(inputs.labeled)
    if labeled.ndim != 1 or labeled.dtype != np.bool_:
        raise SelectionError(
            "labeled must be a 1-D bool array (one flag per image), "
            f"got dtype {labeled.dtype} shape {labeled.shape}"
        )
    n = len(labeled)
    if inputs.embeddings is not None:
        emb = inputs.embeddings
        if emb.ndim != 2 or emb.shape[0] != n or emb.shape[1] == 0:
            raise SelectionError(f"embeddings must be ({n}, D) to match {n} labeled flags, got {emb.shape}")
        if not np.issubdtype(emb.dtype, np.floating):
            raise SelectionError(f"embeddings must be floating point, got dtype {emb.dtype}")
        if "embeddings" in needs:
            bad = _first_nonfinite_row(emb)
            if bad is not None:
                raise SelectionError(
                    f"embeddings row {bad} contains NaN or inf; re-run `alloop embed` for that image"
                )
    if inputs.scores is not None:
        scores = np.asarray(inputs.scores)
        if scores.shape != (n,):
            raise SelectionError(f"scores must be ({n},) to match {n} labeled flags, got {scores.shape}")
        if not np.issubdtype(scores.dtype, np.number):
            raise SelectionError(f"scores must be numeric, got dtype {scores.dtype}")
    if inputs.predicted_classes is not None:
        pc = np.asarray(inputs.predicted_classes)
        if pc.ndim != 2 or pc.shape[0] != n or pc.shape[1] == 0:
            raise SelectionError(f"predicted_classes must be ({n}, C) counts, got {pc.shape}")
        if not np.all(np.isfinite(pc)) or np.any(pc < 0):
            raise SelectionError("predicted_classes must be finite, non-negative box counts per class")
    if inputs.boxes is not None:
        inputs.boxes.check(n)
    for name in needs:
        if getattr(inputs, name) is None:
            raise SelectionError(f"missing input: {MISSING_HINTS.get(name, name)}")
    pool = np.flatnonzero(~labeled).astype(np.int64)
    if len(pool) == 0:
        raise SelectionError(
            f"nothing to select: all {n} images are already labeled or queued; add images to the pool"
        )
    if inputs.scores is not None and "scores" in needs:
        bad = np.flatnonzero(~np.isfinite(np.asarray(inputs.scores, dtype=np.float64)[pool]))
        if len(bad):
            raise SelectionError(
                f"scores of unlabeled image row {pool[bad[0]]} is NaN or inf ({len(bad)} such rows); "
                "re-run scoring for those images"
            )
    return pool


def unit_weight(method: str, name: str, value: Any) -> float:
    """A strategy weight option: a number in [0, 1] (not a bool), else a one-line SelectionError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SelectionError(f"{method} option {name} must be a number in [0, 1], got {value!r}") from None
    if isinstance(value, bool):
        raise SelectionError(f"{method} option {name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= v <= 1.0:
        raise SelectionError(f"{method} option {name} must be in [0, 1], got {v}")
    return v


def check_k(k: int, pool_size: int, method: str) -> int:
    """k must be a positive int; more than the pool warns and returns the pool size."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise SelectionError(f"k (the number of new picks) must be an integer, got {k!r}")
    if k <= 0:
        raise SelectionError(f"k (the number of new picks) must be at least 1, got {k}")
    if k > pool_size:
        warnings.warn(
            f"{method}: asked for {k} new picks but only {pool_size} unlabeled images remain; "
            f"returning all {pool_size}",
            SelectionWarning,
            stacklevel=3,
        )
        return pool_size
    return int(k)


def _first_nonfinite_row(x: np.ndarray) -> int | None:
    """Row of the first NaN/inf, checked in chunks so the temporary stays small."""
    for start in range(0, len(x), _CHECK_ROWS):
        ok = np.isfinite(x[start : start + _CHECK_ROWS]).all(axis=1)
        if not ok.all():
            return start + int(np.argmin(ok))
    return None
