"""`alloop doctor`: check the store against the files, and repair what is safe."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from alloop.cli.arguments import ProjectArg
from alloop.cli.output import console, esc, run


def doctor(
    project: ProjectArg,
    repair: Annotated[bool, typer.Option(help="Apply the safe fixes: set aside missing images, re-hash changed unlabeled ones, delete temporary files left by interrupted writes. Labels are never touched.")] = False,
) -> None:
    """Check the store against the files: missing or changed images, a moved image root, store integrity, orphaned artifacts and temporary files."""
    from alloop.pool import check
    from alloop.project import Project

    def go() -> Any:
        with Project.open(project) as p:
            return check(p, repair=repair)

    r = run(go)
    for f in r.findings:
        console.print(f"[yellow]{esc(f.kind)}[/] {esc(f.subject)}: {esc(f.detail)} → {esc(f.fix)}", highlight=False)
    for line in r.repaired:
        console.print(f"[green]repaired[/] {esc(line)}", highlight=False)
    if r.ok:
        console.print(f"[green]✓[/] {r.checked_images} images checked, store and files agree")
    else:
        raise typer.Exit(1 if not repair else 0)
