"""Everything one iteration's report shows, gathered from the project into a frozen :class:`ReportData`.

No HTML and no figures here: tests check the numbers directly. Every optional piece (a model, scores,
predictions, cached embeddings, held-out metrics, a simulation baseline) may be missing; the
gatherer then leaves it empty and adds a one-line note saying why, so a report never stops a step.
The report of iteration ``n`` shows the project as it was at ``n``: labels imported later are left out.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alloop.boxes import Detections, ImageAnnotation
from alloop.embed.cache import load_cached_embeddings
from alloop.errors import ProjectError
from alloop.loop.batch import PREDICTED_CLASS_THRESHOLD
from alloop.loop.records import (
    EvaluateInfo,
    TrainInfo,
    embedder_of,
    info_of,
    read_stages,
    stage_kinds,
    tag_name,
)
from alloop.predictions import load_predictions
from alloop.project import Project
from alloop.store import ImageRow, Iteration, Store, now

log = logging.getLogger("alloop")

# Predicted boxes at or above this score count as "predicted objects" (the loop's cut-off for coral's
# predicted-class balance and box budgets).
PREDICTION_THRESHOLD = PREDICTED_CLASS_THRESHOLD
# The map stays readable and fast for huge pools: pool points beyond this are subsampled
# (labeled and selected images are always drawn).
MAP_MAX_POINTS = 20_000
SIMULATION_CURVES = Path("simulation") / "curves.csv"  # under the project's artifacts/
# Optional: one row per image, ``path,slice`` (a scene type, a site...); `alloop simulate` writes it
# from the ground truth's per-image "scene" so the report can show where each batch went.
SLICES_FILE = Path("simulation") / "slices.csv"


@dataclass(frozen=True)
class Summary:
    """The headline numbers."""

    pool: int  # images registered and readable
    labeled: int  # labeled as of this iteration (train + held-out)
    train: int
    val: int
    selected: int  # size of this iteration's batch
    method: str | None
    score_spec: str | None
    map50: float | None
    map: float | None
    previous_map50: float | None  # the last earlier iteration with a measured mAP
    previous_map: float | None
    previous_iteration: int | None
    status: str  # running | done

    @property
    def budget_used(self) -> float:
        """Share of the pool labeled so far."""
        return self.labeled / self.pool if self.pool else 0.0

    @property
    def budget_after(self) -> float:
        """Share of the pool labeled once this batch is labeled."""
        return (self.labeled + self.selected) / self.pool if self.pool else 0.0


@dataclass(frozen=True)
class CurvePoint:
    """One iteration on the learning curve."""

    iteration: int
    n_labeled: int
    map50: float | None
    map: float | None


@dataclass(frozen=True)
class BaselinePoint:
    """The random baseline of a simulation at one labeled count: mean and std over seeds."""

    n_labeled: int
    map50_mean: float
    map50_std: float
    map_mean: float
    map_std: float
    seeds: int


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


@dataclass(frozen=True, eq=False)
class EmbeddingMap:
    """A 2-D projection of the pool's embeddings with each point's status."""

    method: str  # "PCA" or "UMAP"
    embedder: str  # the cache key
    points: np.ndarray  # (M, 2) float32
    image_ids: np.ndarray  # (M,) int64
    status: np.ndarray  # (M,) str: "pool" | "labeled" | "selected"
    subsampled_from: int  # pool size before subsampling (== M when not subsampled)


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


@dataclass(frozen=True)
class ClassRow:
    """Per class: labeled boxes, predicted boxes, held-out AP now and in the previous measurement."""

    name: str
    labeled: int
    predicted: int
    ap50: float | None
    ap: float | None
    previous_ap50: float | None


@dataclass(frozen=True)
class StageTiming:
    """How long one stage of the iteration took."""

    stage: str
    seconds: float | None
    finished_at: str | None


@dataclass(frozen=True, eq=False)
class ReportData:
    """What the report of one iteration shows; built by :func:`gather_report_data`."""

    project_name: str
    project_root: str
    iteration: int
    generated_at: str
    iterations: tuple[int, ...]  # iterations that have a report (this one included), for navigation
    summary: Summary
    curve: tuple[CurvePoint, ...]
    baseline: tuple[BaselinePoint, ...]
    batch: tuple[BatchImage, ...]
    batch_options: Mapping[str, Any]
    scores: ScoreDistribution | None
    other_scores: tuple[str, ...]  # further scores stored for this iteration (in report.json/scores.csv)
    embedding_map: EmbeddingMap | None
    classes: tuple[ClassRow, ...]
    config: Mapping[str, Any]  # this iteration's settings + the project config
    timings: tuple[StageTiming, ...]
    training: tuple[Mapping[str, float], ...]  # per-epoch history of this iteration's training
    image_paths: Mapping[int, str]  # image id -> path relative to the image root, for the CSV files
    notes: Mapping[str, str] = field(default_factory=dict)  # section id -> why it is empty or partial
    coverage: BatchCoverage | None = None  # None before a model has predicted on the pool


def gather_report_data(project: Project, iteration: int) -> ReportData:
    """Collect the report of ``iteration`` from the project's store and artifacts."""
    store = project.store
    all_iterations = store.iterations()
    record = next((it for it in all_iterations if it.n == iteration), None)
    if record is None:
        known = ", ".join(str(it.n) for it in all_iterations) or "none yet"
        raise ProjectError(f"{project.root}: no iteration {iteration} (iterations: {known}); pass --iteration N")
    notes: dict[str, str] = {}
    images = [r for r in store.images() if r.state == "ok"]
    by_id = {r.id: r for r in store.images()}
    label_iteration = _label_iterations(store)
    labeled_now = {i for i, n in label_iteration.items() if n <= iteration}
    annotations = store.annotations()
    splits = {row.id: split for row, _, split in annotations}
    classes = store.classes()

    members = store.tag_members(tag_name(iteration))
    tag = store.tag(tag_name(iteration))
    if not members:
        notes["batch"] = f"iteration {iteration} has not selected a batch yet (tag {tag_name(iteration)} is empty)."
    selected_ids = [m.image_id for m in members]

    earlier = [it for it in all_iterations if it.n <= iteration]
    previous = next((it for it in reversed(earlier) if it.n < iteration and it.map50 is not None), None)
    summary = Summary(
        pool=len(images),
        labeled=len(labeled_now),
        train=sum(1 for i in labeled_now if splits.get(i) == "train"),
        val=sum(1 for i in labeled_now if splits.get(i) == "val"),
        selected=len(members),
        method=(tag.method if tag else None) or record.method,
        # The tag knows the score its batch was picked with, even after a re-selection.
        score_spec=(tag.options.get("score") if tag else None) or record.score_spec,
        map50=record.map50,
        map=record.map,
        previous_map50=previous.map50 if previous else None,
        previous_map=previous.map if previous else None,
        previous_iteration=previous.n if previous else None,
        status=record.status,
    )

    curve = tuple(
        CurvePoint(it.n, int(it.n_labeled or 0), it.map50, it.map)
        for it in earlier
        if it.n > 0 and (it.map50 is not None or it.map is not None)
    )
    if not curve:
        notes["learning-curve"] = (
            "No model trained yet: the curve starts after the first `alloop step`."
            if iteration == 0
            else "No held-out mAP measured yet (no labeled images in the held-out split; see val_fraction)."
        )
    baseline = _random_baseline(project.artifacts / SIMULATION_CURVES, notes)

    detections = _load_detections(project, iteration, notes)
    predictions = _batch_boxes(detections, set(selected_ids), classes)
    batch = tuple(
        BatchImage(
            image_id=m.image_id,
            path=m.path,
            file=project.image_root / m.path,
            width=by_id[m.image_id].width,
            height=by_id[m.image_id].height,
            pick_order=m.pick_order + 1,
            score=_finite(m.score),
            distance=_finite(m.distance),
            boxes=predictions.get(m.image_id, ()),
        )
        for m in members
    )

    scores, other_scores = _score_distribution(store, iteration, summary.score_spec, selected_ids, notes)
    coverage = _batch_coverage(project, detections, selected_ids, by_id)
    embedding_map = _embedding_map(project, iteration, images, labeled_now, set(selected_ids), notes)
    class_rows = _class_rows(iteration, classes, annotations, labeled_now, detections, record, previous, notes)

    stages = read_stages(iteration, store.stages(iteration))  # in the order they run
    timings = [StageTiming(name, r.seconds, r.finished_at) for name, r in stages.items()]
    timings += [StageTiming(name, seconds, None) for name, seconds in record.timings.items() if name not in stages]
    order = list(stage_kinds(iteration))
    timings.sort(key=lambda t: order.index(t.stage) if t.stage in order else len(order))  # stable: keeps the rest
    trained = info_of(stages, "train", TrainInfo)
    training = tuple(dict(h) for h in trained.history) if trained else ()

    return ReportData(
        project_name=project.root.resolve().name,
        project_root=str(project.root),
        iteration=iteration,
        generated_at=now(),
        iterations=tuple(
            it.n for it in all_iterations
            if it.n == iteration or (project.report_dir(it.n) / "index.html").exists()
        ),
        summary=summary,
        curve=curve,
        baseline=baseline,
        batch=batch,
        batch_options=dict(tag.options) if tag else {},
        scores=scores,
        other_scores=other_scores,
        embedding_map=embedding_map,
        classes=class_rows,
        config=_config(project, record),
        timings=tuple(timings),
        training=training,
        image_paths={r.id: r.path for r in by_id.values()},
        notes=notes,
        coverage=coverage,
    )


# ------------------------------------------------------------------------------------------------
# pieces


def _label_iterations(store: Store) -> dict[int, int]:
    # image id -> iteration whose import labeled it.
    return store.label_iterations()


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _random_baseline(path: Path, notes: dict[str, str]) -> tuple[BaselinePoint, ...]:
    """Mean ± std over seeds of the ``random`` rows of a simulation's curves.csv (none when absent)."""
    if not path.exists():
        return ()
    groups: dict[int, list[tuple[float, float]]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("method") != "random":
                    continue
                groups.setdefault(int(float(row["n_labeled"])), []).append((float(row["map50"]), float(row["map"])))
    except (OSError, KeyError, ValueError) as exc:
        notes["baseline"] = f"{path}: could not read the simulation's random curve ({exc}); it is not drawn."
        return ()
    out = []
    for n, values in sorted(groups.items()):
        arr = np.asarray(values, np.float64)
        out.append(BaselinePoint(n, float(arr[:, 0].mean()), float(arr[:, 0].std()),
                                 float(arr[:, 1].mean()), float(arr[:, 1].std()), len(values)))
    return tuple(out)


def _load_detections(project: Project, iteration: int, notes: dict[str, str]) -> dict[int, Detections]:
    """image id -> the iteration's predictions (empty at iteration 0 or when missing/unreadable, with a note)."""
    if iteration == 0:
        return {}
    path = project.predictions_file(iteration)
    if not path.exists():
        notes["batch-boxes"] = f"No predictions stored for iteration {iteration}: thumbnails show no boxes."
        return {}
    try:
        ids, dets, _ = load_predictions(path)
    except Exception as exc:  # noqa: BLE001 - a truncated npz raises BadZipFile, and it must not stop a step
        notes["batch-boxes"] = f"{project.relpath(path)} is unreadable ({exc}): thumbnails show no boxes."
        return {}
    return dict(zip(ids.tolist(), dets))


def _batch_boxes(
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


def _batch_coverage(
    project: Project, detections: Mapping[int, Detections], selected: Sequence[int], by_id: Mapping[int, Any]
) -> BatchCoverage | None:
    """Zero-detection picks against the predicted pool, and slice shares when slices.csv names them."""
    if not detections:
        return None
    empty = {i for i, d in detections.items() if len(d.above(PREDICTION_THRESHOLD)) == 0}
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


def _score_distribution(
    store: Store, iteration: int, spec: str | None, selected: Sequence[int], notes: dict[str, str]
) -> tuple[ScoreDistribution | None, tuple[str, ...]]:
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


def _embedder_key(store: Store, iteration: int) -> str | None:
    # The latest stage at or before this iteration that recorded which embedder it used.
    for it in sorted((it.n for it in store.iterations() if it.n <= iteration), reverse=True):
        key = embedder_of(read_stages(it, store.stages(it)))
        if key:
            return key
    return None


def _embedding_map(
    project: Project,
    iteration: int,
    images: Sequence[ImageRow],
    labeled: set[int],
    selected: set[int],
    notes: dict[str, str],
) -> EmbeddingMap | None:
    key = _embedder_key(project.store, iteration)
    if key is None:
        notes["embedding-map"] = "No embedder recorded for this project yet, so there is no map."
        return None
    index = project.store.embedding_rows(key)
    rows = [r for r in images if r.sha256 in index]
    if len(rows) < 3:
        notes["embedding-map"] = (
            f"No cached embeddings under {key} (artifacts/embeddings/{key}); run `alloop embed` to draw the map."
        )
        return None
    status = np.array(["selected" if r.id in selected else "labeled" if r.id in labeled else "pool" for r in rows])
    keep = np.arange(len(rows))
    if len(rows) > MAP_MAX_POINTS:
        # Subsample before loading: a huge pool's vectors need not all sit in memory for a picture.
        rng = np.random.default_rng(0)
        pool = np.flatnonzero(status == "pool")
        others = np.flatnonzero(status != "pool")
        n_pool = max(0, MAP_MAX_POINTS - len(others))
        keep = np.sort(np.concatenate([others, rng.choice(pool, size=min(n_pool, len(pool)), replace=False)]))
        notes["embedding-map"] = (
            f"{len(keep)} of {len(rows)} images drawn (every labeled and selected one, a random share of the pool)."
        )
    kept = [rows[i] for i in keep.tolist()]
    try:
        vectors = load_cached_embeddings(project.store, project.embeddings_dir(key), key, [r.sha256 for r in kept])
    except Exception as exc:  # noqa: BLE001 - a damaged cache must not stop the report
        notes["embedding-map"] = f"Embedding cache {key} is unreadable ({exc}); the map is skipped."
        return None
    if vectors is None:
        notes["embedding-map"] = f"Embeddings under {key} are incomplete; the map is skipped."
        return None
    missing = len(images) - len(rows)
    if missing:
        note = f"{missing} images have no cached embedding."
        notes["embedding-map"] = f"{notes.get('embedding-map', '')} {note}".strip()
    points, method = project_2d(np.asarray(vectors, np.float32))
    ids = np.array([r.id for r in kept], np.int64)
    return EmbeddingMap(method, key, points, ids, status[keep], len(rows))


def project_2d(vectors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, 2) coordinates of (N, D) vectors: UMAP when installed (and N is large enough), else PCA."""
    if len(vectors) >= 20:
        try:
            import umap  # type: ignore[import-not-found]

            reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(vectors) - 1))
            return np.asarray(reducer.fit_transform(vectors), np.float32), "UMAP"
        except ImportError:
            pass
        except Exception as exc:  # noqa: BLE001 - UMAP is optional; PCA always works
            log.warning("UMAP failed (%s); the map uses PCA", exc)
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    # SVD-based PCA: deterministic up to sign, which we fix so reruns draw the same picture.
    _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    comps = vt[:2]
    comps *= np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])[:, None]
    pts = centred @ comps.T
    if pts.shape[1] < 2:
        pts = np.hstack([pts, np.zeros((len(pts), 2 - pts.shape[1]))])
    return pts.astype(np.float32), "PCA"


def _class_rows(
    iteration: int,
    classes: Sequence[str],
    annotations: Sequence[tuple[ImageRow, ImageAnnotation, str]],
    labeled: set[int],
    detections: Mapping[int, Detections],
    record: Iteration,
    previous: Iteration | None,
    notes: dict[str, str],
) -> tuple[ClassRow, ...]:
    labeled_boxes = dict.fromkeys(classes, 0)
    for row, ann, _ in annotations:
        if row.id in labeled:
            for box in ann.boxes:
                labeled_boxes[box.label] = labeled_boxes.get(box.label, 0) + 1
    predicted = dict.fromkeys(labeled_boxes, 0)
    if detections and classes:
        counts = np.zeros(len(classes), np.int64)
        for det in detections.values():
            labels = det.labels[det.scores >= PREDICTION_THRESHOLD]
            labels = labels[(labels >= 0) & (labels < len(classes))]
            counts += np.bincount(labels, minlength=len(classes))[: len(classes)]
        predicted.update({c: int(v) for c, v in zip(classes, counts)})
    # An iteration's metrics are its evaluate stage's info.
    measured = EvaluateInfo.from_json(record.metrics)
    ap50 = measured.per_class_ap50 or {}
    ap = measured.per_class_ap or {}
    prev50 = (EvaluateInfo.from_json(previous.metrics).per_class_ap50 or {}) if previous else {}
    if not labeled_boxes:
        notes["classes"] = "No classes known yet: they come with the first label file."
    if not ap50:
        notes["per-class-ap"] = (
            "No per-class AP yet: there is no trained model at iteration 0."
            if iteration == 0
            else "No per-class AP: nothing was held out for evaluation in this iteration."
        )
    return tuple(
        ClassRow(name, labeled_boxes[name], predicted.get(name, 0), _finite(_num(ap50.get(name))),
                 _finite(_num(ap.get(name))), _finite(_num(prev50.get(name))))
        for name in labeled_boxes
    )


def _num(x: Any) -> float | None:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def _config(project: Project, record: Iteration) -> dict[str, Any]:
    """This iteration's settings, then alloop.toml, flattened to dotted keys."""
    flat: dict[str, Any] = {f"iteration.{k}": v for k, v in record.config.items()}
    for section, table in project.config.to_toml().items():
        for key, value in table.items():
            if isinstance(value, Mapping):
                for sub, v in value.items():
                    flat[f"{section}.{key}.{sub}"] = v
            else:
                flat[f"{section}.{key}"] = value
    return {k: ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in flat.items()}


__all__ = [
    "BaselinePoint", "BatchImage", "ClassRow", "CurvePoint", "EmbeddingMap", "PredictedBox", "ReportData",
    "ScoreDistribution", "StageTiming", "Summary", "gather_report_data", "project_2d", "tag_name",
]
