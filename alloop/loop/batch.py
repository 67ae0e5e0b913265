"""The batch for labeling: select it (init's and every step's select stage) and export it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from alloop import formats
from alloop.boxes import Detections
from alloop.device import resolve_device
from alloop.loop.embed import pool_embeddings
from alloop.loop.records import ExportInfo, SelectInfo, StepSelectInfo, tag_name
from alloop.loop.runner import Record, Turn
from alloop.preannotate import Preannotation, preannotation_boxes
from alloop.predictions import PackedDetections, load_packed, load_predictions
from alloop.project import Project, ProjectConfig
from alloop.select import Selection, SelectionInputs, inputs_read, select, selector_for
from alloop.select.base import PoolBoxes, truncate
from alloop.select.budget import box_costs, prefix_within
from alloop.store import ImageRow, Store, TagMember

log = logging.getLogger("alloop")

# Predicted boxes at or above this score count as predicted objects (coral's class balance, box budgets).
PREDICTED_CLASS_THRESHOLD = 0.5


def check_method(method: str) -> None:
    """Refuse an unknown selection method (a registered name or a term spec), naming the known ones."""
    selector_for(method)


def method_options(cfg: ProjectConfig, method: str) -> dict[str, Any]:
    """The options in alloop.toml's [selection] options that ``method`` knows."""
    known = selector_for(method).defaults
    return {k: v for k, v in cfg.selection_options.items() if k in known}


# --------------------------------------------------------------------------------------------
# the stages


def select_first_batch(turn: Turn, method: str, n: int, record: Record) -> SelectInfo:
    """init: pick ``n`` images of the pool with ``method`` (no model yet: no scores)."""
    store = turn.store
    rows = turn.usable_rows()
    selection = select_rows(turn.project, 0, rows, method=method, n=n, blocked=store.labeled_ids(),
                            progress=turn.progress).selection
    info = SelectInfo(selected=len(selection.indices), method=method)
    with store.transaction():
        write_selection(store, 0, method, rows, selection)
        record(info)
    return info


def next_batch_blocked(store: Store) -> set[int]:
    """The images a step's selection counts as labeled (centers, never picked): labeled or queued."""
    return store.labeled_ids() | store.queued_ids()


def select_next_batch(turn: Turn, *, method: str, score: str, n: int, budget_boxes: int | None,
                      checkpoint: Path, record: Record) -> StepSelectInfo:
    """step: pick the next batch among images neither labeled nor queued, within ``budget_boxes`` if set."""
    store = turn.store
    rows = turn.usable_rows()
    blocked = next_batch_blocked(store)
    if all(r.id in blocked for r in rows):
        # The pool ran out: the iteration still finishes (its model is the final one), with no batch.
        log.info("every usable image is labeled or waiting for labels: nothing left to select")
        info = StepSelectInfo(selected=0, method=method, score=score, options={}, embedder=None)
        record(info)
        return info
    # Every image costs at least one box: no more than budget_boxes picks can fit, and --n caps them.
    k = min(n, int(budget_boxes)) if budget_boxes else n
    picked = select_rows(turn.project, turn.iteration, rows, method=method, n=k, score=score,
                         blocked=blocked, checkpoint=checkpoint, progress=turn.progress)
    selection, key = picked.selection, picked.embedder
    if budget_boxes:
        assert picked.predicted is not None  # a step's selection reads the iteration's predictions
        selection = within_box_budget(store, picked.predicted, selection, budget_boxes, n)
    info = StepSelectInfo(selected=len(selection.indices), method=method, score=score,
                          options=dict(selection.options), embedder=key)
    with store.transaction():
        write_selection(store, turn.iteration, method, rows, selection, score_spec=score)
        record(info)
    return info


def export_stage(turn: Turn, record: Record) -> ExportInfo:
    """Write the iteration's batch in every configured format, with the model's boxes after init."""
    it, project = turn.iteration, turn.project
    tag = tag_name(it)
    if turn.store.tag(tag) is None:  # nothing was left to select
        info = ExportInfo(files=())
        record(info)
        return info
    files = export_batch(project, it, predictions=project.predictions_file(it) if it > 0 else None,
                         model_version=f"iteration-{it}" if it > 0 else None)
    info = ExportInfo(files=tuple(str(f) for f in files))
    with turn.store.transaction():
        turn.store.set_tag_export_dir(tag, project.relpath(project.export_dir(tag)))
        record(info)
    return info


# --------------------------------------------------------------------------------------------
# selection


class Picked(NamedTuple):
    """What :func:`select_rows` chose, and what it read to choose it."""

    selection: Selection
    embedder: str | None  # the embedder key of the embeddings it used (None: none were needed)
    predicted: np.ndarray | None  # (len(rows), num_classes) confident predicted boxes; None before a model


def select_rows(
    project: Project,
    iteration: int,
    rows: Sequence[ImageRow],
    *,
    method: str,
    n: int,
    blocked: set[int],
    score: str | None = None,
    checkpoint: Path | None = None,
    options: Mapping[str, Any] | None = None,
    progress: bool,
) -> Picked:
    """Select ``n`` of ``rows`` with ``method``; ``blocked`` ids are centers, never picked.

    Gathers only what the method needs (embeddings; the iteration's ``score`` and predicted classes)
    and returns the selection with the embedder key it used and the predicted class counts it read.
    """
    cfg = project.config
    store = project.store
    emb, key = None, None
    if "embeddings" in selector_for(method).needs:
        emb, key, _ = pool_embeddings(project, rows, progress=progress, checkpoint=checkpoint)
    scores = None
    if score is not None:
        by_id = store.scores(iteration, score)
        scores = np.array([by_id.get(r.id, 0.0) for r in rows], np.float32)
    found, predicted = None, None
    if iteration > 0:  # the predictions file is read once, for the class counts and the box features
        found = pool_predictions(project, iteration, rows)
        predicted = predicted_class_counts(project, iteration, rows, len(store.classes()), predicted=found)
    opts = {**method_options(cfg, method), **dict(options or {})}
    labeled = np.array([r.id in blocked for r in rows], bool)
    boxes = pool_boxes(found, len(rows)) if "boxes" in inputs_read(method, opts, int(labeled.sum())) else None
    inputs = SelectionInputs(
        embeddings=emb,
        labeled=labeled,
        scores=scores,
        predicted_classes=predicted,
        boxes=boxes,
    )
    selection = select(method, n, inputs, seed=cfg.seed + iteration, device=resolve_device(cfg.device), **opts)
    return Picked(selection, key, predicted)


def within_box_budget(store: Store, predicted: np.ndarray, selection: Selection, budget: int, cap: int) -> Selection:
    """The prefix of ``selection`` whose estimated boxes fit ``budget`` (at most ``cap`` images).

    ``predicted``: the (rows, num_classes) confident predicted boxes of the rows ``selection`` indexes, as
    :func:`select_rows` read them for the selection."""
    counts = store.counts()  # two COUNT queries, not every labeled box
    per_image = counts["boxes"] / counts["labeled"] if counts["labeled"] else None
    costs, r = box_costs(predicted.sum(axis=1), per_image)
    m = min(cap, prefix_within(costs, selection.indices, budget))
    estimate = float(costs[selection.indices[:m]].sum())
    log.info("box budget %d: %d images, about %.0f boxes to label (model counts x %.2f)", budget, m, estimate, r)
    return truncate(selection, m, budget_boxes=int(budget), estimated_boxes=round(estimate, 1),
                    box_correction=round(r, 3))


def write_selection(
    store: Store, iteration: int, method: str, rows: Sequence[ImageRow], selection: Selection,
    *, score_spec: str | None = None,
) -> None:
    """Store ``selection`` as the iteration's tag, replacing an earlier one (call inside a transaction)."""
    members = [
        (rows[int(i)].id, float(d), float(s))
        for i, d, s in zip(selection.indices, selection.distances, selection.scores)
    ]
    options = {**dict(selection.options), **({"score": score_spec} if score_spec else {})}
    if selection.terms:  # a term spec: each pick's objective split into its terms, in pick order
        options["terms"] = {name: [round(float(v), 5) for v in values] for name, values in selection.terms.items()}
    name = tag_name(iteration)
    if store.tag(name) is not None:
        store.delete_tag(name)
    store.create_tag(name, iteration=iteration, method=method, members=members, options=options)


def _row_positions(rows: Sequence[ImageRow], ids: np.ndarray) -> np.ndarray:
    """The position in ``rows`` of each image id in ``ids`` (-1 where it is not one of them)."""
    row_ids = np.array([r.id for r in rows], np.int64)
    if not len(rows):
        return np.full(len(ids), -1, np.int64)
    order = np.argsort(row_ids)
    at = np.minimum(np.searchsorted(row_ids, ids, sorter=order), len(rows) - 1)
    return np.where(row_ids[order[at]] == ids, order[at], -1)


PoolPredictions = tuple[np.ndarray, PackedDetections]  # (each predicted image's position in the rows, -1: none; boxes)


def pool_predictions(project: Project, iteration: int, rows: Sequence[ImageRow]) -> PoolPredictions | None:
    """The iteration's predictions file, read once, with where each predicted image sits in ``rows``;
    None when the pool was not predicted."""
    path = project.predictions_file(iteration)
    if not path.exists():
        return None
    ids, dets, _ = load_packed(path)  # flat arrays: no object per pooled image
    return _row_positions(rows, ids), dets


def pool_boxes(predicted: PoolPredictions | None, n_rows: int) -> PoolBoxes | None:
    """The predicted boxes with their features in the rows' order (an image the model did not predict has
    none); None without predictions or when they carry no box features (TAO, older files)."""
    if predicted is None or predicted[1].features is None:
        return None
    pos, dets = predicted
    take = np.full(n_rows, -1, np.int64)
    take[pos[pos >= 0]] = np.flatnonzero(pos >= 0)
    have = np.flatnonzero(take >= 0)
    part = dets.take(take[have])  # in rows' order
    counts = np.zeros(n_rows, np.int64)
    counts[have] = part.counts
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return PoolBoxes(offsets, part.labels, part.scores, part.features)


def predicted_class_counts(project: Project, iteration: int, rows: Sequence[ImageRow], num_classes: int,
                           threshold: float = PREDICTED_CLASS_THRESHOLD, *,
                           predicted: PoolPredictions | None = None) -> np.ndarray:
    """(len(rows), num_classes) confident predicted boxes per image and class (zeros when not predicted).
    ``predicted``: :func:`pool_predictions` already read for these rows (else it is read here)."""
    counts = np.zeros((len(rows), num_classes), np.float32)
    predicted = predicted if predicted is not None else pool_predictions(project, iteration, rows)
    if predicted is None:
        return counts
    pos, dets = predicted
    box_pos = pos[dets.image_of_box()]
    keep = (box_pos >= 0) & (dets.scores >= threshold) & (dets.labels >= 0) & (dets.labels < num_classes)
    np.add.at(counts, (box_pos[keep], dets.labels[keep]), 1.0)
    return counts


# --------------------------------------------------------------------------------------------
# export


def export_batch(
    project: Project, iteration: int, *, predictions: Path | None, model_version: str | None = None
) -> list[Path]:
    """Write the iteration's tag in every configured export format; returns the main file of each."""
    tag = tag_name(iteration)
    members = project.store.tag_members(tag)
    out = project.export_dir(tag)
    return [
        export_items(project, members, out / fmt, fmt, predictions=predictions, model_version=model_version)
        for fmt in project.config.export_formats
    ]


def export_items(project: Project, members: Sequence[TagMember], out: Path, fmt: str, *,
                 predictions: Path | None, model_version: str | None) -> Path:
    """Write one batch in one format, with the model's boxes as pre-annotations when there are any."""
    store = project.store
    rows = {r.id: r for r in store.images(m.image_id for m in members)}
    dets: dict[int, Detections] = {}
    if predictions is not None and predictions.exists():
        ids, det_list, _ = load_predictions(predictions, rows)  # the batch's images only
        dets = dict(zip(ids.tolist(), det_list))
    classes = store.classes()
    # Which of the model's boxes a labeler sees: [preannotation] threshold and max_boxes (alloop.preannotate).
    rule = Preannotation(project.config.preannotation_threshold, project.config.preannotation_max_boxes)
    items = []
    for m in members:
        r = rows[m.image_id]
        pred = dets.get(r.id)
        items.append(
            formats.BatchItem(
                file_name=r.path,
                path=project.image_root / r.path,
                width=r.width,
                height=r.height,
                predictions=preannotation_boxes(pred, classes, rule) if pred is not None and classes else (),
                score=m.score,
            )
        )
    return formats.export_batch(fmt, items, out, classes=classes, model_version=model_version,
                                image_url_prefix=project.config.image_url_prefix)
