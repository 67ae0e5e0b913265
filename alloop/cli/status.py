"""`alloop status`: iterations, tags, pool counts and unreadable images."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from alloop.cli.arguments import ProjectArg
from alloop.cli.output import console, esc, run


def status(
    project: ProjectArg,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    models: Annotated[bool, typer.Option("--models", help="List each iteration's model instead: checkpoint, size, mAP@0.5, mAP@[.5:.95], the best marked.")] = False,
) -> None:
    """Show iterations (labeled count, mAP, selected batch, export folder), tags and pool counts."""
    if models:
        from alloop.cli.models import show_models

        return show_models(project, as_json)
    from alloop.summary import project_status

    info = run(lambda: project_status(project))
    if as_json:
        console.print_json(json.dumps(info, default=str))
        return
    c = info["counts"]
    console.print(
        f"[bold]{esc(project)}[/]  images {c['images']}  labeled {c['labeled']} (train {c['train']}, held-out {c['val']})"
        f"  queued {c['queued']}  boxes {c['boxes']}  unreadable {c['bad_images']}"
    )
    console.print(f"classes: {esc(', '.join(info['classes'])) or '(none yet)'}")
    table = Table(title="iterations (mAP on the held-out labeled images)", title_justify="left", box=None,
                  padding=(0, 1))
    for col in ("it", "labeled", "train/val", "mAP@.5", "mAP@.5:.95", "method", "score", "picked"):
        table.add_column(col, no_wrap=True, justify="left" if col in ("method", "score") else "right")
    fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    for it in info["iterations"]:
        table.add_row(
            str(it["n"]) + ("" if it["status"] == "done" else "*"),
            str(it["n_labeled"] if it["n_labeled"] is not None else "–"),
            f"{it['n_train'] or 0}/{it['n_val'] or 0}" if it["n"] else "–",
            fmt(it["map50"]), fmt(it["map"]), esc(it["method"] or "–"), esc(it["score_spec"] or "–"),
            str(it["selected"]),
        )
    console.print(table)
    if info["next"]:
        console.print(f"* {esc(info['next'])}", highlight=False)
    latest = next((it for it in reversed(info["iterations"]) if it["export_dir"]), None)
    if latest:
        console.print(f"current batch ({esc(latest['tag'])}, {latest['selected']} images): {esc(latest['export_dir'])}")
    if info["bad_images"]:
        console.print(f"[yellow]unreadable images ({len(info['bad_images'])}):[/]")
        for path, reason in info["bad_images"][:10]:
            console.print(f"  {esc(path)}: {esc(reason)}", highlight=False)
