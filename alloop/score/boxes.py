"""Box-level uncertainty: one value in [0, 1] per predicted box, from its class distribution.

Reference formulas are Lightly's detection scorers (lightly 1.1–1.4, ``ScorerObjectDetection`` and
``ScorerClassification``). One deliberate difference: Lightly works on a distribution over the C
foreground classes, and when a detector gives only a top score it fakes one
(``c[label] = p``, the rest ``(1 - p) / (C - 1)``). alloop uses the detector's real softmax over
**K = C + 1 columns, background included** (``Detections.probs``). For a one-class detector (apples)
a foreground-only distribution is always ``[1.0]`` and carries no uncertainty; the question that
matters there is "apple or background?", which only the (C+1)-way distribution can answer.
Normalising by K instead of C keeps every value in [0, 1].

Which boxes count: all boxes the trainer kept (down to its low score threshold, e.g. 0.05), with no
extra weighting. With background in the distribution a near-background box (p(background) ≈ 0.95)
is a *confident* box and already scores low; the ambiguous ones (p(background) ≈ p(object)) score
high. So the low threshold adds candidates without adding noise to least confidence, margin and
entropy. ``objectness_least_confidence`` is the exception (see its docstring).

For a single class (K = 2) least confidence and margin are equal (both 2·min(p_bg, p_obj)) and
entropy is a monotone function of the same quantity, so all three rank boxes identically; they
differ with several classes.
"""

from __future__ import annotations

import numpy as np

from alloop.boxes import Detections
from alloop.score.registry import box_score


def class_distribution(det: Detections) -> np.ndarray:
    """``det.probs`` as clean float64 rows: non-finite or negative entries → 0, rows renormalised to 1.

    A row with no mass left becomes uniform (the model said nothing usable: maximally uncertain).
    Renormalising also absorbs float32 drift from the softmax.
    """
    p = np.asarray(det.probs, dtype=np.float64)
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    total = p.sum(axis=1, keepdims=True)
    k = p.shape[1]
    uniform = np.full_like(p, 1.0 / k) if k else p
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform)


def _unit(values: np.ndarray) -> np.ndarray:
    # Rounding can leave a uniform row's entropy a hair above 1; the contract is [0, 1].
    return np.clip(values, 0.0, 1.0).astype(np.float32)


@box_score("least_confidence")
def least_confidence(det: Detections) -> np.ndarray:
    """(1 − max_k p_k) / (1 − 1/K), K = C+1 columns incl. background (Lightly ``least_confidence``)."""
    p = class_distribution(det)
    k = p.shape[1]
    if k < 2:  # one column: nothing to be unsure between
        return np.zeros(len(p), np.float32)
    return _unit((1.0 - p.max(axis=1)) / (1.0 - 1.0 / k))


@box_score("margin")
def margin(det: Detections) -> np.ndarray:
    """1 − (p₁ − p₂), the two largest probabilities incl. background (Lightly ``margin``)."""
    p = class_distribution(det)
    if p.shape[1] < 2:
        return np.zeros(len(p), np.float32)
    top2 = np.sort(p, axis=1)[:, -2:]
    return _unit(1.0 - (top2[:, 1] - top2[:, 0]))


@box_score("entropy")
def entropy(det: Detections) -> np.ndarray:
    """−Σ_k p_k log p_k / log K, K = C+1 columns incl. background (Lightly ``entropy``)."""
    p = class_distribution(det)
    k = p.shape[1]
    if k < 2:
        return np.zeros(len(p), np.float32)
    # 0 · log 0 = 0: take the log only where p > 0.
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return _unit(-plogp.sum(axis=1) / np.log(k))


@box_score("objectness_least_confidence")
def objectness_least_confidence(det: Detections) -> np.ndarray:
    """1 − objectness · max_k p(k | object): Lightly's box "score" (objectness × max class prob), inverted.

    Lightly (``_objectness_least_confidence``) scores an image 1 − mean(box scores); the per-box value
    here with ``:mean`` reproduces it. p(k | object) is the foreground part of ``probs`` renormalised.
    Unlike the distribution scores, this one is high for near-background boxes (low objectness), so
    with a low trainer threshold ``:max`` (and ``:topkN``) is close to 1 on almost every image; use
    ``:mean`` as Lightly does, or rank by the class-distribution scores.
    """
    p = class_distribution(det)
    if len(p) == 0:
        return np.zeros(0, np.float32)
    fg = p[:, 1:]
    fg_mass = fg.sum(axis=1)
    # No foreground mass: the class is unknown, take the uniform guess 1/C.
    n_fg = max(fg.shape[1], 1)
    safe_mass = np.where(fg_mass > 0, fg_mass, 1.0)
    top_class = np.where(fg_mass > 0, fg.max(axis=1, initial=0.0) / safe_mass, 1.0 / n_fg)
    obj = np.asarray(det.objectness, dtype=np.float64)
    # A non-finite objectness says nothing: treat it as "not an object" (value 1, most uncertain).
    obj = np.clip(np.where(np.isfinite(obj), obj, 0.0), 0.0, 1.0)
    return _unit(1.0 - obj * top_class)


__all__ = ["class_distribution", "entropy", "least_confidence", "margin", "objectness_least_confidence"]
