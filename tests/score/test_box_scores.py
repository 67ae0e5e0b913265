"""Box scores on fixed distributions, computed by hand (background is column 0)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alloop.score.boxes import (
    class_distribution,
    entropy,
    least_confidence,
    margin,
    objectness_least_confidence,
)

P = [0.2, 0.5, 0.3]  # background 0.2, class 0 0.5, class 1 0.3; K = 3 columns


def test_least_confidence_normalises_by_k_columns(make_detections):
    # (1 - 0.5) / (1 - 1/3) = 0.75
    assert least_confidence(make_detections([P]))[0] == pytest.approx(0.75)


def test_margin_is_one_minus_gap_of_top_two(make_detections):
    # 1 - (0.5 - 0.3) = 0.8
    assert margin(make_detections([P]))[0] == pytest.approx(0.8)


def test_entropy_normalised_by_log_k(make_detections):
    expected = -(0.2 * math.log(0.2) + 0.5 * math.log(0.5) + 0.3 * math.log(0.3)) / math.log(3)
    assert expected == pytest.approx(0.93723, abs=1e-5)
    assert entropy(make_detections([P]))[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("scorer", [least_confidence, margin, entropy])
def test_uniform_is_one_and_one_hot_is_zero(make_detections, scorer):
    values = scorer(make_detections([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    np.testing.assert_allclose(values, [1.0, 0.0, 0.0], atol=1e-6)
    assert values.dtype == np.float32


def test_one_class_detector_background_carries_the_uncertainty(make_detections):
    # p(background) = 0.9, p(apple) = 0.1: a near-background box is a confident box.
    det = make_detections([[0.9, 0.1], [0.5, 0.5]])
    lc, mg, ent = least_confidence(det), margin(det), entropy(det)
    np.testing.assert_allclose(lc, [0.2, 1.0], atol=1e-6)  # 0.1 / (1 - 1/2)
    np.testing.assert_allclose(mg, [0.2, 1.0], atol=1e-6)  # 1 - (0.9 - 0.1); equals LC for K = 2
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    np.testing.assert_allclose(ent, [h, 1.0], rtol=1e-6)


def test_objectness_least_confidence_is_one_minus_objectness_times_top_class(make_detections):
    # p(class | object) = [0.5, 0.3] / 0.8 -> max 0.625; 1 - 0.8 * 0.625 = 0.5
    det = make_detections([P, [1.0, 0.0, 0.0]], objectness=[0.8, 0.3])
    # second box: no foreground mass, class guess is uniform 1/2: 1 - 0.3 * 0.5 = 0.85
    np.testing.assert_allclose(objectness_least_confidence(det), [0.5, 0.85], rtol=1e-6)


def test_objectness_least_confidence_equals_one_minus_score_when_objectness_is_foreground_mass(
    make_detections,
):
    # With objectness = 1 - p(bg), objectness * p(top | object) = p(top) = the detector's score.
    det = make_detections([P, [0.6, 0.1, 0.3]])
    np.testing.assert_allclose(objectness_least_confidence(det), 1.0 - det.scores, rtol=1e-6)


def test_dirty_rows_are_cleaned_before_scoring(make_detections):
    det = make_detections([[np.nan, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 3.0, 1.0]])
    np.testing.assert_allclose(class_distribution(det), [[0, 0.5, 0.5], [1 / 3] * 3, [0, 0.75, 0.25]])
    np.testing.assert_allclose(margin(det), [1.0, 1.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(entropy(det)[1], 1.0, atol=1e-6)  # no mass left: maximally uncertain


@pytest.mark.parametrize("scorer", [least_confidence, margin, entropy, objectness_least_confidence])
def test_no_boxes_gives_empty_array(make_detections, scorer):
    from alloop.boxes import Detections

    values = scorer(Detections.empty(2))
    assert values.shape == (0,)
