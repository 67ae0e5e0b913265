"""`alloop select`: redo the current batch's selection without training."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from alloop.cli.arguments import ProjectArg, QuietOpt, parse_options
from alloop.cli.output import console, esc, run, setup_logging


def select_cmd(
    project: ProjectArg,
    n: Annotated[Optional[int], typer.Option("--n", "-n", min=1, help="Batch size (default: the current batch's size).")] = None,
    method: Annotated[Optional[str], typer.Option(help="auto, coral, ppal (uncertain candidates, then category-conditioned box diversity), typiclust, maxherding, coreset or random.")] = None,
    score: Annotated[Optional[str], typer.Option(help="Score NAME:AGG for coral (any score stored this iteration).")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Selection option KEY=VALUE, e.g. -o alpha=0.3, -o score_threshold=0.2, -o balance=true.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Redo the current batch's selection from stored embeddings and scores, without training; re-export it."""
    from alloop import loop

    setup_logging(quiet)
    sel = run(lambda: loop.reselect(project, n=n, method=method, score=score,
                                     options=parse_options(option, "--option"), progress=not quiet))
    console.print(f"[green]✓[/] {len(sel.indices)} images re-selected with {esc(sel.method)} {esc(dict(sel.options))}")
