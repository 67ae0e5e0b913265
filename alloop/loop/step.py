"""``alloop step`` = iteration n ≥ 1: import → train → evaluate → infer → score → select → export → report."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from alloop import formats
from alloop.device import resolve_device
from alloop.errors import LabelError
from alloop.loop.batch import export_stage, method_options, next_batch_blocked, select_next_batch
from alloop.loop.evaluate import evaluate_model
from alloop.loop.infer import predict_pool
from alloop.loop.labels import Annotator, check_resumed_labels, import_labels
from alloop.loop.plan import check_sizes, plan_step
from alloop.loop.records import ExportInfo, ImportInfo, ReportInfo, StepSelectInfo, tag_name
from alloop.loop.report import report_stage
from alloop.loop.runner import StageRunner, Turn
from alloop.loop.score import quality_of, score_pool
from alloop.loop.train import LabeledSet, build_trainer, train_model, with_box_features
from alloop.project import Project
from alloop.select import inputs_read, selector_for
from alloop.store import now

log = logging.getLogger("alloop")


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
    checkpoint: Path | None = None  # the model this step trained
    batch_size: int = 0  # the --n this step ran with (a resumed step's own unless a new one was given)
    pool_exhausted: bool = False  # nothing was left to select: every usable image is labeled or queued


def step(
    project_dir: Path,
    *,
    labels: Path | None,
    n: int | None = None,
    label_format: str | None = None,
    method: str | None = None,
    score: str | None = None,
    import_options: formats.ImportOptions | None = None,
    restart: bool = False,
    progress: bool = True,
    device: str | None = None,
    annotator: Annotator | None = None,
    infer_pool: bool = True,
    budget_boxes: int | None = None,
    engine: str | None = None,
    ray_address: str | None = None,
) -> StepResult:
    """One turn of the loop after a labeling round: the stages above, each resumed if it finished before.

    ``n`` is the batch size (new images to select; None: the resumed step's, else the default); a
    resumed step takes a new one while its batch is not selected yet. ``budget_boxes``: size the
    batch by estimated boxes to label instead (``n`` then caps it; see :mod:`alloop.select.budget`).
    ``annotator`` writes the label file when ``labels`` is None (the demo's oracle);
    ``infer_pool=False`` skips the pool's predictions when the method uses no scores (a simulation
    saves most of a step's time).
    """
    check_sizes(n, budget_boxes)
    with Project.open(Path(project_dir)) as project:
        plan = plan_step(project, n=n, method=method, score=score, budget_boxes=budget_boxes, restart=restart,
                         labels=labels)
        # --device, --engine and --ray-address apply to this step only; they are not saved in alloop.toml.
        project.config = project.config.with_changes(device=resolve_device(device or project.config.device),
                                                     engine=engine, ray_address=ray_address)
        store, it = project.store, plan.iteration
        turn, stages = Turn(project, it, progress), StageRunner(store, it)
        classes_before = store.classes()
        check_resumed_labels(turn, labels)
        imported = stages.run("import", partial(import_labels, turn, plan, labels, label_format,
                                                import_options or formats.ImportOptions(), annotator))
        classes = store.classes()
        if not classes:
            raise LabelError("no classes known yet: the label file defined none; check it has categories/labels")
        if classes_before and classes != classes_before:
            log.info("classes changed (%s); the box predictor is re-initialised", ", ".join(classes))
        blocked = next_batch_blocked(store)  # what the selection will count as labeled
        n_blocked = sum(1 for r in turn.usable_rows() if r.id in blocked)
        if "boxes" in inputs_read(plan.method, method_options(project.config, plan.method), n_blocked):
            project.config = with_box_features(project.config)  # the selection compares box features
        trainer = build_trainer(project, classes, project.config.device)
        data = LabeledSet.of(project)
        trained = stages.run("train", partial(train_model, turn, trainer, data))
        checkpoint = project.root / (trained.checkpoint or store.iteration(it).checkpoint)
        evaluated = stages.run("evaluate", partial(evaluate_model, turn, trainer, checkpoint, data, classes))
        # Pool predictions feed the scores, the pre-annotations, the report and a box budget's cost estimate.
        needed = infer_pool or plan.budget_boxes or "scores" in selector_for(plan.method).uses
        pool = turn.candidates() if needed else []
        stages.run("infer", partial(predict_pool, turn, trainer, checkpoint, pool, len(classes), plan.score))
        stages.run("score", partial(score_pool, turn, plan.score, quality_of(evaluated, classes)))
        selected = stages.run("select", partial(select_next_batch, turn, method=plan.method, score=plan.score,
                                                n=plan.n, budget_boxes=plan.budget_boxes, checkpoint=checkpoint))
        exported = stages.run("export", partial(export_stage, turn))
        reported = stages.run("report", partial(report_stage, turn))
        store.update_iteration(it, status="done", finished_at=now(), timings=stages.timings)
        return replace(_result(turn, stages, imported, selected, exported, reported), batch_size=plan.n)


def _result(turn: Turn, stages: StageRunner, imported: ImportInfo, selected: StepSelectInfo, exported: ExportInfo,
            reported: ReportInfo) -> StepResult:
    store, project, it = turn.store, turn.project, turn.iteration
    record = store.iteration(it)
    tag = tag_name(it)
    batch = {m.image_id for m in store.tag_members(tag)}
    still = tuple(sorted(r.path for r in turn.rows_by_id(store.queued_ids() - batch)))
    return StepResult(
        iteration=it,
        imported=imported.counts,
        still_queued=still,
        warnings=imported.warnings or (),
        n_train=record.n_train or 0,
        n_val=record.n_val or 0,
        map50=record.map50,
        map=record.map,
        tag=tag,
        n_selected=selected.selected,
        export_dir=project.export_dir(tag),
        exports=tuple(Path(f) for f in exported.files),
        report=project.root / reported.file if reported.file else None,
        timings=dict(stages.timings),
        resumed_stages=stages.resumed,
        checkpoint=project.root / record.checkpoint if record.checkpoint else None,
        pool_exhausted=selected.selected == 0,
    )
