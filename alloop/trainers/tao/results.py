"""What TAO writes: saved models by epoch, the per-epoch training log, inference boxes."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alloop.boxes import Detections

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
    """Scored boxes of one image (``Box`` with ``score``) as Detections, highest score first.

    TAO gives one confidence ``p`` per box, so ``probs`` is ``p`` for the box's class, ``1 − p``
    for background (column 0) and 0 elsewhere; ``objectness = p``. ``hflip``: the boxes are on the
    mirrored image and are mapped back. Boxes are clipped to the image; empty ones are dropped.
    """
    index = {c: i for i, c in enumerate(classes)}
    rows = []
    for b in boxes:
        x0, y0, x1, y1 = float(b.x0), float(b.y0), float(b.x1), float(b.y1)
        if hflip:
            x0, x1 = width - x1, width - x0
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        p = float(b.score) if b.score is not None else 0.0
        if x1 - x0 <= 0 or y1 - y0 <= 0 or not p >= score_threshold:
            continue
        rows.append((x0, y0, x1, y1, index[b.label], min(max(p, 0.0), 1.0)))
    if not rows:
        return Detections.empty(len(classes))
    rows.sort(key=lambda r: -r[5])
    arr = np.array(rows, dtype=np.float64)
    labels = arr[:, 4].astype(np.int64)
    scores = arr[:, 5].astype(np.float32)
    probs = np.zeros((len(rows), len(classes) + 1), np.float32)
    probs[:, 0] = 1.0 - scores
    probs[np.arange(len(rows)), labels + 1] = scores
    return Detections(arr[:, :4].astype(np.float32), labels, scores, probs, scores.copy())



def validation_map50(history: Sequence[Mapping[str, float]], epoch: int) -> float | None:
    for row in history:
        k = map_key(row)
        if k and int(row.get("epoch", -1)) == epoch:
            return float(row[k])
    return None

