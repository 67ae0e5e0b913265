"""Commands between rounds: re-select the latest batch, re-embed the pool, export a batch or the training set."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alloop import formats
from alloop.errors import ConfigError, ProjectError
from alloop.loop.batch import check_method, export_batch, export_items, select_rows, write_selection
from alloop.loop.embed import pool_embeddings
from alloop.loop.records import tag_name
from alloop.loop.report import write_report_page
from alloop.project import Project
from alloop.score import parse_score_spec
from alloop.select import Selection, selector_for
from alloop.store import Iteration


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
        latest = _latest_finished(project)
        it, tag = latest.n, tag_name(latest.n)
        old = store.tag_members(tag)
        if any(m.image_id in store.labeled_ids() for m in old):
            raise ProjectError(
                f"{project_dir}: batch {tag} is already (partly) labeled; import its labels with `alloop step` instead"
            )
        method = method or (latest.method if it > 0 else project.config.init_method)
        check_method(method)
        score = score or latest.score_spec or project.config.score
        scored = "scores" in selector_for(method).uses and it > 0
        _check_scores(project, it, method, score, scored)
        rows = store.images(state="ok")
        blocked = store.labeled_ids() | (store.queued_ids() - {m.image_id for m in old})
        checkpoint = project.root / latest.checkpoint if latest.checkpoint else None
        selection = select_rows(project, it, rows, method=method, n=n or len(old),
                                score=score if scored else None, blocked=blocked,
                                checkpoint=checkpoint, options=options, progress=progress).selection
        with store.transaction():
            write_selection(store, it, method, rows, selection, score_spec=score if scored else None)
            store.update_iteration(it, method=method, score_spec=score if it > 0 else None)
        export_batch(project, it, predictions=project.predictions_file(it) if it > 0 else None,
                     model_version=f"iteration-{it}" if it > 0 else None)
        store.set_tag_export_dir(tag, project.relpath(project.export_dir(tag)))
        if it > 0:
            write_report_page(project, it)
        return selection


def _latest_finished(project: Project) -> Iteration:
    done = [it for it in project.store.iterations() if it.status == "done"]
    if not done:
        raise ProjectError(f"{project.root}: no finished iteration to re-select; run `alloop init` first")
    return done[-1]


def _check_scores(project: Project, iteration: int, method: str, score: str, scored: bool) -> None:
    """Refuse a method that needs scores before any exist, or a score the iteration did not compute."""
    if "scores" in selector_for(method).needs and iteration == 0:
        raise ProjectError(f"{project.root}: {method} needs uncertainty scores; they exist after the first step")
    if scored:
        parse_score_spec(score)
        if not project.store.scores(iteration, score):
            raise ProjectError(
                f"{project.root}: score {score} was not computed in iteration {iteration}; "
                f"stored: {', '.join(project.store.score_names(iteration)) or 'none'}"
            )


def reembed(project_dir: Path, *, embedder: str | None = None, options: Mapping[str, Any] | None = None,
            progress: bool = True, engine: str | None = None, ray_address: str | None = None) -> tuple[str, int]:
    """Compute (cached) embeddings of the pool, optionally switching the project's embedder. Returns (key, computed)."""
    with Project.open(Path(project_dir)) as project:
        if embedder or options:
            project.save_config(project.config.with_changes(
                embedder=embedder, embedder_options=dict(options) if options is not None else None))
        # --engine and --ray-address apply to this command only (after the save: not written to alloop.toml).
        project.config = project.config.with_changes(engine=engine, ray_address=ray_address)
        rows = project.store.images(state="ok")
        checkpoint = None
        if project.config.embedder in ("detector", "auto"):  # auto: the detector's features once trained
            with_ckpt = [it for it in project.store.iterations() if it.checkpoint]
            if not with_ckpt and project.config.embedder == "detector":
                raise ProjectError(f"{project_dir}: the detector embedder needs a trained model; run `alloop step` first")
            checkpoint = project.root / with_ckpt[-1].checkpoint if with_ckpt else None
        _, key, misses = pool_embeddings(project, rows, progress=progress, checkpoint=checkpoint)
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
        return export_items(project, members, target / fmt if out is None else target, fmt,
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
