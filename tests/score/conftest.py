"""Fixtures for the scorer tests: build Detections from plain lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from alloop.boxes import Detections

MakeDetections = Callable[..., Detections]


def _make_detections(
    probs: Sequence[Sequence[float]],
    *,
    boxes: Sequence[Sequence[float]] | None = None,
    scores: Sequence[float] | None = None,
    objectness: Sequence[float] | None = None,
) -> Detections:
    p = np.asarray(probs, np.float32).reshape(len(probs), -1)
    n = len(p)
    b = np.asarray(boxes, np.float32).reshape(n, 4) if boxes is not None else np.tile([0, 0, 10, 10], (n, 1))
    fg = p[:, 1:]
    labels = fg.argmax(axis=1) if fg.shape[1] else np.zeros(n, np.int64)
    s = np.asarray(scores, np.float32) if scores is not None else fg.max(axis=1, initial=0.0)
    o = np.asarray(objectness, np.float32) if objectness is not None else 1.0 - p[:, 0]
    return Detections(
        b.astype(np.float32), labels.astype(np.int64), s.astype(np.float32), p, o.astype(np.float32)
    )


@pytest.fixture(scope="session")
def make_detections() -> MakeDetections:
    """``make_detections(probs, boxes=..., scores=..., objectness=...)``; defaults: 10×10 boxes at the
    origin, label = argmax foreground column, score = its probability, objectness = 1 − p(background)."""
    return _make_detections
