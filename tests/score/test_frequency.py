"""Object frequency on a small pool (Lightly: 1 per class, 0.25 per further box, scaled into [0.9, 1])."""

from __future__ import annotations

import numpy as np
import pytest

from alloop.boxes import Detections
from alloop.score.frequency import object_count, object_frequency


@pytest.fixture
def pool(make_detections):
    crowded = make_detections([[0.1, 0.9, 0.0]] * 3 + [[0.1, 0.0, 0.9]])  # 3× class 0, 1× class 1
    single = make_detections([[0.1, 0.9, 0.0]])
    unsure = make_detections([[0.7, 0.3, 0.0], [0.8, 0.0, 0.2]])  # scores 0.3 and 0.2
    return [crowded, single, unsure, Detections.empty(2)]


def test_object_count(pool):
    counts = [object_count(d, confidence_threshold=0.5) for d in pool]
    assert counts == [1 + 2 * 0.25 + 1, 1.0, 0.0, 0.0]


def test_scaled_into_lightly_range_and_low_scores_do_not_count(pool):
    # counts 2.5, 1, 0, 0 -> 0.9 + 0.1 * count / 2.5
    out = object_frequency(pool, confidence_threshold=0.5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [1.0, 0.94, 0.9, 0.9], rtol=1e-6)


def test_lower_threshold_counts_the_unsure_boxes(pool):
    out = object_frequency(pool, confidence_threshold=0.1)
    np.testing.assert_allclose(out, [1.0, 0.94, 0.98, 0.9], rtol=1e-6)  # unsure image: 2 classes -> 2


def test_a_tied_pool_scores_one_everywhere_like_lightly(make_detections):
    np.testing.assert_array_equal(object_frequency([Detections.empty(1)] * 3), [1.0, 1.0, 1.0])
    assert object_frequency([]).shape == (0,)
