"""`alloop add`: register images added to the image root since init."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from alloop.cli.arguments import ProjectArg, QuietOpt
from alloop.cli.output import console, err_console, esc, run, setup_logging


def add(
    project: ProjectArg,
    images: Annotated[Optional[Path], typer.Option("--images", "-i", help="Folder inside the image root to scan (default: the whole root).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Register images added to the image root since init (they are embedded and considered at the next step)."""
    from alloop.pool import register
    from alloop.project import Project

    setup_logging(quiet)

    def go() -> Any:
        with Project.open(project) as p:
            return register(p, root=images, progress=not quiet)

    r = run(go)
    console.print(f"[green]✓[/] {r.added} new images registered ({r.known} already known)")
    for path, reason in r.bad:
        err_console.print(f"[yellow]skipped[/] {esc(path)}: {esc(reason)}", highlight=False)
