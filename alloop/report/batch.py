"""The report's batch pieces: the selected images with the model's boxes, where the batch went, its scores."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alloop.boxes import Detections
from alloop.loop.batch import PREDICTED_CLASS_THRESHOLD
from alloop.predictions import PredictionsById, load_by_id
from alloop.project import Project
from alloop.report.classes import finite
from alloop.store import ImageRow, Store, TagMember

# Predicted boxes at or above this score count as "predicted objects" (the loop's cut-off for coral's
# predicted-class balance and box budgets).
PREDICTION_THRESHOLD = PREDICTED_CLASS_THRESHOLD
# Optional: one row per image, ``path,slice`` (a scene type, a site...); `alloop simulate` writes it
# from the ground truth's per-image "scene" so the report can show where each batch went.
SLICES_FILE = Path("simulation") / "slices.csv"


@dataclass(frozen=True)
class PredictedBox:
    """One of the current model's boxes on a selected image."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str
    score: float


@dataclass(frozen=True)
class BatchImage:
    """One selected image with what chose it."""

    image_id: int
    path: str
    file: Path  # absolute path on disk
    width: int
    height: int
    pick_order: int  # 1 = picked first
    score: float | None
    distance: float | None  # distance to the nearest labeled/already-picked image when it was picked
    boxes: tuple[PredictedBox, ...]
    # a term spec's pick: each term's share of the objective that chose it (alloop.select.compose)
    terms: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ScoreDistribution:
    """One uncertainty score over the scored pool and over the selected batch."""

    name: str
    pool_ids: np.ndarray  # (P,) int64 image ids of the scored images
    pool: np.ndarray  # (P,) float32, every scored image of the iteration (the batch included)
    selected: np.ndarray  # (k,) float32

    @property
    def selected_percentile(self) -> float:
        """Median percentile of the selected images' scores within the pool (0–100; ties count half)."""
        if not len(self.pool) or not len(self.selected):
            return math.nan
        ranks = [(float(np.mean(self.pool < s)) + 0.5 * float(np.mean(self.pool == s))) * 100 for s in self.selected]
        return float(np.median(ranks))


@dataclass(frozen=True)
class SliceShare:
    """One slice of the pool (e.g. a scene type): its share of the scored pool and of the batch."""

    name: str
    pool: int
    selected: int
    pool_share: float
    selected_share: float


@dataclass(frozen=True)
class BatchCoverage:
    """Where the batch went: picks on which the model kept no box (score ≥ 0.5), against the pool.

    A batch that avoids such images while the pool has many is the failure of issue 20: uncertainty
    that calls "the model sees nothing here" certain.
    """

    picks: int
    zero_detection_picks: int
    pool: int  # scored (predicted) images of the iteration
    zero_detection_pool: int
    slices: tuple[SliceShare, ...] = ()

    @property
    def zero_detection_pick_share(self) -> float:
        return self.zero_detection_picks / self.picks if self.picks else math.nan

    @property
    def zero_detection_pool_share(self) -> float:
        return self.zero_detection_pool / self.pool if self.pool else math.nan


def batch_images(project: Project, members: Sequence[TagMember], by_id: Mapping[int, ImageRow],
                 boxes: Mapping[int, tuple[PredictedBox, ...]],
                 terms: Mapping[str, Sequence[float]] | None = None) -> tuple[BatchImage, ...]:
    """The selected images in pick order, with the model's boxes on each (and each term's share of its pick)."""
    terms = terms or {}
    return tuple(
        BatchImage(
            image_id=m.image_id,
            path=m.path,
            file=project.image_root / m.path,
            width=by_id[m.image_id].width,
            height=by_id[m.image_id].height,
            pick_order=m.pick_order + 1,
            score=finite(m.score),
            distance=finite(m.distance),
            boxes=boxes.get(m.image_id, ()),
            terms={name: float(v[m.pick_order]) for name, v in terms.items() if m.pick_order < len(v)},
        )
        for m in members
    )


def load_detections(project: Project, iteration: int, notes: dict[str, str]) -> PredictionsById | dict[int, Detections]:
    """image id -> the iteration's predictions (empty at iteration 0 or when missing/unreadable, with a note)."""
    if iteration == 0:
        return {}
    path = project.predictions_file(iteration)
    if not path.exists():
        notes["batch-boxes"] = f"No predictions stored for iteration {iteration}: thumbnails show no boxes."
        return {}
    try:
        # Flat arrays: a Detections only for the images the report shows (a pool may hold a million).
        return load_by_id(path)
    except Exception as exc:  # noqa: BLE001 - a truncated npz raises BadZipFile, and it must not stop a step
        notes["batch-boxes"] = f"{project.relpath(path)} is unreadable ({exc}): thumbnails show no boxes."
        return {}


def batch_boxes(
    detections: Mapping[int, Detections], wanted: set[int], classes: Sequence[str]
) -> dict[int, tuple[PredictedBox, ...]]:
    """The current model's boxes (score ≥ threshold) on the selected images."""
    out = {}
    for image_id, det in detections.items():
        if image_id not in wanted:
            continue
        d = det.above(PREDICTION_THRESHOLD)
        out[image_id] = tuple(
            PredictedBox(float(b[0]), float(b[1]), float(b[2]), float(b[3]),
                         classes[int(c)] if 0 <= int(c) < len(classes) else f"class {int(c)}", float(s))
            for b, c, s in zip(d.boxes, d.labels, d.scores)
        )
    return out


def batch_coverage(
    project: Project, detections: PredictionsById | Mapping[int, Detections], selected: Sequence[int], by_id: Mapping[int, Any]
) -> BatchCoverage | None:
    """Zero-detection picks against the predicted pool, and slice shares when slices.csv names them."""
    if not detections:
        return None
    empty = set(detections.ids_without(PREDICTION_THRESHOLD).tolist())  # from the flat arrays
    # The batch was picked from the predicted images; its share compares with theirs.
    picks = [i for i in selected if i in detections]
    slices: tuple[SliceShare, ...] = ()
    path = project.artifacts / SLICES_FILE
    if path.exists():
        try:
            table = pd.read_csv(path, dtype=str)
            of = dict(zip(table["path"], table["slice"]))
        except (OSError, ValueError, KeyError, pd.errors.ParserError):
            of = {}
        slice_of = {i: of.get(by_id[i].path) for i in detections if i in by_id}
        in_pool = Counter(v for v in slice_of.values() if isinstance(v, str))
        in_batch = Counter(slice_of.get(i) for i in picks)
        n_pool, n_sel = len(detections), len(picks)
        slices = tuple(
            SliceShare(name, in_pool[name], in_batch[name], in_pool[name] / n_pool,
                       in_batch[name] / n_sel if n_sel else math.nan)
            for name in sorted(in_pool)
        )
    return BatchCoverage(len(picks), sum(i in empty for i in picks), len(detections), len(empty), slices)


def score_distribution(
    store: Store, iteration: int, spec: str | None, selected: Sequence[int], notes: dict[str, str]
) -> tuple[ScoreDistribution | None, tuple[str, ...]]:
    """The batch's score over the scored pool and the batch, and the names of the other stored scores."""
    names = store.score_names(iteration)
    if not names:
        notes["scores"] = (
            "No uncertainty scores at iteration 0: there is no model yet, the first batch is picked for diversity."
            if iteration == 0
            else f"No scores stored for iteration {iteration}."
        )
        return None, ()
    name = spec if spec in names else names[0]
    values = store.scores(iteration, name)
    ids = np.array(sorted(values), np.int64)
    pool = np.array([values[i] for i in ids.tolist()], np.float32)
    chosen = np.array([values[i] for i in selected if i in values], np.float32)
    return ScoreDistribution(name, ids, pool, chosen), tuple(n for n in names if n != name)
