"""Where scorers register, by name: box scorers (one value per box) and image scorers (one per image).

A box scorer is a function ``(Detections) -> (N,)`` of per-box values in [0, 1]; the shared
aggregations in :mod:`alloop.score.aggregate` turn them into one value per image, so a box scorer
never reduces anything itself. It is called once with every box of the pool (a box's value must
depend on that box alone), which is what lets a pool of a million images score in seconds. An image scorer sees the whole pool at once (object frequency is
scaled over the pool; TTA consistency needs the flipped predictions) and returns ``(n_images,)``.

Adding a scorer is one decorated function::

    @box_score("top_score_gap")
    def top_score_gap(det: Detections) -> np.ndarray:
        return 1.0 - det.scores

It is then valid in ``--score top_score_gap:max`` as soon as its module is imported. Both kinds share
one namespace, so a name means one thing in a score spec.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from alloop.boxes import Detections

BoxScorer = Callable[[Detections], np.ndarray]


@dataclass(frozen=True)
class ScoreInputs:
    """What an image scorer gets: the pool's detections and this run's options."""

    # A sequence of per-image Detections; from score_images, an alloop.predictions.PackedDetections,
    # whose flat arrays let a scorer work on every box at once (PackedDetections.of packs a list).
    detections: Sequence[Detections]
    # Predictions on the horizontally mirrored images, already mapped back to original coordinates;
    # None unless a scorer registered with needs_flipped=True was asked for.
    flipped: Sequence[Detections] | None = None
    # A box counts as "an object" for count-based scores when its score is at least this.
    confidence_threshold: float = 0.5
    # (C,) per-class detection quality in [0, 1] measured on held-out labeled images
    # (alloop.score.difficulty.class_quality); None before any model was evaluated.
    class_quality: np.ndarray | None = None


ImageScorer = Callable[[ScoreInputs], np.ndarray]


@dataclass(frozen=True)
class ImageScore:
    """A registered image scorer and what it needs from the loop."""

    name: str
    fn: ImageScorer
    needs_flipped: bool = False


_BOX_SCORES: dict[str, BoxScorer] = {}
_IMAGE_SCORES: dict[str, ImageScore] = {}

# Lower-case identifiers only: names appear in score specs ("NAME:AGG") and as stored score names.
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _check_new_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"score name {name!r} must be lower-case letters, digits and '_', starting with a letter"
        )
    if name in _BOX_SCORES or name in _IMAGE_SCORES:
        raise ValueError(f"a score named {name!r} is already registered")


def box_score(name: str) -> Callable[[BoxScorer], BoxScorer]:
    """Register ``fn(Detections) -> (N,) per-box values in [0, 1]`` under ``name``."""

    def register(fn: BoxScorer) -> BoxScorer:
        _check_new_name(name)
        _BOX_SCORES[name] = fn
        return fn

    return register


def image_score(name: str, *, needs_flipped: bool = False) -> Callable[[ImageScorer], ImageScorer]:
    """Register ``fn(ScoreInputs) -> (n_images,) values in [0, 1]`` under ``name``."""

    def register(fn: ImageScorer) -> ImageScorer:
        _check_new_name(name)
        _IMAGE_SCORES[name] = ImageScore(name, fn, needs_flipped)
        return fn

    return register


def box_scorers() -> Mapping[str, BoxScorer]:
    """The registered box scorers, in registration order (read-only view)."""
    return MappingProxyType(_BOX_SCORES)


def image_scorers() -> Mapping[str, ImageScore]:
    """The registered image scorers, in registration order (read-only view)."""
    return MappingProxyType(_IMAGE_SCORES)


__all__ = [
    "BoxScorer",
    "ImageScore",
    "ImageScorer",
    "ScoreInputs",
    "box_score",
    "box_scorers",
    "image_score",
    "image_scorers",
]
