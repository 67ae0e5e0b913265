"""YOLOv4 anchors: the default small-object set, IoU k-means on labeled boxes, TAO's anchor strings."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

# Anchors (w, h) at the network's input size, smallest first: the MinneApple tutorial's, shrunk for
# apples of 12-42 px in 704x1280 inputs. ``anchors = "kmeans"`` fits them to the labeled boxes instead.
DEFAULT_ANCHORS: tuple[tuple[float, float], ...] = (
    (15.64, 12.00), (12.71, 18.00), (17.60, 22.00),
    (20.53, 21.00), (25.42, 20.00), (22.49, 29.00),
    (29.33, 27.00), (32.27, 35.00), (41.07, 42.00),
)


def _wh_iou(w: np.ndarray, h: np.ndarray, cw: np.ndarray, ch: np.ndarray) -> np.ndarray:
    inter = np.minimum(w[:, None], cw[None, :]) * np.minimum(h[:, None], ch[None, :])
    return inter / (w[:, None] * h[:, None] + cw[None, :] * ch[None, :] - inter)


def kmeans_anchors(
    sizes: np.ndarray, *, output_width: int, output_height: int, k: int = 9, seed: int = 0,
    max_steps: int = 1000, restarts: int = 5,
) -> tuple[tuple[float, float], ...]:
    """Anchor (w, h) pairs at the network input size, smallest area first.

    ``sizes``: (N, 2) box width and height as fractions of their image. Assign each box to the
    anchor of highest IoU (boxes and anchors centred together), move each anchor to the median of
    its boxes, repeat until nothing moves: the method of TAO's ``yolo_v4 kmeans`` (YOLOv2's anchor
    clustering, distance 1 − IoU). Unlike TAO's single random start, the starts are k-means++
    picks and the best of ``restarts`` runs (highest mean IoU of each box with its anchor) is kept.
    """
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    sizes = sizes[(sizes > 0).all(axis=1)]
    if len(sizes) <= k:
        raise ValueError(f"k-means anchors need more than {k} boxes, got {len(sizes)}")
    w, h = sizes[:, 0], sizes[:, 1]
    rng = np.random.default_rng(seed)
    best, best_fit = None, -1.0
    for _ in range(restarts):
        picks = [int(rng.integers(len(sizes)))]
        for _ in range(k - 1):  # k-means++: the next start far (in 1 - IoU) from those picked
            d = 1.0 - _wh_iou(w, h, w[picks], h[picks]).max(axis=1)
            nxt = rng.choice(len(sizes), p=d**2 / (d**2).sum()) if d.sum() > 0 else rng.integers(len(sizes))
            picks.append(int(nxt))
        cw, ch = w[picks].copy(), h[picks].copy()
        assign = np.full(len(sizes), -1)
        for _ in range(max_steps):
            new = _wh_iou(w, h, cw, ch).argmax(axis=1)
            if np.array_equal(new, assign):
                break
            assign = new
            for j in range(k):
                members = assign == j
                if members.any():  # an empty cluster keeps its centre
                    cw[j], ch[j] = np.median(w[members]), np.median(h[members])
        fit = float(_wh_iou(w, h, cw, ch).max(axis=1).mean())
        if fit > best_fit:
            best, best_fit = (cw, ch), fit
    cw, ch = best
    order = np.argsort(cw * ch, kind="stable")
    return tuple(
        (round(float(cw[j] * output_width), 2), round(float(ch[j] * output_height), 2)) for j in order
    )


def _anchor_string(pairs: Sequence[tuple[float, float]]) -> str:
    return "[" + ", ".join(f"({w:.2f}, {h:.2f})" for w, h in pairs) + "]"


def anchor_shapes(pairs: Sequence[tuple[float, float]]) -> dict[str, str]:
    """TAO's three anchor strings from 9 (w, h) pairs sorted small to big."""
    pairs = sorted(pairs, key=lambda p: p[0] * p[1])
    return {"small": _anchor_string(pairs[0:3]), "mid": _anchor_string(pairs[3:6]),
            "big": _anchor_string(pairs[6:9])}



_PAIR = re.compile(r"\(\s*([0-9.eE+-]+)\s*,\s*([0-9.eE+-]+)\s*\)")


def anchors_from_shapes(shapes: Mapping[str, str]) -> tuple[tuple[float, float], ...]:
    """The 9 (w, h) pairs of TAO's three anchor strings (:func:`anchor_shapes`), smallest area first."""
    pairs = [(float(w), float(h)) for name in ("small", "mid", "big") for w, h in _PAIR.findall(shapes[name])]
    if len(pairs) != 9:
        raise ValueError(f"expected 9 anchors in {dict(shapes)}, found {len(pairs)}")
    return tuple(sorted(pairs, key=lambda p: p[0] * p[1]))
