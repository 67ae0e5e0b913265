"""What a step will do: which iteration, batch size, method and score, resumed or fresh."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alloop.config import BATCH_SIZE
from alloop.errors import ConfigError, ProjectError
from alloop.loop.batch import check_method
from alloop.loop.records import tag_name
from alloop.project import Project
from alloop.score import parse_score_spec
from alloop.select.compose import spec_score
from alloop.store import Store

log = logging.getLogger("alloop")

BACKUPS_KEPT = 5


@dataclass(frozen=True)
class StepPlan:
    """The choices of one step; a resumed step keeps those it started with so its stages agree."""

    iteration: int
    n: int
    method: str
    score: str
    budget_boxes: int | None
    resumed: bool

    def config(self, labels: Path | None) -> dict[str, Any]:
        """The iteration's stored settings (the store's ``iterations.config``)."""
        return {"n": self.n, "method": self.method, "score": self.score, "labels": str(labels),
                **({"budget_boxes": self.budget_boxes} if self.budget_boxes else {})}


def check_sizes(n: int | None, budget_boxes: int | None) -> None:
    """Refuse a batch size or box budget that is not a positive number."""
    if n is not None and n <= 0:
        raise ConfigError(f"--n must be a positive batch size, got {n}")
    if budget_boxes is not None and (isinstance(budget_boxes, bool) or budget_boxes <= 0):
        raise ConfigError(f"--budget-boxes must be a positive number of boxes, got {budget_boxes}")


def init_finished(store: Store) -> bool:
    """Whether init (iteration 0) ran to the end: the one rule for "is this project initialised"."""
    first = store.iteration(0)
    return first is not None and first.status == "done"


def plan_step(project: Project, *, n: int | None, method: str | None, score: str | None, budget_boxes: int | None,
              restart: bool, labels: Path | None) -> StepPlan:
    """The next iteration, or the unfinished one resumed (or thrown away and restarted with ``restart``).

    A resumed step keeps the method and score it started with, so its stages agree; a new batch size
    or box budget applies while its batch is not selected yet. ``n`` None: the resumed step's, else
    the default batch size.
    """
    store = project.store
    if not init_finished(store):
        raise ProjectError(f"{project.root}: init has not finished; run `alloop init {project.root} --images DIR` first")
    last = store.iterations()[-1]
    it = last.n + 1
    if last.status == "running":
        it = last.n
        if restart:
            log.warning("restarting iteration %d from scratch (labels are kept)", it)
            discard_iteration(project, it)
    existing = store.iteration(it)
    if existing is None:
        _refuse_when_nothing_is_left(project, labels)
    else:
        n, budget_boxes = _resumed_sizes(store, it, n, budget_boxes)
        method, score = existing.method, existing.score_spec
    n = n or BATCH_SIZE
    method = method or project.config.selection_method
    score = spec_score(method, score) or score or project.config.score
    check_method(method)
    parse_score_spec(score)
    if existing is None:
        backup(project, it)
    return StepPlan(it, n, method, score, budget_boxes, resumed=existing is not None)


def _resumed_sizes(store: Store, iteration: int, n: int | None,
                   budget_boxes: int | None) -> tuple[int | None, int | None]:
    """The resumed step's batch size and box budget: new ones apply (and are stored) until its batch is picked."""
    record = store.iteration(iteration)
    stored_n, stored_budget = record.config.get("n"), record.config.get("budget_boxes")
    if "select" in store.stages(iteration) or (n in (None, stored_n) and budget_boxes in (None, stored_budget)):
        return stored_n or n, stored_budget or budget_boxes
    n, budget_boxes = n or stored_n, budget_boxes or stored_budget
    log.info("iteration %d resumes with batch size %s (was %s)%s", iteration, n, stored_n,
             f" and box budget {budget_boxes}" if budget_boxes else "")
    config = {**record.config, "n": n, **({"budget_boxes": budget_boxes} if budget_boxes else {})}
    store.update_iteration(iteration, config=config)
    return n, budget_boxes


def _refuse_when_nothing_is_left(project: Project, labels: Path | None) -> None:
    """A step with no label file after the pool ran out has nothing to do: say where the final model is."""
    store = project.store
    if labels is not None or store.queued_ids():
        return
    usable = [r.id for r in store.images(state="ok")]
    labeled = store.labeled_ids()
    if any(i not in labeled for i in usable):
        return
    last = next((it for it in reversed(store.iterations()) if it.checkpoint), None)
    model = project.root / last.checkpoint if last else "none (no step has trained yet)"
    raise ProjectError(
        f"{project.root}: all {len(usable)} usable images are labeled; the final model is at {model}. "
        "Add images with `alloop add` to go on, or pass --labels FILE with corrections to retrain"
    )


def discard_iteration(project: Project, iteration: int) -> None:
    """Throw an unfinished iteration away (its rows, checkpoints, exports, report, predictions), never labels."""
    project.store.delete_iteration(iteration)
    for path in (project.checkpoint_dir(iteration), project.export_dir(tag_name(iteration)),
                 project.report_dir(iteration)):
        if path.exists():
            shutil.rmtree(path)
    pred = project.predictions_file(iteration)
    if pred.exists():
        pred.unlink()


def backup(project: Project, iteration: int) -> Path:
    """Copy the store before an iteration touches it; keep the newest few."""
    target = project.backups_dir() / f"alloop-before-iteration-{iteration}.db"
    project.store.backup_to(target)
    backups = sorted(project.backups_dir().glob("alloop-before-iteration-*.db"), key=lambda p: p.stat().st_mtime)
    for old in backups[:-BACKUPS_KEPT]:
        old.unlink()
    return target
