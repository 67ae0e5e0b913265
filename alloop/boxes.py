"""The internal box and label types, and every box conversion in one place.

Internally a box is always ``xyxy`` in absolute pixels of the original image, with a class
*name* (formats map names to ids at their edge). Predictions travel as :class:`Detections`,
a bundle of numpy arrays, because scorers and selectors work on them in bulk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from alloop.errors import LabelError


@dataclass(frozen=True)
class Box:
    """One axis-aligned box: xyxy in absolute pixels, a class name, optional score/attributes."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str
    score: float | None = None
    # Format-specific extras that must survive a round trip (e.g. KITTI truncation/occlusion,
    # VOC difficult). Stored as sorted (key, value) pairs so the dataclass stays hashable.
    attributes: tuple[tuple[str, str], ...] = ()

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def as_xywh(self) -> tuple[float, float, float, float]:
        """COCO order: x, y, width, height."""
        return (self.x0, self.y0, self.x1 - self.x0, self.y1 - self.y0)


@dataclass(frozen=True)
class ImageAnnotation:
    """All boxes of one image. ``file_name`` is the posix path relative to the project image root.

    An ImageAnnotation with no boxes means "labeled, no objects" — not "unlabeled".
    """

    file_name: str
    width: int
    height: int
    boxes: tuple[Box, ...] = ()


@dataclass(frozen=True)
class LabelSet:
    """What one label file holds: the class names it uses and the annotations of its images."""

    classes: tuple[str, ...]
    images: tuple[ImageAnnotation, ...]
    source: str = ""  # the file or directory it was read from, for error messages


@dataclass(frozen=True)
class Detections:
    """A detector's output for one image, as arrays (N boxes, C project classes).

    - ``boxes``: (N, 4) float32, xyxy absolute pixels of the original image.
    - ``labels``: (N,) int64, index into the project's class list (0..C-1), the argmax foreground class.
    - ``scores``: (N,) float32, probability of ``labels`` (the detector's usual "score").
    - ``probs``: (N, C+1) float32, full softmax per box; column 0 is background, column k+1 is class k.
    - ``objectness``: (N,) float32 in [0, 1]: RPN objectness of the proposal, or 1 - p(background).

    What the detector saw before its score threshold, for scores that must see missed objects
    (:mod:`alloop.score.proposals`); None when the detector does not report it (older prediction
    files, TAO), an empty array when it reported no candidate region at all:

    - ``proposal_objectness``: (P,) float32, the RPN objectness of the image's top P proposals
      (after the RPN's own NMS, highest first), whether or not a box was kept from them.
    - ``proposal_foreground``: (P,) float32, 1 − p(background) the box head gives each of them.

    ``features``: (N, D) float32, a descriptor of each box from the detector's own feature maps (the
    torchvision trainer: D = 256, its proposal's RoIAlign over the FPN averaged over space), for
    box-level similarity (:mod:`alloop.select.ppal`); None when the detector does not report it.
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    probs: np.ndarray
    objectness: np.ndarray
    proposal_objectness: np.ndarray | None = None
    proposal_foreground: np.ndarray | None = None
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must be (N, 4), got {self.boxes.shape}")
        for name in ("labels", "scores", "objectness"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, boxes has {n}")
        if self.probs.ndim != 2 or len(self.probs) != n:
            raise ValueError(f"probs must be (N, C+1) with N={n}, got {self.probs.shape}")
        po, pf = self.proposal_objectness, self.proposal_foreground
        if (po is None) != (pf is None):
            raise ValueError("proposal_objectness and proposal_foreground come together (both or neither)")
        if po is not None and (po.ndim != 1 or po.shape != pf.shape):
            raise ValueError(f"proposal arrays must be (P,) alike, got {po.shape} and {pf.shape}")
        if self.features is not None and (self.features.ndim != 2 or len(self.features) != n):
            raise ValueError(f"features must be (N, D) with N={n}, got {self.features.shape}")

    @property
    def has_proposals(self) -> bool:
        """True when the detector reported its candidate regions (possibly none)."""
        return self.proposal_objectness is not None

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, num_classes: int) -> "Detections":
        """No detections, for a model that found nothing in an image."""
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            labels=np.zeros((0,), np.int64),
            scores=np.zeros((0,), np.float32),
            probs=np.zeros((0, num_classes + 1), np.float32),
            objectness=np.zeros((0,), np.float32),
        )

    def above(self, threshold: float) -> "Detections":
        """Only the boxes whose score is at least ``threshold``."""
        keep = self.scores >= threshold
        return Detections(
            self.boxes[keep], self.labels[keep], self.scores[keep], self.probs[keep], self.objectness[keep],
            self.proposal_objectness, self.proposal_foreground,
            None if self.features is None else self.features[keep],
        )


def xywh_to_xyxy(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    """COCO/Label Studio style (top-left + size) to corners."""
    return (x, y, x + w, y + h)


def xyxy_to_xywh(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    """Corners to COCO style (top-left + size)."""
    return (x0, y0, x1 - x0, y1 - y0)


def cxcywh_norm_to_xyxy(
    cx: float, cy: float, w: float, h: float, width: int, height: int
) -> tuple[float, float, float, float]:
    """YOLO style (normalised centre + size) to absolute corners."""
    return ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)


def xyxy_to_cxcywh_norm(
    x0: float, y0: float, x1: float, y1: float, width: int, height: int
) -> tuple[float, float, float, float]:
    """Absolute corners to YOLO style (normalised centre + size)."""
    return ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)


def percent_to_xyxy(
    x: float, y: float, w: float, h: float, width: int, height: int
) -> tuple[float, float, float, float]:
    """Label Studio style (top-left + size in percent of the original image) to absolute corners."""
    return (x / 100 * width, y / 100 * height, (x + w) / 100 * width, (y + h) / 100 * height)


def xyxy_to_percent(
    x0: float, y0: float, x1: float, y1: float, width: int, height: int
) -> tuple[float, float, float, float]:
    """Absolute corners to Label Studio style percentages."""
    return (x0 / width * 100, y0 / height * 100, (x1 - x0) / width * 100, (y1 - y0) / height * 100)


def check_box(box: Box, width: int, height: int, *, where: str, clip: bool = False) -> Box | None:
    """Validate one box against its image; return it (clipped when ``clip``), or raise LabelError.

    Non-finite coordinates and non-positive size are always errors. A box outside the image is an
    error unless ``clip`` is set, in which case it is clipped (and dropped, returning None, if
    nothing is left). ``where`` names the file and record for the message.
    """
    coords = (box.x0, box.y0, box.x1, box.y1)
    if not all(math.isfinite(c) for c in coords):
        raise LabelError(f"{where}: box {coords} has a non-finite coordinate; fix or delete that annotation")
    if box.x1 <= box.x0 or box.y1 <= box.y0:
        raise LabelError(
            f"{where}: box {coords} has non-positive width or height; fix or delete that annotation"
        )
    # Half a pixel of slack: tools round percentages and centres.
    tol = 0.5
    outside = box.x0 < -tol or box.y0 < -tol or box.x1 > width + tol or box.y1 > height + tol
    if outside and not clip:
        raise LabelError(
            f"{where}: box {coords} lies outside the {width}x{height} image; "
            "fix the annotation or pass --clip-boxes to clip it"
        )
    x0, y0 = min(max(box.x0, 0.0), width), min(max(box.y0, 0.0), height)
    x1, y1 = min(max(box.x1, 0.0), width), min(max(box.y1, 0.0), height)
    if x1 - x0 < 1e-6 or y1 - y0 < 1e-6:
        return None
    if (x0, y0, x1, y1) == coords:
        return box
    return Box(x0, y0, x1, y1, box.label, box.score, box.attributes)


def detections_to_boxes(det: Detections, classes: tuple[str, ...] | list[str]) -> tuple[Box, ...]:
    """Predictions as Box values (for export as pre-annotations)."""
    return tuple(
        Box(float(b[0]), float(b[1]), float(b[2]), float(b[3]), classes[int(lab)], float(s))
        for b, lab, s in zip(det.boxes, det.labels, det.scores)
    )


__all__ = [
    "Box",
    "Detections",
    "ImageAnnotation",
    "LabelSet",
    "check_box",
    "cxcywh_norm_to_xyxy",
    "detections_to_boxes",
    "percent_to_xyxy",
    "xywh_to_xyxy",
    "xyxy_to_cxcywh_norm",
    "xyxy_to_percent",
    "xyxy_to_xywh",
]
