"""From per-box values to one value per image: max, mean, sum, top-k mean — shared by every box scorer.

- ``max``: the most uncertain box (Lightly's reduction: one ambiguous object makes an image worth labeling).
- ``mean``: the average box (Lightly's ``objectness_least_confidence`` uses it).
- ``topkN`` (e.g. ``topk3``): mean of the N largest values; an image with fewer than N boxes takes the
  mean of the boxes it has. Between max (N = 1) and mean (N large).
- ``sum``: total uncertainty, so images with many uncertain boxes rank first. A sum is unbounded, so it
  is divided by the largest sum in the pool: values lie in [0, 1] and are relative to this pool (like
  ``object_frequency``); the ranking is the ranking of the raw sums.

An image with no detections scores :data:`EMPTY_IMAGE_SCORE` = 0.0 under every aggregation, as in
Lightly: the detector saw nothing it is unsure about. (Objects it missed entirely are invisible to any
uncertainty score; the diversity part of the selection is what covers them.)

Non-finite values are cleaned as baal's heuristics do: they rank first (here 1.0, the top of the
scale, with a warning), since a prediction that broke is worth a look; everything is clipped to [0, 1].
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import numpy as np

from alloop.errors import ConfigError
from alloop.score.segments import reduce_images

EMPTY_IMAGE_SCORE = 0.0
AGGREGATIONS = ("max", "mean", "sum", "topkN")

_TOPK = re.compile(r"topk([1-9][0-9]*)")


def check_aggregation(how: str) -> str:
    """Return ``how`` if it names an aggregation, else raise ConfigError listing the valid ones."""
    if how in ("max", "mean", "sum") or _TOPK.fullmatch(how):
        return how
    raise ConfigError(
        f"unknown aggregation {how!r}; use max, mean, sum or topkN "
        "(mean of the N largest box values, e.g. topk3)"
    )


def clean_unit(values: np.ndarray, *, what: str) -> np.ndarray:
    """Values as float32 in [0, 1]: non-finite → 1.0 (ranked first, as in baal), with a warning; clipped."""
    v = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(v)
    if bad.any():
        message = f"{what}: {int(bad.sum())} non-finite value(s) set to 1.0"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        v = np.where(bad, 1.0, v)
    return np.clip(v, 0.0, 1.0).astype(np.float32)


def reduce_boxes(values: np.ndarray, how: str) -> float:
    """One image: max / mean / sum / topkN of its box values; no boxes → EMPTY_IMAGE_SCORE. Sum is raw."""
    check_aggregation(how)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return EMPTY_IMAGE_SCORE
    if how == "max":
        return float(v.max())
    if how == "mean":
        return float(v.mean())
    if how == "sum":
        return float(v.sum())
    k = int(_TOPK.fullmatch(how).group(1))  # type: ignore[union-attr]  # checked above
    return float(np.sort(v)[-k:].mean())


def aggregate(per_image: Sequence[np.ndarray], how: str) -> np.ndarray:
    """The pool: (n_images,) float32 in [0, 1]; ``sum`` is divided by the pool's largest sum."""
    flat = [np.asarray(v).reshape(-1) for v in per_image]
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in flat], dtype=np.int64)]).astype(np.int64)
    values = np.concatenate(flat) if flat else np.zeros(0)
    return aggregate_flat(values, offsets, how)


def _row_reduction(how: str):
    if how == "max":
        return lambda m: m.max(axis=1)
    if how == "mean":
        return lambda m: m.mean(axis=1)
    if how == "sum":
        return lambda m: m.sum(axis=1)
    k = int(_TOPK.fullmatch(how).group(1))  # type: ignore[union-attr]  # checked by the caller
    return lambda m: np.sort(m, axis=1)[:, -k:].mean(axis=1)


def aggregate_flat(values: np.ndarray, offsets: np.ndarray, how: str) -> np.ndarray:
    """:func:`aggregate` on flat box values, image i's in ``values[offsets[i]:offsets[i+1]]`` (no loop
    over images; each image's value equals :func:`reduce_boxes` on its boxes)."""
    check_aggregation(how)
    cleaned = clean_unit(values, what=f"box values ({how})").astype(np.float64)
    out = reduce_images(cleaned, offsets, _row_reduction(how), empty=EMPTY_IMAGE_SCORE)
    if how == "sum" and out.size and out.max() > 0:
        out = out / out.max()
    return clean_unit(out, what=f"image scores ({how})")


__all__ = [
    "AGGREGATIONS",
    "EMPTY_IMAGE_SCORE",
    "aggregate",
    "aggregate_flat",
    "check_aggregation",
    "clean_unit",
    "reduce_boxes",
]
