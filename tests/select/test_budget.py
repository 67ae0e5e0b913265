"""Budgets in boxes: estimated cost per image and the prefix of the pick order that fits."""

from __future__ import annotations

import numpy as np
import pytest

from alloop.errors import SelectionError
from alloop.select.budget import box_costs, prefix_within


def test_costs_are_predicted_boxes_corrected_by_the_labeled_set():
    costs, r = box_costs(np.array([2, 4, 0, 6]), labeled_boxes_per_image=6.0)
    assert r == pytest.approx(2.0)  # the model sees half the boxes the labels show
    assert costs.tolist() == [4.0, 8.0, 1.0, 12.0]  # an empty-looking image still costs one look


def test_without_labels_or_predictions_the_counts_are_taken_as_they_are():
    assert box_costs(np.array([3, 1]), None)[1] == 1.0
    costs, r = box_costs(np.zeros(3), 5.0)
    assert r == 1.0 and costs.tolist() == [1.0, 1.0, 1.0]


def test_prefix_within_budget_follows_the_pick_order():
    costs = np.array([5.0, 1.0, 3.0, 2.0])
    assert prefix_within(costs, np.array([1, 3, 2, 0]), 6) == 3  # 1 + 2 + 3 = 6 fits, + 5 does not
    assert prefix_within(costs, np.array([0, 1]), 2) == 1  # never an empty batch
    assert prefix_within(costs, np.array([1, 3]), 100) == 2


def test_bad_budget():
    with pytest.raises(SelectionError, match="positive number of boxes"):
        prefix_within(np.ones(2), np.array([0]), 0)
