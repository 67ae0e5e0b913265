"""Horizontal-flip consistency: 0 for a consistent model, growing with box shift and class disagreement."""

from __future__ import annotations

import numpy as np
import pytest

from alloop.boxes import Detections
from alloop.score.consistency import box_iou, class_agreement, flip_inconsistency


def test_box_iou_and_class_agreement_by_hand():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 10, 10]]))
    np.testing.assert_allclose(iou, [[0.5, 0.0, 1.0]])
    agree = class_agreement(np.array([[0.2, 0.8]]), np.array([[0.4, 0.6], [1.0, 0.0]]))
    np.testing.assert_allclose(agree, [[0.8, 0.2]])  # Σ min(p, q)


def test_hand_computed_pair_and_unmatched_box(make_detections):
    a = make_detections([[0.2, 0.8]], boxes=[[0, 0, 10, 10]])  # score 0.8
    b = make_detections([[0.4, 0.6]], boxes=[[0, 0, 10, 5]])  # score 0.6, IoU 0.5, agreement 0.8
    # 1 - (0.8 + 0.6) * 0.5 * 0.8 / (0.8 + 0.6) = 0.6
    assert flip_inconsistency(a, b) == pytest.approx(0.6)
    b_extra = make_detections([[0.4, 0.6], [0.8, 0.2]], boxes=[[0, 0, 10, 5], [50, 50, 60, 60]])
    # the extra box (score 0.2) matches nothing and counts 0: 1 - 0.56 / 1.6
    assert flip_inconsistency(a, b_extra) == pytest.approx(1 - 0.56 / 1.6)


def test_identical_predictions_in_any_order_score_zero(make_detections):
    probs = [[0.1, 0.7, 0.2], [0.3, 0.1, 0.6]]
    boxes = [[0, 0, 10, 10], [20, 0, 30, 10]]
    a = make_detections(probs, boxes=boxes)
    b = make_detections(probs[::-1], boxes=boxes[::-1])
    assert flip_inconsistency(a, b) == pytest.approx(0.0, abs=1e-6)


def test_no_boxes_anywhere_is_consistent_and_a_vanished_box_is_fully_inconsistent(make_detections):
    assert flip_inconsistency(Detections.empty(1), Detections.empty(1)) == 0.0
    a = make_detections([[0.1, 0.9]])
    assert flip_inconsistency(a, Detections.empty(1)) == 1.0
    assert flip_inconsistency(Detections.empty(1), a) == 1.0


def test_grows_with_class_disagreement(make_detections):
    a = make_detections([[0.1, 0.8, 0.1]])
    values = [
        flip_inconsistency(a, make_detections([[0.1, 0.8 - t, 0.1 + t]])) for t in (0.0, 0.2, 0.4, 0.7)
    ]
    assert values[0] == pytest.approx(0.0, abs=1e-6)
    assert all(x < y for x, y in zip(values, values[1:]))


# A fake detector on a tiny numpy image: it boxes the bright pixels, then shifts the box right by
# ``bias`` pixels. bias = 0 is perfectly flip-consistent; a bias moves the flipped box the other way.
def _fake_detector(image: np.ndarray, bias: float) -> Detections:
    ys, xs = np.nonzero(image)
    box = np.array([[xs.min() + bias, ys.min(), xs.max() + 1 + bias, ys.max() + 1]], np.float32)
    p = np.array([[0.1, 0.9]], np.float32)
    return Detections(box, np.array([0]), np.array([0.9], np.float32), p, np.array([0.9], np.float32))


def _predict_flipped(image: np.ndarray, bias: float) -> Detections:
    det = _fake_detector(image[:, ::-1], bias)
    width = image.shape[1]
    boxes = det.boxes.copy()
    boxes[:, 0], boxes[:, 2] = width - det.boxes[:, 2], width - det.boxes[:, 0]  # mirror back
    return Detections(boxes, det.labels, det.scores, det.probs, det.objectness)


def test_fake_model_is_consistent_without_bias_and_less_so_as_bias_grows():
    image = np.zeros((32, 48), np.uint8)
    image[8:20, 5:17] = 255  # off-centre, so the flip really moves it
    values = [
        flip_inconsistency(_fake_detector(image, bias), _predict_flipped(image, bias))
        for bias in (0.0, 1.0, 3.0, 6.0)
    ]
    assert values[0] == pytest.approx(0.0, abs=1e-6)
    assert all(x < y for x, y in zip(values, values[1:]))
    assert all(0.0 <= v <= 1.0 for v in values)
