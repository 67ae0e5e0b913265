"""Detection mAP, computed by pycocotools' COCOeval (never hand-rolled).

Ground truth and predictions are turned into in-memory COCO objects (no files), matched by
position: ``predictions[i]`` are the detections of ``ground_truth[i]``. Class ``k`` of the
project's class list is COCO category ``k + 1``.

Undefined values are NaN, never 0: a class with no ground-truth box has no AP (its entry is NaN
and it is left out of the means), and when no class has a ground-truth box ``map``/``map50`` are
NaN too. A class with ground truth but no prediction has AP 0.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alloop.boxes import Detections, ImageAnnotation
from alloop.errors import LabelError

# COCO's standard cap is 100 detections per image and category; crowded scenes (fruit, cells)
# can hold more objects than that, so the cap is a parameter.
DEFAULT_MAX_DETECTIONS = 100


@dataclass(frozen=True)
class Metrics:
    """COCO box metrics over a set of images (NaN where undefined, see the module docstring)."""

    map50: float  # COCO AP at IoU 0.5, mean over classes that have ground truth
    map: float  # COCO AP averaged over IoU 0.50:0.05:0.95, mean over classes that have ground truth
    per_class_ap50: dict[str, float]  # every project class; NaN for a class with no ground truth
    per_class_ap: dict[str, float]
    n_images: int  # images evaluated (labeled images, with or without boxes)
    n_boxes: int  # ground-truth boxes

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """The scalar metrics as a flat mapping, e.g. for a training history entry."""
        return {
            f"{prefix}map": self.map,
            f"{prefix}map50": self.map50,
            f"{prefix}n_images": float(self.n_images),
            f"{prefix}n_boxes": float(self.n_boxes),
        }


def evaluate(
    ground_truth: Sequence[ImageAnnotation],
    predictions: Sequence[Detections],
    classes: Sequence[str],
    *,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
) -> Metrics:
    """COCO mAP@0.5 and mAP@[.5:.95] of ``predictions`` against ``ground_truth`` (same order).

    Formula: per class, the area under the 101-point interpolated precision/recall curve
    (Lin et al. 2014, the COCO detection challenge; pycocotools' COCOeval), averaged over classes
    that have ground truth and, for ``map``, over the ten IoU thresholds 0.50:0.05:0.95.
    """
    if len(ground_truth) != len(predictions):
        raise ValueError(
            f"evaluate: {len(ground_truth)} ground-truth images but {len(predictions)} prediction sets; "
            "pass one Detections per ImageAnnotation, in the same order"
        )
    if max_detections < 1:
        raise ValueError(f"evaluate: max_detections must be at least 1, got {max_detections}")
    classes = list(classes)
    cat_of = {name: k + 1 for k, name in enumerate(classes)}
    n_boxes = sum(len(a.boxes) for a in ground_truth)

    images, gt_anns, dt_anns = [], [], []
    for img_id, (ann, det) in enumerate(zip(ground_truth, predictions), start=1):
        images.append({"id": img_id, "file_name": ann.file_name, "width": ann.width, "height": ann.height})
        for box in ann.boxes:
            if box.label not in cat_of:
                raise LabelError(
                    f"{ann.file_name}: box class '{box.label}' is not a project class "
                    f"({', '.join(classes)}); add the class or fix the label"
                )
            x, y, w, h = box.as_xywh()
            gt_anns.append(_ann(len(gt_anns) + 1, img_id, cat_of[box.label], x, y, w, h))
        if len(det) and (det.labels.min() < 0 or det.labels.max() >= len(classes)):
            raise ValueError(
                f"evaluate: predictions for {ann.file_name} have class index {int(det.labels.max())}, "
                f"outside 0..{len(classes) - 1}"
            )
        rows = zip(det.boxes.tolist(), det.labels.tolist(), det.scores.tolist())
        for (x0, y0, x1, y1), label, score in rows:
            d = _ann(len(dt_anns) + 1, img_id, int(label) + 1, x0, y0, x1 - x0, y1 - y0)
            d["score"] = float(score)
            dt_anns.append(d)

    nan = float("nan")
    gt_count = {k + 1: 0 for k in range(len(classes))}
    for a in gt_anns:
        gt_count[a["category_id"]] += 1
    if n_boxes == 0:
        per_class = {name: nan for name in classes}
        return Metrics(nan, nan, dict(per_class), dict(per_class), len(ground_truth), 0)

    precision = _coco_precision(images, gt_anns, dt_anns, len(classes), max_detections)
    # precision: (T iou thresholds, R recall thresholds, K classes); -1 where a class has no gt.
    per_class_ap50: dict[str, float] = {}
    per_class_ap: dict[str, float] = {}
    for k, name in enumerate(classes):
        if gt_count[k + 1] == 0:
            per_class_ap50[name] = per_class_ap[name] = nan
            continue
        per_class_ap50[name] = float(np.mean(precision[0, :, k]))
        per_class_ap[name] = float(np.mean(precision[:, :, k]))
    return Metrics(
        map50=_nanmean(per_class_ap50.values()),
        map=_nanmean(per_class_ap.values()),
        per_class_ap50=per_class_ap50,
        per_class_ap=per_class_ap,
        n_images=len(ground_truth),
        n_boxes=n_boxes,
    )


def _ann(ann_id: int, img_id: int, cat_id: int, x: float, y: float, w: float, h: float) -> dict:
    """One COCO annotation record (area from the box, never crowd)."""
    return {
        "id": ann_id,
        "image_id": img_id,
        "category_id": cat_id,
        "bbox": [float(x), float(y), float(w), float(h)],
        "area": float(max(w, 0.0) * max(h, 0.0)),
        "iscrowd": 0,
    }


def _coco_precision(
    images: list[dict], gt_anns: list[dict], dt_anns: list[dict], n_classes: int, max_detections: int
) -> np.ndarray:
    """Run COCOeval (bbox, all areas) silently; return its precision array as (T, R, K)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    categories = [{"id": k + 1, "name": str(k + 1)} for k in range(n_classes)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gt_anns, "categories": categories}
        gt.createIndex()
        # Built directly rather than through COCO.loadRes, which fails on an empty result list.
        dt = COCO()
        dt.dataset = {"images": images, "annotations": dt_anns, "categories": categories}
        dt.createIndex()
        coco_eval = COCOeval(gt, dt, iouType="bbox")
        coco_eval.params.imgIds = [im["id"] for im in images]
        coco_eval.params.catIds = [c["id"] for c in categories]
        # One cap only: COCOeval sorts maxDets and evaluates under the largest.
        coco_eval.params.maxDets = [max_detections]
        coco_eval.evaluate()
        coco_eval.accumulate()
    precision = coco_eval.eval["precision"]  # (T, R, K, A, M)
    area_all = 0  # params.areaRngLbl[0] == "all"
    return precision[:, :, :, area_all, -1]


def _nanmean(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


__all__ = ["DEFAULT_MAX_DETECTIONS", "Metrics", "evaluate"]
