"""A step's import stage: read the label file, check it against the queued batch, store it — all or nothing."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from alloop import formats
from alloop.boxes import ImageAnnotation
from alloop.errors import LabelError
from alloop.loop.plan import StepPlan
from alloop.loop.records import ImportInfo, info_of, read_stages
from alloop.loop.runner import Record, Turn
from alloop.project import Project, ProjectConfig
from alloop.store import ImageRow, Store

log = logging.getLogger("alloop")

# Writes the label file of a batch (the demo's and simulate's ground-truth oracle).
Annotator = Callable[[Project, Sequence[ImageRow]], Path]


@dataclass(frozen=True)
class LabelFile:
    """A label file read and checked: annotations by image id, the classes it names, warnings."""

    path: Path
    annotations: dict[int, ImageAnnotation]
    classes: tuple[str, ...]
    warnings: tuple[str, ...]
    missing: tuple[str, ...]  # queued images it has no labels for


def import_labels(turn: Turn, plan: StepPlan, labels: Path | None, label_format: str | None,
                  options: formats.ImportOptions, annotator: Annotator | None, record: Record) -> ImportInfo:
    """Store the labels of ``labels`` (or the annotator's file) and start the iteration, in one transaction.

    A refused label file leaves no trace: not even the iteration's row.
    """
    store = turn.store
    if labels is None and annotator is not None:
        labels = annotator(turn.project, turn.rows_by_id(store.queued_ids()))
    if labels is None:
        queued = store.queued_ids()
        if queued:
            raise LabelError(f"{len(queued)} images of the last batch are waiting for labels; "
                             "pass --labels FILE exported from your labeling tool")
        info = ImportInfo(new=0, corrected=0, unchanged=0, queued_left=0, source=None)
        with store.transaction():
            _start(store, plan, labels)
            record(info)
        return info
    read = read_label_file(turn.project, Path(labels), label_format, options)
    splits = assign_splits(store, [i for i in read.annotations if i in store.queued_ids()], turn.project.config)
    rows = [(i, ann, splits.get(i, "train")) for i, ann in read.annotations.items()]
    known = store.classes()
    with store.transaction():
        store.add_classes([c for c in read.classes if c not in known])
        counts = store.write_labels(rows, iteration=turn.iteration, source=str(read.path))
        info = ImportInfo(**counts, queued_left=len(read.missing), source=str(read.path), warnings=read.warnings,
                          val=sum(1 for s in splits.values() if s == "val"))
        _start(store, plan, labels)
        record(info)
    return info


def check_resumed_labels(turn: Turn, labels: Path | None) -> None:
    """Refuse a label file other than the one the unfinished iteration imported, or that file changed since.

    Resuming skips a finished import, so a corrected file would silently be ignored (issue 19).
    """
    stages = read_stages(turn.iteration, turn.store.stages(turn.iteration))
    imported = info_of(stages, "import", ImportInfo)
    if labels is None or imported is None:
        return
    labels, it = Path(labels), turn.iteration
    fix = (f"rerun with --restart to import {labels.name} instead (labels imported so far are kept and "
           "corrected by it)")
    if imported.source is None or Path(imported.source).resolve() != labels.resolve():
        raise LabelError(f"{labels}: iteration {it} already imported {imported.source or 'no label file'} and has "
                         f"not finished; rerun without --labels to resume it, or {fix}")
    finished = stages["import"].finished_at
    # finished_at has second precision: a file written just before the import is not "changed".
    if finished and labels.exists() and labels.stat().st_mtime > datetime.fromisoformat(finished).timestamp() + 1:
        raise LabelError(f"{labels}: changed since iteration {it} imported it ({finished}); {fix}")


def _start(store: Store, plan: StepPlan, labels: Path | None) -> None:
    store.start_iteration(plan.iteration, method=plan.method, score_spec=plan.score, config=plan.config(labels))


def read_label_file(project: Project, path: Path, label_format: str | None,
                    options: formats.ImportOptions) -> LabelFile:
    """Read ``path`` and check every image in it was asked for; queued images it lacks become a warning."""
    store = project.store
    if not path.exists():
        raise LabelError(f"{path}: label file not found; pass the file your labeling tool exported with --labels")
    known_classes = store.classes()
    if not known_classes and not options.add_classes:
        # The first label file defines the classes unless init was given --classes.
        options = replace(options, add_classes=True)
    by_path = store.image_by_path()
    label_set, read_warnings = formats.read_labels(
        path, format=label_format, images={r.path: (r.width, r.height) for r in by_path.values()},
        classes=known_classes, options=options, image_root=project.image_root,
    )
    queued, labeled = store.queued_ids(), store.labeled_ids()
    by_id: dict[int, ImageAnnotation] = {}
    for ann in label_set.images:
        row = by_path.get(ann.file_name)
        if row is None:
            raise LabelError(f"{path}: image {ann.file_name!r} is not in this project; remove it from the file")
        if row.id not in queued and row.id not in labeled:
            raise LabelError(
                f"{path}: image {ann.file_name!r} was not in any exported batch; remove it from the file "
                "(alloop only accepts labels for images it asked for)"
            )
        by_id[row.id] = ann
    if not any(i in queued or i in labeled for i in by_id):
        raise LabelError(
            f"{path}: holds labels for none of the {len(queued)} images waiting in the batch; "
            "export the labeled batch from your tool again"
        )
    missing = tuple(sorted(r.path for r in by_path.values() if r.id in queued and r.id not in by_id))
    warnings = list(read_warnings)
    if missing:
        msg = (f"{len(missing)} queued images have no labels in {path.name} and stay queued: "
               + ", ".join(missing[:5]) + (" …" if len(missing) > 5 else ""))
        warnings.append(msg)
        log.warning(msg)
    return LabelFile(path, by_id, tuple(label_set.classes), tuple(warnings), missing)


def assign_splits(store: Store, new_ids: Sequence[int], cfg: ProjectConfig) -> dict[int, str]:
    """Hold out a seeded, content-hash-ordered share of each newly labeled batch for evaluation.

    The split of an image never changes once assigned, so mAP across iterations is measured on a
    growing but consistent held-out set.
    """
    if not new_ids or cfg.val_fraction <= 0:
        return {i: "train" for i in new_ids}
    sha = {r.id: r.sha256 for r in store.images(new_ids)}
    order = sorted(new_ids, key=lambda i: hashlib.sha256(f"{cfg.seed}:{sha[i]}".encode()).hexdigest())
    n_val = round(cfg.val_fraction * len(order))
    if not store.labeled_ids("val") and len(order) >= 2:
        n_val = max(n_val, 1)  # an evaluation needs at least one image
    n_val = min(n_val, len(order) - 1) if len(order) > 1 else 0
    return {i: ("val" if k < n_val else "train") for k, i in enumerate(order)}
