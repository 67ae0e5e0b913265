"""``write_report``: gather, render and write one iteration's report folder atomically."""

from __future__ import annotations

import logging
from pathlib import Path

from alloop import atomic
from alloop.errors import ProjectError
from alloop.project import Project
from alloop.report.data import gather_report_data
from alloop.report.model_card import write_model_card
from alloop.report.render import MAX_THUMBNAILS, render_html
from alloop.report.tables import write_tables

log = logging.getLogger("alloop")


def write_report(project: Project, iteration: int, *, max_thumbnails: int = MAX_THUMBNAILS) -> Path:
    """Write ``index.html`` (self-contained) and its CSV/JSON files under ``project.report_dir(iteration)``.

    Returns the path of ``index.html``. The data files are written first, the page last, so a
    page that exists always has its data beside it.
    """
    data = gather_report_data(project, iteration)
    directory = project.report_dir(iteration)
    write_tables(data, directory)
    write_model_card(project, iteration, data.model_card)  # model_card.md beside the checkpoint, when there is one
    html = render_html(data, max_thumbnails=max_thumbnails)
    target = directory / "index.html"
    atomic.write_text(target, html)
    log.info("report of iteration %d: %s", iteration, project.relpath(target))
    return target


def write_project_report(root: Path, iteration: int | None = None) -> Path:
    """Open the project at ``root`` read-only and write the report of ``iteration`` (default: the latest)."""
    # No lock: the report only reads the store (WAL allows it while a step runs) and writes its own folder.
    with Project.open(Path(root), lock=False) as project:
        iterations = project.store.iterations()
        if not iterations:
            raise ProjectError(f"{root}: no iterations yet; run `alloop init {root} --images DIR` first")
        return write_report(project, iterations[-1].n if iteration is None else iteration)


__all__ = ["write_project_report", "write_report"]
