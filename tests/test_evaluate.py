"""alloop.evaluate: COCO mAP on hand-computable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alloop.boxes import Box, Detections, ImageAnnotation
from alloop.errors import LabelError
from alloop.evaluate import Metrics, evaluate

CLASSES = ["apple", "pear"]


def gt(*boxes: tuple[float, float, float, float, str], name: str = "a.jpg") -> ImageAnnotation:
    return ImageAnnotation(name, 200, 200, tuple(Box(*b) for b in boxes))


def det(*rows: tuple[float, float, float, float, int, float]) -> Detections:
    """Detections from (x0, y0, x1, y1, class index, score) rows; probs follow the score."""
    if not rows:
        return Detections.empty(len(CLASSES))
    arr = np.array(rows, dtype=np.float64)
    labels = arr[:, 4].astype(np.int64)
    scores = arr[:, 5].astype(np.float32)
    probs = np.zeros((len(rows), len(CLASSES) + 1), np.float32)
    probs[np.arange(len(rows)), np.minimum(labels + 1, len(CLASSES))] = scores
    probs[:, 0] = 1 - scores
    return Detections(arr[:, :4].astype(np.float32), labels, scores, probs, scores.copy())


def test_perfect_predictions_score_one():
    truth = [
        gt((10, 10, 50, 60, "apple"), (100, 100, 150, 140, "pear")),
        gt((5, 5, 20, 20, "apple"), name="b.jpg"),
    ]
    preds = [det((10, 10, 50, 60, 0, 0.9), (100, 100, 150, 140, 1, 0.8)), det((5, 5, 20, 20, 0, 0.7))]
    m = evaluate(truth, preds, CLASSES)
    assert isinstance(m, Metrics)
    assert m.map50 == pytest.approx(1.0)
    assert m.map == pytest.approx(1.0)
    assert m.per_class_ap == {"apple": pytest.approx(1.0), "pear": pytest.approx(1.0)}
    assert (m.n_images, m.n_boxes) == (2, 3)


def test_false_positive_ranked_above_the_true_positive_halves_ap():
    # Ranked: FP (0.9) then TP (0.8): precision 1/2 at recall 1, interpolated flat -> AP 0.5.
    truth = [gt((10, 10, 50, 50, "apple"))]
    preds = [det((120, 120, 180, 180, 0, 0.9), (10, 10, 50, 50, 0, 0.8))]
    m = evaluate(truth, preds, CLASSES)
    assert m.map50 == pytest.approx(0.5)
    assert m.map == pytest.approx(0.5)


def test_fp_between_two_tps_gives_interpolated_ap():
    # Ranked TP, FP, TP over 2 gt boxes: recall 0.5 at precision 1, recall 1 at precision 2/3.
    # 101-point interpolation: 51 recall points (0..0.5) at 1.0, 50 points at 2/3.
    truth = [gt((10, 10, 50, 50, "apple"), (100, 100, 140, 140, "apple"))]
    preds = [det((10, 10, 50, 50, 0, 0.9), (60, 150, 90, 190, 0, 0.8), (100, 100, 140, 140, 0, 0.7))]
    m = evaluate(truth, preds, CLASSES)
    assert m.map50 == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)


def test_wrong_class_scores_zero():
    truth = [gt((10, 10, 50, 50, "apple"))]
    preds = [det((10, 10, 50, 50, 1, 0.9))]
    m = evaluate(truth, preds, CLASSES)
    assert m.map50 == 0.0 and m.map == 0.0
    assert m.per_class_ap50["apple"] == 0.0
    assert math.isnan(m.per_class_ap50["pear"])  # no pear ground truth: undefined, not 0


def test_iou_062_counts_at_three_of_ten_thresholds():
    # IoU = 62/100: a match at 0.50, 0.55, 0.60 only -> AP@[.5:.95] = 3/10.
    truth = [gt((0, 0, 100, 100, "apple"))]
    preds = [det((0, 0, 100, 62, 0, 0.9))]
    m = evaluate(truth, preds, CLASSES)
    assert m.map50 == pytest.approx(1.0)
    assert m.map == pytest.approx(0.3)


def test_no_predictions_score_zero():
    truth = [gt((10, 10, 50, 50, "apple")), gt(name="empty.jpg")]
    m = evaluate(truth, [det(), det()], CLASSES)
    assert m.map50 == 0.0 and m.map == 0.0
    assert m.n_images == 2 and m.n_boxes == 1


def test_no_ground_truth_boxes_is_nan():
    m = evaluate([gt(), gt(name="b.jpg")], [det((1, 1, 20, 20, 0, 0.9)), det()], CLASSES)
    assert math.isnan(m.map) and math.isnan(m.map50)
    assert all(math.isnan(v) for v in m.per_class_ap.values())
    assert m.n_boxes == 0


def test_empty_input_is_nan():
    m = evaluate([], [], CLASSES)
    assert math.isnan(m.map) and m.n_images == 0


def test_mean_skips_classes_without_ground_truth():
    # apple perfect, pear has no gt but a (false) prediction: map is apple's AP alone.
    truth = [gt((10, 10, 50, 50, "apple"))]
    preds = [det((10, 10, 50, 50, 0, 0.9), (100, 100, 150, 150, 1, 0.95))]
    m = evaluate(truth, preds, CLASSES)
    assert m.map == pytest.approx(1.0)
    assert math.isnan(m.per_class_ap["pear"])


def test_per_class_values_are_averaged():
    # apple found, pear missed: mean of 1 and 0.
    truth = [gt((10, 10, 50, 50, "apple"), (100, 100, 150, 150, "pear"))]
    preds = [det((10, 10, 50, 50, 0, 0.9))]
    m = evaluate(truth, preds, CLASSES)
    assert m.per_class_ap50 == {"apple": pytest.approx(1.0), "pear": 0.0}
    assert m.map50 == pytest.approx(0.5)


def test_max_detections_caps_per_image():
    # 3 FPs ranked above the TP: with a cap of 3 per image the TP is never seen.
    truth = [gt((10, 10, 50, 50, "apple"))]
    fps = [(100 + 10 * i, 100, 110 + 10 * i, 110, 0, 0.9 - 0.01 * i) for i in range(3)]
    preds = [det(*fps, (10, 10, 50, 50, 0, 0.5))]
    assert evaluate(truth, preds, CLASSES).map50 == pytest.approx(0.25)
    assert evaluate(truth, preds, CLASSES, max_detections=3).map50 == 0.0


def test_evaluate_prints_nothing(capsys):
    evaluate([gt((10, 10, 50, 50, "apple"))], [det((10, 10, 50, 50, 0, 0.9))], CLASSES)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_unknown_ground_truth_class_names_the_file():
    with pytest.raises(LabelError, match=r"a\.jpg.*'plum'.*apple, pear"):
        evaluate([gt((10, 10, 50, 50, "plum"))], [det()], CLASSES)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="1 ground-truth images but 2"):
        evaluate([gt()], [det(), det()], CLASSES)


def test_prediction_class_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="class index 5"):
        evaluate([gt((10, 10, 50, 50, "apple"))], [det((10, 10, 50, 50, 5, 0.9))], CLASSES)
