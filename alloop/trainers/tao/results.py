"""What TAO writes: saved models by epoch, the per-epoch training log, inference boxes."""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alloop.boxes import Detections
from alloop.errors import TrainerError

log = logging.getLogger(__name__)

EPOCH_FILE = re.compile(r"_epoch_(\d+)\.(hdf5|tlt)$")


def find_checkpoints(weights_dir: Path) -> dict[int, Path]:
    """TAO's saved models by epoch: ``<prefix>_<arch>_epoch_NNN.hdf5`` (or ``.tlt``)."""
    found: dict[int, Path] = {}
    if weights_dir.is_dir():
        for p in sorted(weights_dir.iterdir()):
            m = EPOCH_FILE.search(p.name)
            if m and p.is_file():
                found[int(m.group(1))] = p
    return found


def read_training_log(path: Path) -> list[dict[str, float]]:
    """TAO's per-epoch CSV (epoch, loss, lr, mAP when validated...) as numeric rows; [] when absent."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            row = {}
            for k, v in rec.items():
                try:
                    value = float(v)
                except (TypeError, ValueError):
                    continue
                if math.isfinite(value) and k:
                    row[k.strip()] = value
            if row:
                rows.append(row)
    return rows


def map_key(row: Mapping[str, float]) -> str | None:
    for k in row:
        if k.lower() in ("map", "val_map", "map@0.5"):
            return k
    return None


def detections_from_boxes(boxes: Sequence[Any], classes: Sequence[str], width: int, height: int,
                          *, hflip: bool = False, score_threshold: float = 0.0) -> Detections:
    """Scored boxes of one image (``Box`` with ``score``, TAO's lines) as Detections, highest score first.

    TAO's NMS runs per class (``combined_non_max_suppression``) on scores s_k = σ(objectness)·σ(class k)
    (``decode_layer.py``), so one predicted box comes out once per class above the threshold, with
    the same coordinates. Those lines are merged into one box: ``probs`` holds each class's s_k and
    background 1 − Σ s_k (renormalised when Σ s_k > 1, as YOLOv4's classes are independent
    sigmoids); ``labels`` is the class of the highest s_k, ``scores`` that s_k (TAO's confidence) and
    ``objectness`` the foreground mass min(Σ s_k, 1). A box seen for one class only gets
    ``[1 − p, …, p, …]`` as before. ``hflip``: the boxes are on the mirrored image and are mapped
    back. Boxes are clipped to the image (TAO clips to its letterboxed canvas); empty ones dropped.
    """
    index = {c: i for i, c in enumerate(classes)}
    merged: dict[tuple[float, float, float, float], np.ndarray] = {}
    for b in boxes:
        p = float(b.score) if b.score is not None else 0.0
        if not p >= score_threshold:
            continue
        # One prediction's per-class lines share their coordinates exactly (same decode, same clip).
        key = (round(float(b.x0), 3), round(float(b.y0), 3), round(float(b.x1), 3), round(float(b.y1), 3))
        per_class = merged.setdefault(key, np.zeros(len(classes), np.float64))
        k = index[b.label]
        per_class[k] = max(per_class[k], min(max(p, 0.0), 1.0))
    rows, dists = [], []
    for (x0, y0, x1, y1), per_class in merged.items():
        if hflip:
            x0, x1 = width - x1, width - x0
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            continue
        rows.append((x0, y0, x1, y1))
        dists.append(per_class)
    if not rows:
        return Detections.empty(len(classes))
    per_class = np.array(dists)
    labels = per_class.argmax(axis=1)
    scores = per_class[np.arange(len(rows)), labels]
    mass = per_class.sum(axis=1)
    fg = np.where((mass > 1.0)[:, None], per_class / np.maximum(mass, 1e-12)[:, None], per_class)
    probs = np.concatenate([1.0 - fg.sum(axis=1, keepdims=True), fg], axis=1).clip(0.0, 1.0)
    order = np.argsort(-scores, kind="stable")
    return Detections(
        np.array(rows, np.float32)[order],
        labels[order].astype(np.int64),
        scores[order].astype(np.float32),
        probs[order].astype(np.float32),
        np.minimum(mass, 1.0)[order].astype(np.float32),
    )


def check_run_finished(checkpoints: Mapping[int, Path], history: Sequence[Mapping[str, float]],
                       num_epochs: int, *, spec: str, log_file: Path) -> None:
    """Refuse a run that ended before ``num_epochs`` although TAO reported success.

    TAO's training ends with exit 0 and "Execution status: PASS" when Keras' ``TerminateOnNaN``
    stops it (``yolov4_model.py``) or when it is interrupted (``scripts/train.py`` catches
    KeyboardInterrupt and SystemExit; the entrypoint counts an interrupted command as passed). Early
    stopping, if a custom spec asks for it, is the one legitimate early end.
    """
    last = max(checkpoints)
    if last >= num_epochs:
        return
    if re.search(r"^\s*early_stopping\b", spec, re.MULTILINE):
        log.warning("tao: training stopped early at epoch %d of %d (early_stopping in the spec)",
                    last, num_epochs)
        return
    ran = max([int(row["epoch"]) for row in history if "epoch" in row] or [last])
    text = log_file.read_text(encoding="utf-8", errors="replace") if log_file.is_file() else ""
    if "Invalid loss, terminating training" in text:
        reason = ("the loss became NaN and Keras' TerminateOnNaN ended it; lower max_learning_rate (or check "
                  "the labels) and run the step again")
    else:
        reason = "it was interrupted; run the step again"
    raise TrainerError(
        f"TAO train stopped after epoch {ran} of {num_epochs} (last saved model: epoch {last}) and still "
        f"reported success: {reason}; see {log_file}"
    )


def pick_checkpoint(checkpoints: Mapping[int, Path], history: Sequence[Mapping[str, float]], how: str) -> int:
    """The epoch of the model to use: the ``last`` saved, or the saved one of ``best`` TAO validation mAP."""
    last = max(checkpoints)
    if how == "last":
        return last
    scored = [(row[k], int(row.get("epoch", -1))) for row in history if (k := map_key(row))]
    scored = [(m, e) for m, e in scored if e in checkpoints]  # TAO validates every epoch, saves fewer
    if not scored:
        log.warning("tao: no validation mAP for a saved epoch in TAO's log; using the last model")
        return last
    return max(scored)[1]


def validation_map50(history: Sequence[Mapping[str, float]], epoch: int) -> float | None:
    for row in history:
        k = map_key(row)
        if k and int(row.get("epoch", -1)) == epoch:
            return float(row[k])
    return None

