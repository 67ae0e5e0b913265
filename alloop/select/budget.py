"""Budgets counted in boxes: labeling cost is per box, not per image (PPAL, CVPR 2024; CALD).

An image with 30 apples costs an annotator far more than one with 3. With ``--budget-boxes N`` the
batch is the longest prefix of the strategy's pick order whose estimated cost stays within N boxes.

Estimated cost of image i: c_i = max(1, p_i * r), where p_i is the current model's confident boxes
(score >= 0.5) on the image and r corrects the model's miscount with what the labeled set shows:
r = (real boxes per labeled image) / (confident predicted boxes per pool image), 1 when either is
unknown. An image with no predicted box still costs one: somebody has to look at it.
"""

from __future__ import annotations

import numpy as np

from alloop.errors import SelectionError


def box_costs(predicted: np.ndarray, labeled_boxes_per_image: float | None) -> tuple[np.ndarray, float]:
    """(per-image estimated cost in boxes, the correction r) from confident predicted box counts."""
    p = np.asarray(predicted, dtype=np.float64)
    mean_pred = float(p.mean()) if p.size else 0.0
    r = 1.0
    if labeled_boxes_per_image is not None and labeled_boxes_per_image > 0 and mean_pred > 0:
        r = float(labeled_boxes_per_image) / mean_pred
    return np.maximum(1.0, p * r), r


def prefix_within(costs: np.ndarray, order: np.ndarray, budget: float) -> int:
    """How many of ``order``'s picks fit in ``budget`` boxes (at least one, so a batch is never empty)."""
    if not budget > 0:
        raise SelectionError(f"--budget-boxes must be a positive number of boxes, got {budget}")
    spent = np.cumsum(np.asarray(costs, dtype=np.float64)[np.asarray(order, dtype=np.int64)])
    return max(1, int(np.searchsorted(spent, budget, side="right")))


__all__ = ["box_costs", "prefix_within"]
