"""Difficulty-calibrated uncertainty: PPAL's DCUS (Yang et al., "Plug and Play Active Learning for Object
Detection", CVPR 2024; github.com/ChenhongyiYang/PPAL, ``difficulty_calibrated_uncertainty_sampler.py``).

Easy classes have many confident boxes, so plain uncertainty is dominated by the boxes of classes the
model already handles; PPAL weighs each box by how hard its class is:

- class quality q_c: the mean over class c's ground-truth boxes of p^xi * IoU^(1 - xi), p and IoU of
  the best same-class prediction (IoU >= 0.5; a missed box counts 0), xi = 0.6. PPAL keeps this as an
  EMA over positive anchors during training; alloop measures it on the held-out labeled images the
  loop evaluates on, which needs no hook inside a trainer (a plugin or TAO gets it too). A class with
  no held-out box gets q = 0: nothing shows it is easy.
- class weight w_c = 1 + a * ln(b * (1 - q_c) + 1) * u, b = e^(1/a) - 1, a = 0.3, u = 0.2 (PPAL's
  ``class_weight_alpha`` and ``class_weight_ub``): 1 for a perfect class, 1 + u for a class never found.
- ``dcus`` image score: sum over the image's boxes scoring >= 0.05 of H2(p) * w_label, H2 the binary
  entropy of the box's score in bits (PPAL's ``cls_uncertainty``); a sum, not a mean, so an image with
  many uncertain boxes outranks one with a single one. Scaled by the pool's largest sum into [0, 1].
  Without class qualities (no held-out split yet) every weight is 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from alloop.boxes import Detections, ImageAnnotation
from alloop.predictions import PackedDetections
from alloop.score.registry import ScoreInputs, image_score
from alloop.score.segments import offsets_of, reduce_images

QUALITY_XI = 0.6
WEIGHT_ALPHA = 0.3
WEIGHT_UB = 0.2
MIN_BOX_SCORE = 0.05
MATCH_IOU = 0.5


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def class_quality(
    ground_truth: Sequence[ImageAnnotation], detections: Sequence[Detections], classes: Sequence[str],
    *, xi: float = QUALITY_XI,
) -> np.ndarray:
    """(C,) mean p^xi * IoU^(1 - xi) of each class's ground-truth boxes' best match; 0 without boxes."""
    if len(ground_truth) != len(detections):
        raise ValueError(f"{len(ground_truth)} annotated images but {len(detections)} predictions")
    index = {name: k for k, name in enumerate(classes)}
    total = np.zeros(len(classes))
    count = np.zeros(len(classes))
    for ann, det in zip(ground_truth, detections):
        if not ann.boxes:
            continue
        gt = np.array([[b.x0, b.y0, b.x1, b.y1] for b in ann.boxes], np.float64)
        gt_cls = np.array([index[b.label] for b in ann.boxes])
        iou = _iou(gt, np.asarray(det.boxes, np.float64)) if len(det) else np.zeros((len(gt), 0))
        same = gt_cls[:, None] == np.asarray(det.labels)[None, :]
        quality = np.where(same & (iou >= MATCH_IOU),
                           np.asarray(det.scores, np.float64)[None, :] ** xi * iou ** (1.0 - xi), 0.0)
        best = quality.max(axis=1) if quality.shape[1] else np.zeros(len(gt))
        np.add.at(total, gt_cls, best)
        np.add.at(count, gt_cls, 1.0)
    return np.divide(total, count, out=np.zeros(len(classes)), where=count > 0)


def class_weights(quality: np.ndarray, *, alpha: float = WEIGHT_ALPHA, ub: float = WEIGHT_UB) -> np.ndarray:
    """w_c = 1 + alpha * ln(b * (1 - q_c) + 1) * ub, b = e^(1/alpha) - 1: in [1, 1 + ub], harder = higher."""
    q = np.clip(np.nan_to_num(np.asarray(quality, np.float64), nan=0.0), 0.0, 1.0)
    b = math.exp(1.0 / alpha) - 1.0
    return 1.0 + alpha * np.log(b * (1.0 - q) + 1.0) * ub


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H2(p) in bits, 0 at p in {0, 1}, 1 at p = 0.5."""
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def dcus_sums(detections: Sequence[Detections], weights: np.ndarray | None) -> np.ndarray:
    """Per image: sum of H2(score) * w_label over its boxes scoring at least MIN_BOX_SCORE."""
    packed = PackedDetections.of(detections)
    scores = np.nan_to_num(np.asarray(packed.scores, np.float64), nan=0.0)
    keep = scores >= MIN_BOX_SCORE
    w = 1.0 if weights is None else weights[np.asarray(packed.labels)[keep]]
    values = binary_entropy(scores[keep]) * w
    # The kept boxes, image by image: each image sums exactly the values it would alone.
    offsets = offsets_of(packed.image_of_box()[keep], len(packed))
    return reduce_images(values, offsets, lambda m: m.sum(axis=1))


@image_score("dcus")
def dcus(inputs: ScoreInputs) -> np.ndarray:
    """PPAL's difficulty-calibrated uncertainty, scaled by the pool's largest value into [0, 1]."""
    weights = None if inputs.class_quality is None else class_weights(inputs.class_quality)
    sums = dcus_sums(inputs.detections, weights)
    top = float(sums.max()) if len(sums) else 0.0
    return (sums / top if top > 0 else sums).astype(np.float32)


__all__ = ["binary_entropy", "class_quality", "class_weights", "dcus", "dcus_sums"]
