"""Scores that see what the detector missed: uncertainty over its candidate regions, not its kept boxes.

An image on which an early detector keeps no box scores 0 under every box score (Lightly's
convention: "the detector saw nothing it is unsure about"). On a scene type the first model is blind
to, that ranks the images it fails on as the most *certain* ones (issue 20: 59–67% of a cluttered
minority scored exactly 0). Faster R-CNN has looked at those images all the same: its RPN proposed
regions, with an objectness o, and its box head gave each one a foreground probability
f = 1 − p(background). These scores read the top :data:`TOP_REGIONS` proposals by objectness
(:attr:`Detections.proposal_objectness`), kept or not.

- ``proposal_entropy``: mean over the regions of H₂(½(o + f)), the vote entropy of a committee of
  two (the RPN and the box head) on "is there an object here" (query by committee, Seung et al. 1992;
  vote entropy, Dagan & Engelson 1995). Both sure of an object, or both sure of background → low;
  both unsure, or one says object and the other background (a region the head dismisses) → high.
- ``detection_entropy`` (the default score): ½(``entropy:mean`` + ``proposal_entropy``): the class
  uncertainty of the kept boxes and the object/background uncertainty of the candidate regions, with
  equal weight.

Measured (benchmarks/blind_spots.py, 3 seeds, benchmarks/RESULTS.md "Blind spots"): on a family whose
first model never saw a dark cluttered scene (26% of the pool), the Spearman correlation of the score
with the ground-truth objects the model missed is 0.18 ± 0.24 for ``entropy:mean``, 0.62 ± 0.05 for
``proposal_entropy`` and 0.58 ± 0.10 for ``detection_entropy``, and the hard scene's share of the top
25 picks is 28%, 88% and 76% (pool share 26%). On the orchard with its tiny-apple scene withheld,
``entropy:mean`` already sees it (0.38 ± 0.08; 21% of the top picks against 7% of the pool),
``proposal_entropy`` does worse (0.26 ± 0.11) and ``detection_entropy`` matches it (0.35 ± 0.06; 25%).
Only ``detection_entropy`` is good on both, so it is the default. A third candidate, o·(1 − f) ("RPN
says object, head says background"), ranked misses worst on both families (0.34, 0.13) and was dropped.

Where regions come from: the torchvision trainer records the top 64 per image. A detector that
reports none (an older prediction file, TAO's YOLOv4, a plugin) is read from its kept boxes
instead, which a low score threshold makes the "boxes kept below the display threshold": o is the
box's objectness, f its 1 − p(background). An image whose detector reported zero regions (the
RPN found nothing above its own threshold) scores 0, as does an image with no kept boxes under that
fallback: nothing was seen that could be weighed, so nothing is uncertain; the diversity and
typicality terms of the selection are what cover such images.
"""

from __future__ import annotations

import numpy as np

from alloop.boxes import Detections
from alloop.predictions import PackedDetections
from alloop.score.boxes import class_distribution, entropy
from alloop.score.registry import ScoreInputs, image_score
from alloop.score.segments import reduce_images

# Regions per image the scores look at: the highest-objectness proposals. A typical image of the
# benchmarks holds 5–40 objects; 16 covers the objects of most images without averaging in the
# hundreds of background proposals that would dilute every image towards the same value.
TOP_REGIONS = 16


def regions(det: Detections, top: int = TOP_REGIONS) -> tuple[np.ndarray, np.ndarray]:
    """(objectness, foreground) of the image's top regions as float64 in [0, 1].

    From the recorded proposals when the detector reported them, else from the kept boxes (the
    highest-objectness ones). Non-finite values count as 0 (no evidence of an object).
    """
    if det.has_proposals:
        o, f = np.asarray(det.proposal_objectness), np.asarray(det.proposal_foreground)
    else:
        p = class_distribution(det)
        o = np.asarray(det.objectness)
        f = 1.0 - p[:, 0] if len(p) else np.zeros(0)
    o = np.clip(np.nan_to_num(np.asarray(o, np.float64), nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
    f = np.clip(np.nan_to_num(np.asarray(f, np.float64), nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
    order = np.argsort(-o, kind="stable")[:top]
    return o[order], f[order]


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H₂(p) = −p log₂ p − (1 − p) log₂(1 − p), 0 at p ∈ {0, 1}, 1 at p = ½."""
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    q = 1.0 - p
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0) - np.where(q > 0, q * np.log2(q), 0.0)
    return h


def _unit_evidence(values: np.ndarray) -> np.ndarray:
    """float64 in [0, 1]; non-finite → 0 (no evidence of an object)."""
    v = np.nan_to_num(np.asarray(values, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(v, 0.0, 1.0)


def _top_region_mean(o: np.ndarray, f: np.ndarray, offsets: np.ndarray, fn, top: int) -> np.ndarray:
    """Per image: mean of fn over its ``top`` highest-objectness regions (0 without regions)."""
    both = np.stack([o, f], axis=1)

    def reduce(m: np.ndarray) -> np.ndarray:  # (images, k, 2): each image's regions
        order = np.argsort(-m[:, :, 0], axis=1, kind="stable")[:, :top]
        oo = np.take_along_axis(m[:, :, 0], order, axis=1)
        ff = np.take_along_axis(m[:, :, 1], order, axis=1)
        return fn(oo, ff).mean(axis=1)

    return reduce_images(both, offsets, reduce)


def _per_image(inputs: ScoreInputs, fn) -> np.ndarray:
    """:func:`regions` of every image at once: recorded proposals where reported, else the kept boxes."""
    packed = PackedDetections.of(inputs.detections)
    p = class_distribution(packed.all_boxes())
    f_box = 1.0 - p[:, 0] if len(p) else np.zeros(0)
    out = _top_region_mean(_unit_evidence(packed.objectness), _unit_evidence(f_box), packed.offsets, fn,
                           TOP_REGIONS)
    if packed.has_proposals is not None:
        from_proposals = _top_region_mean(
            _unit_evidence(packed.proposal_objectness), _unit_evidence(packed.proposal_foreground),
            packed.proposal_offsets, fn, TOP_REGIONS,
        )
        out = np.where(packed.has_proposals, from_proposals, out)
    return out


@image_score("proposal_entropy")
def proposal_entropy(inputs: ScoreInputs) -> np.ndarray:
    """mean over the top regions of H₂(½(o + f)): RPN/box-head vote entropy (QBC; Dagan & Engelson 1995)."""
    return _per_image(inputs, lambda o, f: binary_entropy(0.5 * (o + f)))


@image_score("detection_entropy")
def detection_entropy(inputs: ScoreInputs) -> np.ndarray:
    """½(entropy:mean of the kept boxes + proposal_entropy): class and object/background uncertainty."""
    packed = PackedDetections.of(inputs.detections)
    kept = reduce_images(entropy(packed.all_boxes()), packed.offsets, lambda m: m.mean(axis=1))
    return 0.5 * (kept + proposal_entropy(inputs))


__all__ = ["TOP_REGIONS", "binary_entropy", "detection_entropy", "proposal_entropy", "regions"]
