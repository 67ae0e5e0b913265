"""Aggregation of box values to image values: empty, one and many boxes."""

from __future__ import annotations

import numpy as np
import pytest

from alloop.errors import ConfigError
from alloop.score.aggregate import EMPTY_IMAGE_SCORE, aggregate, check_aggregation, reduce_boxes

MANY = np.array([0.1, 0.4, 0.7, 0.2])


@pytest.mark.parametrize(
    ("how", "expected"),
    [("max", 0.7), ("mean", 0.35), ("sum", 1.4), ("topk1", 0.7), ("topk2", 0.55), ("topk10", 0.35)],
)
def test_many_boxes(how, expected):
    assert reduce_boxes(MANY, how) == pytest.approx(expected)


@pytest.mark.parametrize("how", ["max", "mean", "sum", "topk3"])
def test_one_box_is_its_value(how):
    assert reduce_boxes(np.array([0.3]), how) == pytest.approx(0.3)


@pytest.mark.parametrize("how", ["max", "mean", "sum", "topk3"])
def test_no_boxes_scores_the_documented_value_not_nan(how):
    assert EMPTY_IMAGE_SCORE == 0.0
    assert reduce_boxes(np.array([]), how) == 0.0
    np.testing.assert_array_equal(aggregate([np.array([]), np.array([])], how), [0.0, 0.0])


def test_pool_aggregation_is_float32_and_sum_is_scaled_by_the_pool_maximum():
    pool = [MANY, np.array([]), np.array([0.3])]
    out = aggregate(pool, "sum")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [1.0, 0.0, 0.3 / 1.4], rtol=1e-6)
    np.testing.assert_allclose(aggregate(pool, "max"), [0.7, 0.0, 0.3], rtol=1e-6)


def test_non_finite_box_values_rank_first_with_a_warning():
    with pytest.warns(RuntimeWarning, match="non-finite"):
        out = aggregate([np.array([0.2, np.nan]), np.array([0.5])], "mean")
    np.testing.assert_allclose(out, [0.6, 0.5], rtol=1e-6)


def test_empty_pool_gives_empty_array():
    assert aggregate([], "max").shape == (0,)


@pytest.mark.parametrize("how", ["median", "top3", "topk0", "topk", "topk-1", "MAX", ""])
def test_unknown_aggregation_lists_the_valid_ones(how):
    with pytest.raises(ConfigError, match=r"max, mean, sum or topkN"):
        check_aggregation(how)
