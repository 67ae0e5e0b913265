"""Everything one iteration's report shows, gathered from the project into a frozen :class:`ReportData`.

No HTML and no figures here: tests check the numbers directly. Every optional piece (a model, scores,
predictions, cached embeddings, held-out metrics, a simulation baseline) may be missing; the
gatherer then leaves it empty and adds a one-line note saying why, so a report never stops a step.
The report of iteration ``n`` shows the project as it was at ``n``: labels imported later are left out.
The pieces live beside it: :mod:`~alloop.report.batch`, :mod:`~alloop.report.embedding_map`,
:mod:`~alloop.report.classes`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alloop.errors import ProjectError
from alloop.loop.records import TrainInfo, info_of, read_stages, stage_kinds, tag_name
from alloop.project import Project
from alloop.report.batch import (
    BatchCoverage,
    BatchImage,
    PredictedBox,
    ScoreDistribution,
    SliceShare,
    batch_boxes,
    batch_coverage,
    batch_images,
    load_detections,
    score_distribution,
)
from alloop.report.classes import ClassRow, class_rows
from alloop.report.embedding_map import EmbeddingMap, gather_embedding_map, project_2d
from alloop.report.model_card import ModelCard, gather_model_card
from alloop.store import Iteration, Store, Tag, TagMember, now

log = logging.getLogger("alloop")

SIMULATION_CURVES = Path("simulation") / "curves.csv"  # under the project's artifacts/


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
    model_card: ModelCard | None = None  # None before the iteration has trained a model


def gather_report_data(project: Project, iteration: int) -> ReportData:
    """Collect the report of ``iteration`` from the project's store and artifacts."""
    store = project.store
    all_iterations = store.iterations()
    record = _record(project, all_iterations, iteration)
    notes: dict[str, str] = {}
    by_id = {r.id: r for r in store.images()}  # every image: the CSV files name each scored one
    images = [r for r in by_id.values() if r.state == "ok"]
    labeled_now = {i for i, n in store.label_iterations().items() if n <= iteration}
    annotations = store.annotations()
    classes = store.classes()
    members = store.tag_members(tag_name(iteration))
    if not members and record.status == "done":
        notes["batch"] = "Nothing was left to select: every usable image is labeled or waiting for labels."
    elif not members:
        notes["batch"] = f"iteration {iteration} has not selected a batch yet (tag {tag_name(iteration)} is empty)."
    selected_ids = [m.image_id for m in members]
    earlier = [it for it in all_iterations if it.n <= iteration]
    previous = next((it for it in reversed(earlier) if it.n < iteration and it.map50 is not None), None)
    splits = {row.id: split for row, _, split in annotations}
    tag = store.tag(tag_name(iteration))
    summary = _summary(record, tag, previous, members, labeled_now, splits, len(images))
    detections = load_detections(project, iteration, notes)
    scores, other_scores = score_distribution(store, iteration, summary.score_spec, selected_ids, notes)
    timings, training = _timings(store, record)
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
        curve=_curve(earlier, iteration, notes),
        baseline=_random_baseline(project.artifacts / SIMULATION_CURVES, notes),
        batch=batch_images(project, members, by_id, batch_boxes(detections, set(selected_ids), classes),
                           tag.options.get("terms") if tag else None),
        batch_options={k: v for k, v in tag.options.items() if k != "terms"} if tag else {},
        scores=scores,
        other_scores=other_scores,
        embedding_map=gather_embedding_map(project, iteration, images, labeled_now, set(selected_ids), notes),
        classes=class_rows(iteration, classes, annotations, labeled_now, detections, record, previous, notes),
        config=_config(project, record),
        timings=timings,
        training=training,
        image_paths={r.id: r.path for r in by_id.values()},
        notes=notes,
        coverage=batch_coverage(project, detections, selected_ids, by_id),
        model_card=gather_model_card(project, iteration) if record.checkpoint else None,
    )


# ------------------------------------------------------------------------------------------------
# pieces


def _record(project: Project, iterations: Sequence[Iteration], iteration: int) -> Iteration:
    record = next((it for it in iterations if it.n == iteration), None)
    if record is None:
        known = ", ".join(str(it.n) for it in iterations) or "none yet"
        raise ProjectError(f"{project.root}: no iteration {iteration} (iterations: {known}); pass --iteration N")
    return record


def _summary(record: Iteration, tag: Tag | None, previous: Iteration | None, members: Sequence[TagMember],
             labeled: set[int], splits: Mapping[int, str], pool: int) -> Summary:
    return Summary(
        pool=pool,
        labeled=len(labeled),
        train=sum(1 for i in labeled if splits.get(i) == "train"),
        val=sum(1 for i in labeled if splits.get(i) == "val"),
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


def _curve(earlier: Sequence[Iteration], iteration: int, notes: dict[str, str]) -> tuple[CurvePoint, ...]:
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
    return curve


def _timings(store: Store, record: Iteration) -> tuple[tuple[StageTiming, ...], tuple[Mapping[str, float], ...]]:
    """Each stage's time in the order stages run, and the training's per-epoch history."""
    stages = read_stages(record.n, store.stages(record.n))
    timings = [StageTiming(name, r.seconds, r.finished_at) for name, r in stages.items()]
    timings += [StageTiming(name, seconds, None) for name, seconds in record.timings.items() if name not in stages]
    order = list(stage_kinds(record.n))
    timings.sort(key=lambda t: order.index(t.stage) if t.stage in order else len(order))  # stable: keeps the rest
    trained = info_of(stages, "train", TrainInfo)
    return tuple(timings), tuple(dict(h) for h in trained.history) if trained else ()


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
    "BaselinePoint", "BatchCoverage", "BatchImage", "ClassRow", "CurvePoint", "EmbeddingMap", "PredictedBox",
    "ReportData", "ScoreDistribution", "SliceShare", "StageTiming", "Summary", "gather_report_data", "project_2d",
    "tag_name",
]
