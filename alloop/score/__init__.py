"""Detection uncertainty: per-box scores, their aggregation to one image score, and image-level scores.

A score spec names what to compute:

- ``NAME:AGG`` for a box score — ``least_confidence``, ``margin``, ``entropy``,
  ``objectness_least_confidence`` — reduced per image by ``max``, ``mean``, ``sum`` or ``topkN``
  (mean of the N largest, e.g. ``margin:topk3``); see :mod:`alloop.score.aggregate`.
- ``NAME`` alone for an image score — ``detection_entropy`` and ``proposal_entropy`` (uncertainty over
  the detector's candidate regions, so images where it misses everything are not "certain"; see
  :mod:`alloop.score.proposals`), ``object_frequency`` (Lightly), ``tta_consistency`` (horizontal-flip
  consistency; the loop must also predict on flipped images, see :func:`needs_flipped`), ``dcus``
  (PPAL's difficulty-calibrated uncertainty: boxes of classes the model finds hard weigh more; see
  :mod:`alloop.score.difficulty`).

Every score is float32 in [0, 1] per image, higher = more worth labeling, stored under its spec per
iteration so the report and the ``coral`` selector can pick one.

The default, :data:`DEFAULT_SCORE` = ``detection_entropy``: the mean of ``entropy:mean`` over the kept
boxes and ``proposal_entropy`` over the top candidate regions. ``entropy:mean`` alone, the default
until issue 20, scores an image on which the model keeps no box 0 ("certain"), so a scene the first
model is blind to ranks last; measured on two synthetic families, ``detection_entropy`` ranks missed
objects as well as ``entropy:mean`` where the model sees the hard scene and far better where it is
blind (figures in :mod:`alloop.score.proposals`). Why ``entropy:mean`` for the kept-box part: entropy uses the whole class distribution
(background included, so it works for a one-class detector); ``mean`` over the image's boxes rather
than Lightly's ``max`` because alloop keeps boxes down to score 0.05 for scoring, and with a dozen or
more such boxes almost every image has one near p = 0.5, so ``max`` saturates. Measured on the demo's
pool after 3 rounds (17 boxes per image): ``entropy:max`` p10/p50/p90 = 0.74/0.99/1.00, while
``entropy:mean`` = 0.29/0.56/0.73 — only the mean still ranks the pool. ``entropy:max`` remains
available (and suits detectors that keep few boxes, e.g. TAO at a higher threshold). For a one-class
detector least confidence, margin and entropy rank boxes identically, so the choice of box score only
matters with several classes, where entropy is the one that looks at every class.

A new scorer is one function registered with :func:`box_score` or :func:`image_score`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from alloop.boxes import Detections
from alloop.errors import ConfigError
from alloop.predictions import PackedDetections

# Imported for their registrations; order = order in available_scores().
from alloop.score import boxes as _boxes  # noqa: F401
from alloop.score import frequency as _frequency  # noqa: F401, I001
from alloop.score import consistency as _consistency  # noqa: F401, I001
from alloop.score import proposals as _proposals  # noqa: F401, I001
from alloop.score import difficulty as _difficulty  # noqa: F401, I001
from alloop.score.aggregate import (  # noqa: I001
    AGGREGATIONS, EMPTY_IMAGE_SCORE, aggregate_flat, check_aggregation, clean_unit,
)
from alloop.score.registry import ScoreInputs, box_score, box_scorers, image_score, image_scorers

DEFAULT_SCORE = "detection_entropy"


def _known() -> str:
    box = ", ".join(box_scorers())
    image = ", ".join(image_scorers())
    return (
        f"box scores {box} take an aggregation {', '.join(AGGREGATIONS)} (e.g. {DEFAULT_SCORE}); "
        f"image scores {image} take none"
    )


def parse_score_spec(spec: str) -> tuple[str, str]:
    """``"entropy:max"`` → ("entropy", "max"); an image score ``"object_frequency"`` → (that name, "")."""
    name, sep, how = spec.partition(":")
    if name in box_scorers():
        if not sep:
            raise ConfigError(f"score {spec!r} needs an aggregation, e.g. {name}:max; {_known()}")
        try:
            check_aggregation(how)
        except ConfigError as exc:
            raise ConfigError(f"score {spec!r}: {exc}") from None
        return name, how
    if name in image_scorers():
        if sep:
            raise ConfigError(
                f"score {spec!r}: {name} is an image score and takes no aggregation; use {name!r}"
            )
        return name, ""
    raise ConfigError(f"unknown score {spec!r}; {_known()}")


def available_scores() -> list[str]:
    """Every spec family: NAME:max, NAME:mean, NAME:sum, NAME:topkN per box score, then each image score."""
    return [f"{name}:{how}" for name in box_scorers() for how in AGGREGATIONS] + list(image_scorers())


def needs_flipped(specs: Sequence[str]) -> bool:
    """True when a spec needs predictions on horizontally flipped images (run hflip inference only then)."""
    names = {parse_score_spec(spec)[0] for spec in specs}
    return any(image_scorers()[n].needs_flipped for n in names if n in image_scorers())


def score_images(
    detections: Sequence[Detections],
    specs: Sequence[str],
    *,
    flipped: Sequence[Detections] | None = None,
    confidence_threshold: float = 0.5,
    class_quality: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """spec → (n_images,) float32 in [0, 1], higher = more worth labeling; no boxes → 0 for box scores.

    ``flipped``: per image, predictions on the mirrored image mapped back to original coordinates
    (needed by ``tta_consistency``). ``confidence_threshold``: the score from which a box counts as an
    object (``object_frequency``). ``class_quality``: (C,) per-class quality on held-out images
    (``dcus``; None weighs every class 1). Every spec is checked before anything is computed.
    """
    parsed = {spec: parse_score_spec(spec) for spec in specs}
    if not (math.isfinite(confidence_threshold) and 0.0 <= confidence_threshold <= 1.0):
        raise ConfigError(f"confidence threshold must be between 0 and 1, got {confidence_threshold}")
    for spec, (name, _) in parsed.items():
        entry = image_scorers().get(name)
        if entry is not None and entry.needs_flipped and flipped is None:
            raise ConfigError(
                f"score {spec!r} needs predictions on horizontally flipped images and none were given; "
                "predict with the trainer's hflip=True (the loop does so when needs_flipped() is true)"
            )
    if flipped is not None and len(flipped) != len(detections):
        raise ValueError(f"{len(detections)} images but {len(flipped)} flipped predictions")

    n = len(detections)
    # Every box of the pool in flat arrays: box scorers run once over all boxes, reductions per image
    # are vectorised (alloop.score.segments); no Python loop over images for the built-in scores.
    packed = PackedDetections.of(detections)
    packed_flipped = None if flipped is None else PackedDetections.of(flipped, packed.probs.shape[1] - 1)
    per_box: dict[str, np.ndarray] = {}  # each box scorer runs once, whatever the aggregations
    inputs = ScoreInputs(packed, packed_flipped, confidence_threshold, class_quality)
    out: dict[str, np.ndarray] = {}
    for spec, (name, how) in parsed.items():
        if name in box_scorers():
            if name not in per_box:
                per_box[name] = _box_values(name, packed)
            out[spec] = aggregate_flat(per_box[name], packed.offsets, how)
        else:
            values = np.asarray(image_scorers()[name].fn(inputs))
            if values.shape != (n,):
                raise ValueError(f"image score {name!r} returned shape {values.shape}, expected ({n},)")
            out[spec] = clean_unit(values, what=f"score {name}")
    return out


def _box_values(name: str, packed: PackedDetections) -> np.ndarray:
    """A box scorer's values for every box of the pool at once (a box's value depends on that box only)."""
    boxes = len(packed.boxes)
    values = np.asarray(box_scorers()[name](packed.all_boxes()))
    if values.shape != (boxes,):
        raise ValueError(
            f"box score {name!r} returned shape {values.shape} for {boxes} boxes, expected ({boxes},)"
        )
    return values


__all__ = [
    "DEFAULT_SCORE",
    "EMPTY_IMAGE_SCORE",
    "ScoreInputs",
    "available_scores",
    "box_score",
    "image_score",
    "needs_flipped",
    "parse_score_spec",
    "score_images",
]
