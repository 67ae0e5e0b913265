"""Test-time-augmentation consistency: does the detector see the same boxes on the mirrored image?

A detector that is sure of an object finds it again, in the same place and with the same class, when
the image is flipped horizontally; where it is unsure it moves, relabels or loses boxes. This measures
localisation as well as classification uncertainty, which the class-distribution scores cannot.

Formula (per image; A = boxes on the original, B = boxes on the flipped image mapped back):

    c(a, b)  = IoU(a, b) · Σ_k min(p_a,k, q_b,k)          # agreement = 1 − total-variation distance
    score    = 1 − Σ_matched (w_a + w_b)·c(a, b) / (Σ_A w + Σ_B w)

The one-to-one matching maximises the numerator (Hungarian, ``scipy.optimize.linear_sum_assignment``);
unmatched boxes count 0. Each box is weighted by its detection score ``w``, so the many low-score boxes
the trainer keeps (down to ~0.05) barely matter while a confident box that vanishes on the flipped
image weighs fully; a hard threshold would instead flip boxes near it in and out. Identical
predictions score 0; no boxes on either side score 0 (nothing to disagree about); every box unmatched
scores 1. Class distributions include background (see :mod:`alloop.score.boxes`).

After CALD, "Consistency-based Active Learning for Object Detection" (Yu, Zhu, Yang, Chen; CVPR 2022
workshops, arXiv:2103.10374), which matches each box to its best-IoU counterpart under augmentation
and combines IoU with class-distribution similarity, and Elezi et al., "Not All Labels Are Equal"
(CVPR 2022), which scores flip consistency of the class distributions. alloop's variant is symmetric
and bounded in [0, 1] so it can be stored and compared with the other scores.
"""

from __future__ import annotations

import numpy as np

from alloop.boxes import Detections
from alloop.score.boxes import class_distribution
from alloop.score.registry import ScoreInputs, image_score


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) IoU of xyxy boxes; a pair with zero union has IoU 0."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = area_a[:, None] + area_b[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.nan_to_num(np.clip(iou, 0.0, 1.0))


def class_agreement(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(n, m) Σ_k min(p_k, q_k) = 1 − total-variation distance: 1 for equal distributions, 0 for disjoint."""
    return np.minimum(p[:, None, :], q[None, :, :]).sum(axis=2)


def _weights(det: Detections) -> np.ndarray:
    s = np.asarray(det.scores, np.float64)
    return np.clip(np.where(np.isfinite(s), s, 0.0), 0.0, 1.0)


def flip_inconsistency(original: Detections, flipped: Detections) -> float:
    """1 − Σ_matched (w_a + w_b)·IoU·agreement / Σ w over both sides; 0 = consistent (Yu et al. 2022)."""
    wa, wb = _weights(original), _weights(flipped)
    total = wa.sum() + wb.sum()
    if total <= 0:  # no boxes (or only zero-score ones) on either side: nothing to disagree about
        return 0.0
    if len(original) == 0 or len(flipped) == 0:
        return 1.0
    pa, pb = class_distribution(original), class_distribution(flipped)
    if pa.shape[1] != pb.shape[1]:
        raise ValueError(
            f"original and flipped predictions have {pa.shape[1]} and {pb.shape[1]} probability columns; "
            "they must come from the same model"
        )
    consistency = box_iou(original.boxes, flipped.boxes) * class_agreement(pa, pb)
    gain = (wa[:, None] + wb[None, :]) * consistency
    # Imported here: scipy.optimize costs ~0.7 s to import and only this score needs it.
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(gain, maximize=True)
    return float(np.clip(1.0 - gain[rows, cols].sum() / total, 0.0, 1.0))


@image_score("tta_consistency", needs_flipped=True)
def tta_consistency(inputs: ScoreInputs) -> np.ndarray:
    """(n_images,) horizontal-flip inconsistency per image, in [0, 1]; needs ``inputs.flipped``."""
    flipped = inputs.flipped
    if flipped is None or len(flipped) != len(inputs.detections):
        got = "none" if flipped is None else len(flipped)
        raise ValueError(
            f"tta_consistency needs one flipped prediction per image: "
            f"{len(inputs.detections)} images, {got} flipped"
        )
    return np.array([flip_inconsistency(o, f) for o, f in zip(inputs.detections, flipped)], np.float32)


__all__ = ["box_iou", "class_agreement", "flip_inconsistency", "tta_consistency"]
