"""The active-learning loop: ``init`` and ``step``, stage by stage, each stage recorded.

``init`` = iteration 0: register → embed → select → export.
``step`` = iteration n ≥ 1: import → train → evaluate → infer → score → select → export → report.

Every stage records its completion in the store (in the same transaction as its own writes, for
stages that write to the store). Files a stage produces are written atomically before the stage
is marked done. Rerunning an interrupted ``init`` or ``step`` therefore skips finished stages and
redoes only the one that was cut off; ``--restart`` throws the unfinished iteration away (never
its labels) and starts it again.

``--n`` is always the **batch size**: how many new images to select for labeling this round
(not the total labeled count, as in Lightly's ``n_samples``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alloop import formats, images as imagelib, pool
from alloop.boxes import Detections, ImageAnnotation, detections_to_boxes
from alloop.device import resolve_device
from alloop.embed import build_embedder
from alloop.embed.cache import cached_embeddings
from alloop.errors import ConfigError, LabelError, ProjectError
from alloop.evaluate import evaluate
from alloop.predictions import load_predictions, save_predictions
from alloop.project import Project, ProjectConfig
from alloop.score import needs_flipped, parse_score_spec, score_images
from alloop.select import Selection, SelectionInputs, available_methods, select, selectors
from alloop.select.base import truncate
from alloop.select.budget import box_costs, prefix_within
from alloop.store import ImageRow, Store, now
from alloop.trainers import Example, config_from_mapping, load_trainer

log = logging.getLogger("alloop")

INIT_TAG = "initial-selection"
STEP_STAGES = ("import", "train", "evaluate", "infer", "score", "select", "export", "report")
INIT_STAGES = ("register", "embed", "select", "export", "report")
# Scores computed every step besides the one selection uses, so the report and a later
# `alloop select --score` can compare them without re-running inference.
REPORT_SCORES = ("least_confidence:max", "entropy:max", "margin:max", "entropy:mean", "objectness_least_confidence:mean",
                 "proposal_entropy", "detection_entropy")
BACKUPS_KEPT = 5
# Test hook: ALLOOP_FAULT_INJECT=kill:<stage> SIGKILLs the process just before <stage> commits.
FAULT_ENV = "ALLOOP_FAULT_INJECT"
# Pre-annotations below this score would cost annotators more clicks to delete than they save.
PREANNOTATION_THRESHOLD = 0.3


def tag_name(iteration: int) -> str:
    """The tag of the batch selected in ``iteration``."""
    return INIT_TAG if iteration == 0 else f"iteration-{iteration}"


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class InitResult:
    """What init did."""

    project: Path
    n_images: int
    bad_images: tuple[tuple[str, str], ...]
    tag: str
    n_selected: int
    export_dir: Path
    exports: tuple[Path, ...]
    resumed_stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepResult:
    """What one step did."""

    iteration: int
    imported: Mapping[str, int]
    still_queued: tuple[str, ...]
    warnings: tuple[str, ...]
    n_train: int
    n_val: int
    map50: float | None
    map: float | None
    tag: str
    n_selected: int
    export_dir: Path
    exports: tuple[Path, ...]
    report: Path | None
    timings: Mapping[str, float]
    resumed_stages: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# stage bookkeeping


class _Stages:
    """Runs stages of one iteration, skipping those the store says are finished."""

    def __init__(self, store: Store, iteration: int) -> None:
        self.store = store
        self.iteration = iteration
        self.done = store.stages(iteration)
        self.resumed = tuple(name for name in self.done)
        self.timings: dict[str, float] = {k: v["seconds"] or 0.0 for k, v in self.done.items()}

    def run(self, name: str, fn: Callable[[Callable[[Mapping[str, Any]], None]], None]) -> Mapping[str, Any]:
        """Run ``fn(finish)`` unless finished; ``fn`` must call ``finish(info)`` inside its last transaction."""
        if name in self.done:
            log.info("stage %s of iteration %d already done, skipping", name, self.iteration)
            return self.done[name]["info"]
        t0 = time.perf_counter()
        log.info("stage %s…", name)
        holder: dict[str, Any] = {}

        def finish(info: Mapping[str, Any]) -> None:
            if os.environ.get(FAULT_ENV) == f"kill:{name}":
                # Fault injection for the crash tests: die after the stage's work, before its commit.
                os.kill(os.getpid(), signal.SIGKILL)
            seconds = time.perf_counter() - t0
            self.store.finish_stage(self.iteration, name, seconds=seconds, info=info)
            holder["info"] = dict(info)
            self.timings[name] = seconds

        fn(finish)
        if "info" not in holder:
            raise RuntimeError(f"stage {name} did not record its completion")
        self.done[name] = {"info": holder["info"], "seconds": self.timings[name]}
        return holder["info"]


# --------------------------------------------------------------------------------------------
# init


def init(
    project_dir: Path,
    images_dir: Path | None,
    *,
    n: int,
    method: str | None = None,
    classes: Sequence[str] = (),
    config: ProjectConfig | None = None,
    progress: bool = True,
) -> InitResult:
    """Create (or finish creating) a project: register images, embed, select the first batch, export it."""
    if n <= 0:
        raise ConfigError(f"--n must be a positive batch size, got {n}")
    project_dir = Path(project_dir)
    if (project_dir / "alloop.toml").exists():
        project = Project.open(project_dir)
        first = project.store.iteration(0)
        if first is not None and first.status == "done":
            project.close()
            raise ProjectError(
                f"{project_dir}: already initialised; label the batch and run `alloop step {project_dir} --labels FILE`"
            )
        log.info("resuming an interrupted init of %s", project_dir)
    else:
        if images_dir is None:
            raise ConfigError("--images is required: the folder that holds your raw images")
        images_dir = Path(images_dir)
        imagelib.discover(images_dir)  # fail before creating anything when the folder is unusable
        base = config or ProjectConfig(image_root=str(images_dir.resolve()))
        base = base.with_changes(image_root=str(images_dir.resolve()))
        _check_methods(base.init_method if method is None else method)
        project = Project.create(project_dir, base)
    with project:
        store = project.store
        cfg = project.config
        method = method or cfg.init_method
        _check_methods(method)
        if classes:
            store.add_classes(list(classes))
        store.start_iteration(0, method=method, score_spec=None, config={"n": n, "method": method})
        stages = _Stages(store, 0)

        def register_stage(finish: Callable) -> None:
            def commit(reg: pool.Registration) -> None:
                # Inside register's transaction: a pool with no readable image records nothing.
                if not reg.added:
                    path, reason = reg.bad[0]
                    raise imagelib.ImageError(
                        f"{project.image_root}: none of the {len(reg.bad)} images could be read "
                        f"(first: {path}: {reason}); check the files"
                    )
                finish({"images": reg.added, "bad": len(reg.bad)})

            pool.register(project, progress=progress, on_commit=commit)

        stages.run("register", register_stage)
        for path, reason in store.bad_images():
            log.warning("skipped unreadable image %s: %s", path, reason)

        def embed_stage(finish: Callable) -> None:
            rows = [r for r in store.images() if r.state == "ok"]
            emb, key, misses = _embeddings(project, rows, progress=progress)
            finish({"embedder": key, "computed": misses, "dim": int(emb.shape[1])})

        stages.run("embed", embed_stage)
        rows = [r for r in store.images() if r.state == "ok"]

        def select_stage(finish: Callable) -> None:
            selection, _ = _select_batch(project, 0, rows, method=method, n=n, blocked=store.labeled_ids(),
                                         progress=progress)
            with store.transaction():
                _write_selection(store, 0, method, rows, selection)
                finish({"selected": len(selection.indices), "method": method})

        stages.run("select", select_stage)

        def export_stage(finish: Callable) -> None:
            files = _export_batch(project, 0, predictions=None)
            with store.transaction():
                store.set_tag_export_dir(INIT_TAG, project.relpath(project.export_dir(INIT_TAG)))
                finish({"files": [str(f) for f in files]})

        export_info = stages.run("export", export_stage)

        def report_stage(finish: Callable) -> None:
            path = _write_report(project, 0)
            finish({"file": project.relpath(path) if path else None})

        stages.run("report", report_stage)
        store.update_iteration(0, status="done", finished_at=now(), n_labeled=len(store.labeled_ids()),
                               timings=stages.timings)
        tag = store.tag(INIT_TAG)
        return InitResult(
            project=project_dir,
            n_images=len(rows),
            bad_images=tuple(store.bad_images()),
            tag=INIT_TAG,
            n_selected=tag.size if tag else 0,
            export_dir=project.export_dir(INIT_TAG),
            exports=tuple(Path(f) for f in export_info.get("files", [])),
            resumed_stages=stages.resumed,
        )


# --------------------------------------------------------------------------------------------
# step


def step(
    project_dir: Path,
    *,
    labels: Path | None,
    n: int,
    label_format: str | None = None,
    method: str | None = None,
    score: str | None = None,
    import_options: formats.ImportOptions = formats.ImportOptions(),
    restart: bool = False,
    progress: bool = True,
    device: str | None = None,
    annotator: Callable[[Project, Sequence[ImageRow]], Path] | None = None,
    infer_pool: bool = True,
    budget_boxes: int | None = None,
) -> StepResult:
    """One turn of the loop after a labeling round (see the module docstring for the stages).

    ``budget_boxes``: size the next batch by estimated boxes to label instead of images (``n`` then
    caps the batch; see :mod:`alloop.select.budget`).
    """
    if n <= 0:
        raise ConfigError(f"--n must be a positive batch size, got {n}")
    if budget_boxes is not None and (isinstance(budget_boxes, bool) or budget_boxes <= 0):
        raise ConfigError(f"--budget-boxes must be a positive number of boxes, got {budget_boxes}")
    with Project.open(Path(project_dir)) as project:
        if device:
            project.config = project.config.with_changes(device=device)  # this step only, not saved
        store = project.store
        cfg = project.config
        iterations = store.iterations()
        if not iterations or iterations[0].status != "done":
            raise ProjectError(f"{project_dir}: init has not finished; run `alloop init {project_dir} --images DIR` first")
        last = iterations[-1]
        if last.status == "running":
            it = last.n
            if restart:
                log.warning("restarting iteration %d from scratch (labels are kept)", it)
                _discard_iteration(project, it)
        else:
            it = last.n + 1
        existing = store.iteration(it)
        if existing is not None:
            # A resumed step keeps the choices it started with so its stages agree with each other.
            n = int(existing.config.get("n", n))
            budget_boxes = existing.config.get("budget_boxes", budget_boxes)
            method = existing.method
            score = existing.score_spec
        method = method or cfg.selection_method
        score = score or cfg.score
        _check_methods(method)
        parse_score_spec(score)
        if existing is None:
            _backup(project, it)
        stages = _Stages(store, it)
        classes_before = store.classes()
        device = resolve_device(cfg.device)
        project.config = cfg = cfg.with_changes(device=device)

        # -- import -----------------------------------------------------------------------
        def import_stage(finish: Callable) -> None:
            label_path = labels
            if label_path is None and annotator is not None:
                label_path = annotator(project, _rows_by_id(store, store.queued_ids()))

            def begin_and_finish(info: Mapping[str, Any]) -> None:
                # Called inside the import transaction: a refused label file leaves no trace.
                store.start_iteration(it, method=method, score_spec=score,
                                      config={"n": n, "method": method, "score": score, "labels": str(label_path),
                                              **({"budget_boxes": budget_boxes} if budget_boxes else {})})
                finish(info)

            _import_labels(project, it, label_path, label_format, import_options, begin_and_finish)

        imported = stages.run("import", import_stage)
        classes = store.classes()
        if not classes:
            raise LabelError("no classes known yet: the label file defined none; check it has categories/labels")

        trainer = build_trainer(project, classes, device)
        # Labeled images whose file went missing (doctor --repair sets them aside) wait, labels kept.
        ann_train = store.annotations("train", available=True)
        ann_val = store.annotations("val", available=True)

        # -- train ------------------------------------------------------------------------
        def train_stage(finish: Callable) -> None:
            if not ann_train:
                raise ProjectError(
                    f"{project_dir}: no labeled training images yet; import labels with --labels FILE"
                )
            if store.classes() != classes_before and classes_before:
                log.info("classes changed (%s); the box predictor is re-initialised", ", ".join(classes))
            resume_from = _previous_checkpoint(project, it, classes)
            result = trainer.train(
                [_example(project, r, a) for r, a, _ in ann_train],
                [_example(project, r, a) for r, a, _ in ann_val],
                project.checkpoint_dir(it),
                resume_from=resume_from,
                seed=cfg.seed + it,
                progress=progress,
            )
            with store.transaction():
                store.update_iteration(it, checkpoint=project.relpath(result.checkpoint),
                                       n_train=len(ann_train), n_val=len(ann_val))
                finish({"checkpoint": project.relpath(result.checkpoint), "epochs": result.epochs,
                        "steps": result.steps, "best_metric": result.best_metric,
                        "history": list(result.history), "resumed_from": str(resume_from) if resume_from else None})

        train_info = stages.run("train", train_stage)
        checkpoint = project.root / train_info["checkpoint"]

        # -- evaluate ---------------------------------------------------------------------
        def evaluate_stage(finish: Callable) -> None:
            if not ann_val:
                # With val_fraction = 0 (simulate measures on its own test split) that is the choice made,
                # not something to warn about (issue 19).
                (log.info if cfg.val_fraction == 0 else log.warning)(
                    "no held-out labeled images (val_fraction=%s): mAP is not measured", cfg.val_fraction)
                with store.transaction():
                    store.update_iteration(it, n_labeled=len(store.labeled_ids()))
                    finish({"n_val": 0})
                return
            preds = trainer.predict(checkpoint, [project.image_root / r.path for r, _, _ in ann_val],
                                    progress=progress)
            m = evaluate([a for _, a, _ in ann_val], preds, classes)
            metrics = {"map50": m.map50, "map": m.map, "per_class_ap50": m.per_class_ap50,
                       "per_class_ap": m.per_class_ap, "n_val_images": m.n_images, "n_val_boxes": m.n_boxes}
            with store.transaction():
                store.update_iteration(it, map50=_nan_none(m.map50), map=_nan_none(m.map), metrics=metrics,
                                       n_labeled=len(store.labeled_ids()), n_train=len(ann_train),
                                       n_val=len(ann_val))
                finish(metrics)

        stages.run("evaluate", evaluate_stage)

        # -- infer ------------------------------------------------------------------------
        candidates = _candidates(store)

        # Pool predictions feed the scores, the pre-annotations and the report. A simulation of a
        # method that uses no scores may skip them (infer_pool=False) to save most of a step's time.
        run_inference = infer_pool or "scores" in selectors()[method].uses

        def infer_stage(finish: Callable) -> None:
            paths = [project.image_root / r.path for r in candidates] if run_inference else []
            ids = [r.id for r in candidates] if run_inference else []
            dets = trainer.predict(checkpoint, paths, progress=progress) if paths else []
            flipped = None
            if needs_flipped([score]):
                flipped = trainer.predict(checkpoint, paths, hflip=True, progress=progress) if paths else []
            save_predictions(project.predictions_file(it), ids, dets,
                             num_classes=len(classes), flipped=flipped)
            finish({"images": len(paths), "boxes": int(sum(len(d) for d in dets)),
                    "file": project.relpath(project.predictions_file(it))})

        stages.run("infer", infer_stage)

        # -- score ------------------------------------------------------------------------
        def score_stage(finish: Callable) -> None:
            ids, dets, flipped = load_predictions(project.predictions_file(it))
            specs = list(dict.fromkeys([score, *REPORT_SCORES]))
            if flipped is None:
                specs = [s for s in specs if not needs_flipped([s])]
            values = score_images(dets, specs, flipped=flipped) if len(ids) else {s: np.zeros(0) for s in specs}
            with store.transaction():
                for spec, v in values.items():
                    store.write_scores(it, spec, ids.tolist(), v)
                finish({"scores": specs, "images": len(ids)})

        stages.run("score", score_stage)

        # -- select -----------------------------------------------------------------------
        def select_stage(finish: Callable) -> None:
            rows = [r for r in store.images() if r.state == "ok"]
            blocked = store.labeled_ids() | store.queued_ids()
            # Every image costs at least one box: no more than budget_boxes picks can fit, and --n caps them.
            k = min(n, int(budget_boxes)) if budget_boxes else n
            selection, key = _select_batch(project, it, rows, method=method, n=k, score=score,
                                           blocked=blocked, checkpoint=checkpoint, progress=progress)
            if budget_boxes:
                selection = _within_box_budget(project, it, rows, selection, budget_boxes, n)
            with store.transaction():
                _write_selection(store, it, method, rows, selection, score_spec=score)
                finish({"selected": len(selection.indices), "method": method, "score": score,
                        "options": dict(selection.options), "embedder": key})

        stages.run("select", select_stage)

        # -- export -----------------------------------------------------------------------
        tag = tag_name(it)

        def export_stage(finish: Callable) -> None:
            files = _export_batch(project, it, predictions=project.predictions_file(it),
                                  model_version=f"iteration-{it}")
            with store.transaction():
                store.set_tag_export_dir(tag, project.relpath(project.export_dir(tag)))
                finish({"files": [str(f) for f in files]})

        export_info = stages.run("export", export_stage)

        # -- report -----------------------------------------------------------------------
        def report_stage(finish: Callable) -> None:
            path = _write_report(project, it)
            finish({"file": project.relpath(path) if path else None})

        report_info = stages.run("report", report_stage)

        store.update_iteration(it, status="done", finished_at=now(), timings=stages.timings)
        record = store.iteration(it)
        batch = {m.image_id for m in store.tag_members(tag)}
        still = tuple(sorted(r.path for r in _rows_by_id(store, store.queued_ids() - batch)))
        return StepResult(
            iteration=it,
            imported={k: v for k, v in imported.items() if isinstance(v, int)},
            still_queued=still,
            warnings=tuple(imported.get("warnings", ())),
            n_train=record.n_train or 0,
            n_val=record.n_val or 0,
            map50=record.map50,
            map=record.map,
            tag=tag,
            n_selected=store.tag(tag).size,
            export_dir=project.export_dir(tag),
            exports=tuple(Path(f) for f in export_info.get("files", [])),
            report=project.root / report_info["file"] if report_info.get("file") else None,
            timings=dict(stages.timings),
            resumed_stages=stages.resumed,
        )


# --------------------------------------------------------------------------------------------
# import


def _import_labels(
    project: Project,
    iteration: int,
    labels: Path | None,
    label_format: str | None,
    options: formats.ImportOptions,
    finish: Callable[[Mapping[str, Any]], None],
) -> None:
    """Read a label file, check it against the queued batch, and store it — all or nothing."""
    store = project.store
    queued = store.queued_ids()
    by_path = store.image_by_path()
    if labels is None:
        if queued:
            raise LabelError(
                f"{len(queued)} images of the last batch are waiting for labels; "
                "pass --labels FILE exported from your labeling tool"
            )
        with store.transaction():
            finish({"new": 0, "corrected": 0, "unchanged": 0, "queued_left": 0, "source": None})
        return
    labels = Path(labels)
    if not labels.exists():
        raise LabelError(f"{labels}: label file not found; pass the file your labeling tool exported with --labels")
    known_classes = store.classes()
    opts = options
    if not known_classes and not options.add_classes:
        # The first label file defines the classes unless init was given --classes.
        opts = formats.ImportOptions(**{**asdict(options), "add_classes": True})
    label_set, read_warnings = formats.read_labels(
        labels,
        format=label_format,
        images={r.path: (r.width, r.height) for r in by_path.values()},
        classes=known_classes,
        options=opts,
        image_root=project.image_root,
    )
    warnings = list(read_warnings)
    labeled = store.labeled_ids()
    ann_by_id: dict[int, ImageAnnotation] = {}
    for ann in label_set.images:
        row = by_path.get(ann.file_name)
        if row is None:
            raise LabelError(f"{labels}: image {ann.file_name!r} is not in this project; remove it from the file")
        if row.id not in queued and row.id not in labeled:
            raise LabelError(
                f"{labels}: image {ann.file_name!r} was not in any exported batch; remove it from the file "
                "(alloop only accepts labels for images it asked for)"
            )
        ann_by_id[row.id] = ann
    new_ids = [i for i in ann_by_id if i in queued]
    if not new_ids and not any(i in labeled for i in ann_by_id):
        raise LabelError(
            f"{labels}: holds labels for none of the {len(queued)} images waiting in the batch; "
            "export the labeled batch from your tool again"
        )
    missing = sorted(r.path for r in by_path.values() if r.id in queued and r.id not in ann_by_id)
    if missing:
        msg = (f"{len(missing)} queued images have no labels in {labels.name} and stay queued: "
               + ", ".join(missing[:5]) + (" …" if len(missing) > 5 else ""))
        warnings.append(msg)
        log.warning(msg)
    splits = _assign_splits(store, new_ids, project.config)
    rows = [(i, ann_by_id[i], splits.get(i, "train")) for i in ann_by_id]
    with store.transaction():
        store.add_classes([c for c in label_set.classes if c not in known_classes])
        counts = store.write_labels(rows, iteration=iteration, source=str(labels))
        finish({**counts, "queued_left": len(missing), "source": str(labels), "warnings": list(warnings),
                "val": sum(1 for s in splits.values() if s == "val")})


def _assign_splits(store: Store, new_ids: Sequence[int], cfg: ProjectConfig) -> dict[int, str]:
    """Hold out a seeded, content-hash-ordered share of each newly labeled batch for evaluation.

    The split of an image never changes once assigned, so mAP across iterations is measured on a
    growing but consistent held-out set.
    """
    if not new_ids or cfg.val_fraction <= 0:
        return {i: "train" for i in new_ids}
    sha = {r.id: r.sha256 for r in store.images()}
    order = sorted(new_ids, key=lambda i: hashlib.sha256(f"{cfg.seed}:{sha[i]}".encode()).hexdigest())
    n_val = int(round(cfg.val_fraction * len(order)))
    if not store.labeled_ids("val") and len(order) >= 2:
        n_val = max(n_val, 1)  # an evaluation needs at least one image
    n_val = min(n_val, len(order) - 1) if len(order) > 1 else 0
    return {i: ("val" if k < n_val else "train") for k, i in enumerate(order)}


# --------------------------------------------------------------------------------------------
# helpers shared by init and step


def _check_methods(method: str) -> None:
    if method not in available_methods():
        raise ConfigError(f"unknown selection method {method!r}; choose one of {', '.join(available_methods())}")


def _method_options(cfg: ProjectConfig, method: str) -> dict[str, Any]:
    # Options in alloop.toml's [selection.options] apply to the methods that know them.
    known = selectors()[method].defaults
    return {k: v for k, v in cfg.selection_options.items() if k in known}


def _embeddings(
    project: Project, rows: Sequence[ImageRow], *, progress: bool, checkpoint: Path | None = None
) -> tuple[np.ndarray, str, int]:
    cfg = project.config
    options = dict(cfg.embedder_options)
    if cfg.embedder == "detector" and checkpoint is not None:
        options.setdefault("checkpoint", str(checkpoint))
    embedder = build_embedder(cfg.embedder, options, project.embedder_dir(cfg.embedder), resolve_device(cfg.device))
    paths = [project.image_root / r.path for r in rows]
    embedder.prepare(paths, seed=cfg.seed, progress=progress)
    key = embedder.key()
    emb, misses = cached_embeddings(
        project.store, project.embeddings_dir(key), embedder, [r.sha256 for r in rows], paths, progress=progress
    )
    if misses:
        log.info("embedded %d images with %s (%s)", misses, cfg.embedder, key)
    return emb, key, misses


def _select_batch(
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
) -> tuple[Selection, str | None]:
    """Select ``n`` of ``rows`` with ``method``; ``blocked`` ids are centers, never picked.

    Gathers only what the method needs (embeddings; the iteration's ``score`` and predicted classes)
    and returns the selection with the embedder key it used (None without embeddings).
    """
    cfg = project.config
    store = project.store
    emb, key = None, None
    if "embeddings" in available_methods()[method]:
        emb, key, _ = _embeddings(project, rows, progress=progress, checkpoint=checkpoint)
    scores = None
    if score is not None:
        by_id = store.scores(iteration, score)
        scores = np.array([by_id.get(r.id, 0.0) for r in rows], np.float32)
    predicted = _predicted_class_counts(project, iteration, rows, len(store.classes())) if iteration > 0 else None
    inputs = SelectionInputs(
        embeddings=emb,
        labeled=np.array([r.id in blocked for r in rows], bool),
        scores=scores,
        predicted_classes=predicted,
    )
    opts = {**_method_options(cfg, method), **dict(options or {})}
    return select(method, n, inputs, seed=cfg.seed + iteration, device=resolve_device(cfg.device), **opts), key


def _within_box_budget(project: Project, iteration: int, rows: Sequence[ImageRow], selection: Selection,
                       budget: int, cap: int) -> Selection:
    """The prefix of ``selection`` whose estimated boxes fit ``budget`` (at most ``cap`` images)."""
    store = project.store
    predicted = _predicted_class_counts(project, iteration, rows, len(store.classes())).sum(axis=1)
    counts = store.counts()  # two COUNT queries, not every labeled box
    per_image = counts["boxes"] / counts["labeled"] if counts["labeled"] else None
    costs, r = box_costs(predicted, per_image)
    m = min(cap, prefix_within(costs, selection.indices, budget))
    estimate = float(costs[selection.indices[:m]].sum())
    log.info("box budget %d: %d images, about %.0f boxes to label (model counts x %.2f)", budget, m, estimate, r)
    return truncate(selection, m, budget_boxes=int(budget), estimated_boxes=round(estimate, 1),
                    box_correction=round(r, 3))


def _write_selection(
    store: Store, iteration: int, method: str, rows: Sequence[ImageRow], selection: Selection,
    *, score_spec: str | None = None,
) -> None:
    members = [
        (rows[int(i)].id, float(d), float(s))
        for i, d, s in zip(selection.indices, selection.distances, selection.scores)
    ]
    options = {**dict(selection.options), **({"score": score_spec} if score_spec else {})}
    name = tag_name(iteration)
    if store.tag(name) is not None:
        store.delete_tag(name)
    store.create_tag(name, iteration=iteration, method=method, members=members, options=options)


def _export_batch(
    project: Project, iteration: int, *, predictions: Path | None, model_version: str | None = None
) -> list[Path]:
    tag = tag_name(iteration)
    members = project.store.tag_members(tag)
    out = project.export_dir(tag)
    return [
        _export_items(project, members, out / fmt, fmt, predictions=predictions, model_version=model_version)
        for fmt in project.config.export_formats
    ]


def _export_items(project: Project, members: Sequence[Any], out: Path, fmt: str, *,
                  predictions: Path | None, model_version: str | None) -> Path:
    """Write one batch in one format, with the model's boxes as pre-annotations when there are any."""
    store = project.store
    rows = {r.id: r for r in store.images()}
    dets: dict[int, Detections] = {}
    if predictions is not None and predictions.exists():
        ids, det_list, _ = load_predictions(predictions)
        dets = dict(zip(ids.tolist(), det_list))
    classes = store.classes()
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
                predictions=detections_to_boxes(pred.above(PREANNOTATION_THRESHOLD), classes)
                if pred is not None and classes else (),
                score=m.score,
            )
        )
    return formats.export_batch(fmt, items, out, classes=classes, model_version=model_version,
                                image_url_prefix=project.config.image_url_prefix)


def build_trainer(project: Project, classes: Sequence[str], device: str) -> Any:
    """The project's configured trainer plugin, built for ``classes`` on ``device``."""
    cfg = project.config
    cls = load_trainer(cfg.trainer)
    config = config_from_mapping(cls.Config, cfg.trainer_options, where=f"alloop.toml [trainer] options ({cfg.trainer})")
    return cls(config, list(classes), device)


def _previous_checkpoint(project: Project, iteration: int, classes: Sequence[str]) -> Path | None:
    for prev in reversed(project.store.iterations()):
        if prev.n < iteration and prev.checkpoint:
            path = project.root / prev.checkpoint
            if path.exists():
                return path
            log.warning("checkpoint of iteration %d is missing (%s); training from the configured weights", prev.n, path)
            return None
    return None


def _example(project: Project, row: ImageRow, ann: ImageAnnotation) -> Example:
    return Example(path=imagelib.resolve_in_root(project.image_root, row.path), annotation=ann)


def _candidates(store: Store) -> list[ImageRow]:
    blocked = store.labeled_ids() | store.queued_ids()
    return [r for r in store.images() if r.state == "ok" and r.id not in blocked]


def _rows_by_id(store: Store, ids: set[int]) -> list[ImageRow]:
    return [r for r in store.images() if r.id in ids]


def _predicted_class_counts(project: Project, iteration: int, rows: Sequence[ImageRow], num_classes: int,
                            threshold: float = 0.5) -> np.ndarray:
    counts = np.zeros((len(rows), num_classes), np.float32)
    path = project.predictions_file(iteration)
    if not path.exists():
        return counts
    ids, dets, _ = load_predictions(path)
    pos = {r.id: k for k, r in enumerate(rows)}
    for image_id, det in zip(ids.tolist(), dets):
        if image_id in pos:
            confident = det.labels[det.scores >= threshold]
            counts[pos[image_id]] = np.bincount(confident, minlength=num_classes)[:num_classes]
    return counts


def _write_report(project: Project, iteration: int) -> Path | None:
    try:
        from alloop.report import write_report
    except ImportError:
        return None
    return write_report(project, iteration)


def _discard_iteration(project: Project, iteration: int) -> None:
    project.store.delete_iteration(iteration)
    for path in (project.checkpoint_dir(iteration), project.export_dir(tag_name(iteration)), project.report_dir(iteration)):
        if path.exists():
            shutil.rmtree(path)
    pred = project.predictions_file(iteration)
    if pred.exists():
        pred.unlink()


def _backup(project: Project, iteration: int) -> Path:
    """Copy the store before an iteration touches it; keep the newest few."""
    target = project.backups_dir() / f"alloop-before-iteration-{iteration}.db"
    project.store.backup_to(target)
    backups = sorted(project.backups_dir().glob("alloop-before-iteration-*.db"), key=lambda p: p.stat().st_mtime)
    for old in backups[:-BACKUPS_KEPT]:
        old.unlink()
    return target


def _nan_none(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


__all__ = ["INIT_TAG", "InitResult", "StepResult", "init", "step", "tag_name"]


# --------------------------------------------------------------------------------------------
# commands between rounds: re-select, re-embed, export


def reselect(
    project_dir: Path,
    *,
    n: int | None = None,
    method: str | None = None,
    score: str | None = None,
    options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Selection:
    """Redo the latest batch's selection from stored embeddings and scores (no training), and re-export it.

    Refused once any image of that batch is labeled: labels must stay tied to what was asked for.
    """
    with Project.open(Path(project_dir)) as project:
        store = project.store
        cfg = project.config
        done = [it for it in store.iterations() if it.status == "done"]
        if not done:
            raise ProjectError(f"{project_dir}: no finished iteration to re-select; run `alloop init` first")
        it = done[-1].n
        tag = tag_name(it)
        old = store.tag_members(tag)
        if any(m.image_id in store.labeled_ids() for m in old):
            raise ProjectError(
                f"{project_dir}: batch {tag} is already (partly) labeled; import its labels with `alloop step` instead"
            )
        n = n or len(old)
        method = method or (done[-1].method if it > 0 else cfg.init_method)
        _check_methods(method)
        score = score or done[-1].score_spec or cfg.score
        rows = [r for r in store.images() if r.state == "ok"]
        old_ids = {m.image_id for m in old}
        blocked = store.labeled_ids() | (store.queued_ids() - old_ids)
        needs = available_methods()[method]
        uses = selectors()[method].uses
        if "scores" in needs and it == 0:
            raise ProjectError(f"{project_dir}: {method} needs uncertainty scores; they exist after the first step")
        if "scores" in uses and it > 0:
            parse_score_spec(score)
            if not store.scores(it, score):
                raise ProjectError(
                    f"{project_dir}: score {score} was not computed in iteration {it}; "
                    f"stored: {', '.join(store.score_names(it)) or 'none'}"
                )
        checkpoint = project.root / done[-1].checkpoint if done[-1].checkpoint else None
        scored = "scores" in uses and it > 0
        selection, _ = _select_batch(project, it, rows, method=method, n=n,
                                     score=score if scored else None, blocked=blocked,
                                     checkpoint=checkpoint, options=options, progress=progress)
        with store.transaction():
            _write_selection(store, it, method, rows, selection, score_spec=score if scored else None)
            store.update_iteration(it, method=method, score_spec=score if it > 0 else None)
        _export_batch(project, it, predictions=project.predictions_file(it) if it > 0 else None,
                      model_version=f"iteration-{it}" if it > 0 else None)
        store.set_tag_export_dir(tag, project.relpath(project.export_dir(tag)))
        if it > 0:
            _write_report(project, it)
        return selection


def reembed(project_dir: Path, *, embedder: str | None = None, options: Mapping[str, Any] | None = None,
            progress: bool = True) -> tuple[str, int]:
    """Compute (cached) embeddings of the pool, optionally switching the project's embedder. Returns (key, computed)."""
    with Project.open(Path(project_dir)) as project:
        if embedder or options:
            project.save_config(project.config.with_changes(
                embedder=embedder, embedder_options=dict(options) if options is not None else None))
        rows = [r for r in project.store.images() if r.state == "ok"]
        checkpoint = None
        if project.config.embedder == "detector":
            with_ckpt = [it for it in project.store.iterations() if it.checkpoint]
            if not with_ckpt:
                raise ProjectError(f"{project_dir}: the detector embedder needs a trained model; run `alloop step` first")
            checkpoint = project.root / with_ckpt[-1].checkpoint
        _, key, misses = _embeddings(project, rows, progress=progress, checkpoint=checkpoint)
        return key, misses


def export(project_dir: Path, *, tag: str | None, fmt: str, out: Path | None = None) -> Path:
    """Export a tag's batch (default: the latest) for labeling in ``fmt``; returns the main file."""
    with Project.open(Path(project_dir), lock=False) as project:
        store = project.store
        tags = store.tags()
        if not tags:
            raise ProjectError(f"{project_dir}: no batch selected yet; run `alloop init`")
        chosen = store.tag(tag) if tag else tags[-1]
        if chosen is None:
            raise ConfigError(f"--tag {tag}: no such tag; known tags: {', '.join(t.name for t in tags)}")
        if fmt not in formats.export_formats():
            raise ConfigError(f"--format {fmt}: unknown; batch formats are {', '.join(formats.export_formats())}")
        it = chosen.iteration
        pred = project.predictions_file(it) if it > 0 else None
        target = out or project.export_dir(chosen.name)
        members = store.tag_members(chosen.name)
        return _export_items(project, members, target / fmt if out is None else target, fmt,
                             predictions=pred, model_version=f"iteration-{it}" if it > 0 else None)


def export_training(project_dir: Path, *, fmt: str, out: Path) -> Path:
    """Export every labeled image (train and held-out) for training elsewhere: coco, kitti (TAO) or yolo."""
    with Project.open(Path(project_dir), lock=False) as project:
        if fmt not in formats.train_export_formats():
            raise ConfigError(f"--format {fmt}: unknown; training-set formats are {', '.join(formats.train_export_formats())}")
        train = [a for _, a, _ in project.store.annotations("train", available=True)]
        val = [a for _, a, _ in project.store.annotations("val", available=True)]
        if not train and not val:
            raise ProjectError(f"{project_dir}: nothing is labeled yet; import labels with `alloop step --labels`")
        return formats.export_training_set(fmt, train, Path(out), image_root=project.image_root,
                                           classes=project.store.classes(), val=val)
