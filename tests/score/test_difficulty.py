"""PPAL's difficulty-calibrated uncertainty (alloop.score.difficulty)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alloop.boxes import Box, Detections, ImageAnnotation
from alloop.score import score_images
from alloop.score.difficulty import binary_entropy, class_quality, class_weights, dcus_sums


def _empty(num_classes: int) -> Detections:
    return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32),
                      np.zeros((0, num_classes + 1), np.float32), np.zeros(0, np.float32))


def test_class_weights_follow_ppal_formula() -> None:
    w = class_weights(np.array([1.0, 0.0, 0.5, np.nan]))
    assert w[0] == pytest.approx(1.0)
    assert w[1] == pytest.approx(1.2)  # 1 + alpha * ln(e^(1/alpha)) * ub = 1 + ub
    b = math.exp(1 / 0.3) - 1
    assert w[2] == pytest.approx(1 + 0.3 * math.log(b * 0.5 + 1) * 0.2)
    assert w[3] == pytest.approx(1.2)  # unknown difficulty counts as hard
    assert np.all(np.diff(class_weights(np.linspace(0, 1, 11))) < 0)  # harder -> heavier


def test_binary_entropy_bounds() -> None:
    np.testing.assert_allclose(binary_entropy(np.array([0.0, 0.5, 1.0])), [0.0, 1.0, 0.0], atol=1e-9)


def test_class_quality_matches_same_class_boxes_only(make_detections) -> None:
    gt = [ImageAnnotation("a.jpg", 100, 100, (Box(0, 0, 10, 10, "red"), Box(50, 50, 60, 60, "green"))),
          ImageAnnotation("b.jpg", 100, 100, ())]
    # One prediction: a perfect "red" box at 0.64; the green box is missed.
    det = make_detections([[0.36, 0.64, 0.0]], boxes=[[0, 0, 10, 10]])
    empty = _empty(3)
    q = class_quality(gt, [det, empty], ["red", "green", "yellow"])
    assert q[0] == pytest.approx(0.64 ** 0.6)
    assert q[1] == 0.0  # missed
    assert q[2] == 0.0  # no ground truth: nothing shows it is easy
    wrong_class = make_detections([[0.36, 0.0, 0.64]], boxes=[[0, 0, 10, 10]])
    assert class_quality(gt, [wrong_class, empty], ["red", "green", "yellow"])[0] == 0.0


def test_class_quality_needs_a_prediction_per_image(make_detections) -> None:
    with pytest.raises(ValueError, match="2 annotated images but 1 predictions"):
        class_quality([ImageAnnotation("a", 1, 1), ImageAnnotation("b", 1, 1)],
                      [_empty(1)], ["x"])


def test_dcus_sums_weigh_hard_classes_and_skip_low_scores(make_detections) -> None:
    det = make_detections([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.97, 0.03, 0.0]])
    plain = dcus_sums([det], None)
    assert plain[0] == pytest.approx(2.0)  # two boxes at p = 0.5; the 0.03 box is below 0.05
    weighted = dcus_sums([det], np.array([1.0, 1.2]))
    assert weighted[0] == pytest.approx(2.2)


def test_dcus_image_score_scaled_to_the_pool(make_detections) -> None:
    many = make_detections([[0.5, 0.5]] * 4)
    one = make_detections([[0.5, 0.5]])
    none = _empty(1)
    out = score_images([many, one, none], ["dcus"])["dcus"]
    np.testing.assert_allclose(out, [1.0, 0.25, 0.0])
    hard = score_images([one, none], ["dcus"], class_quality=np.array([0.0]))["dcus"]
    np.testing.assert_allclose(hard, [1.0, 0.0])
    assert score_images([none], ["dcus"])["dcus"].tolist() == [0.0]
