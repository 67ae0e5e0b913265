"""`alloop backup`: a consistent copy of the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from alloop.cli.arguments import ProjectArg
from alloop.cli.output import console, esc, run


def backup(
    project: ProjectArg,
    out: Annotated[Optional[Path], typer.Option(help="Backup file (default: artifacts/backups/alloop-<time>.db).")] = None,
) -> None:
    """Write a consistent copy of the store (safe while a step runs)."""
    from alloop.project import Project

    def go() -> Path:
        with Project.open(project, lock=False) as p:
            return p.backup(out)

    console.print(f"[green]✓[/] store copied to {esc(run(go))}")
