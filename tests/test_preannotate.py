"""The pre-annotation rule: boxes at or above the threshold, best first, at most max_boxes per image."""

from __future__ import annotations

import numpy as np
import pytest

from alloop.boxes import Detections
from alloop.config import ProjectConfig
from alloop.errors import ConfigError
from alloop.preannotate import DEFAULT_MAX_BOXES, DEFAULT_THRESHOLD, Preannotation, preannotation_boxes


def _detections(scores: list[float]) -> Detections:
    n = len(scores)
    boxes = np.array([[i, i, i + 10, i + 10] for i in range(n)], np.float32).reshape(n, 4)
    labels = np.array([i % 2 for i in range(n)], np.int64)
    s = np.array(scores, np.float32)
    probs = np.zeros((n, 3), np.float32)
    probs[np.arange(n), labels + 1] = s
    probs[:, 0] = 1 - s
    return Detections(boxes, labels, s, probs, s.copy())


def test_threshold_then_best_first_then_the_cap() -> None:
    det = _detections([0.2, 0.9, 0.55, 0.5, 0.7, 0.49])
    got = preannotation_boxes(det, ["apple", "leaf"], Preannotation(threshold=0.5, max_boxes=3))
    assert [round(b.score, 2) for b in got] == [0.9, 0.7, 0.55]
    assert [b.label for b in got] == ["leaf", "apple", "apple"] and got[0].x0 == 1.0
    everything = preannotation_boxes(det, ["apple", "leaf"], Preannotation(threshold=0.0, max_boxes=100))
    assert len(everything) == 6
    assert preannotation_boxes(_detections([]), ["apple", "leaf"]) == ()


@pytest.mark.parametrize("kwargs, match", [
    ({"threshold": 1.5}, "threshold must be a score in \\[0, 1\\], got 1.5"),
    ({"threshold": True}, "threshold must be a score"),
    ({"max_boxes": 0}, "max boxes must be a whole number ≥ 1, got 0"),
    ({"max_boxes": 2.5}, "max boxes must be a whole number"),
])
def test_bad_rules_are_refused(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        Preannotation(**kwargs)


def test_the_config_defaults_are_the_rule_defaults() -> None:
    cfg = ProjectConfig(image_root="x")
    assert (cfg.preannotation_threshold, cfg.preannotation_max_boxes) == (DEFAULT_THRESHOLD, DEFAULT_MAX_BOXES)
    with pytest.raises(ConfigError, match=r"\[preannotation\] max_boxes = 0"):
        ProjectConfig.from_toml({"project": {"image_root": "x"}, "preannotation": {"max_boxes": 0}}, where="t")
