"""`alloop report`: write the selection report of an iteration."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from alloop.cli.arguments import ProjectArg
from alloop.cli.output import console, err_console, esc, run


def report(
    project: ProjectArg,
    iteration: Annotated[Optional[int], typer.Option("--iteration", "-i", min=0, help="Iteration to report on (0 = init). Default: the latest.")] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the report in your web browser afterwards.")] = False,
) -> None:
    """Write the selection report of an iteration: why these images, and is the model improving.

    One self-contained HTML page (works offline) plus selection.csv, learning_curve.csv, classes.csv,
    scores.csv, embedding_map.csv and report.json beside it, under artifacts/reports/iteration-N/.
    `alloop step` writes it automatically; run this to regenerate it or to report on an older iteration.
    """
    from alloop.report import write_project_report

    path = run(lambda: write_project_report(project, iteration))
    console.print(f"[green]✓[/] report: {esc(path)}")
    if open_:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            err_console.print(f"[yellow]could not start a browser;[/] open {esc(path)} yourself", highlight=False)
