"""`alloop status --models`: each iteration's detector with its checkpoint, size and held-out mAP."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from alloop.cli.output import console, esc, run


def show_models(project: Path, as_json: bool) -> None:
    """Print the models table (or JSON), the best by held-out mAP@0.5 marked."""
    from alloop.model import project_models

    models, best = run(lambda: project_models(project))
    if as_json:
        rows = [{"iteration": m.iteration, "checkpoint": str(m.checkpoint) if m.checkpoint else None,
                 "bytes": m.size_bytes, "map50": m.map50, "map": m.map, "n_labeled": m.n_labeled,
                 "best": m.iteration == best} for m in models]
        console.print_json(json.dumps({"models": rows, "best": best}))
        return
    table = Table(title="models (mAP on the held-out labeled images; ★ best by mAP@0.5, what predict and "
                  "export-model use by default)", title_justify="left", box=None, padding=(0, 1))
    for col in ("it", "labeled", "mAP@.5", "mAP@.5:.95", "size"):
        table.add_column(col, no_wrap=True, justify="right")
    table.add_column("checkpoint", overflow="fold")
    root = Path(project).resolve()
    fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    for m in models:
        shown = m.checkpoint.relative_to(root) if m.checkpoint and m.checkpoint.is_relative_to(root) else m.checkpoint
        where = "none" if shown is None else esc(shown) + ("" if m.available else " (missing)")
        table.add_row(f"{'★ ' if m.iteration == best else ''}{m.iteration}",
                      str(m.n_labeled if m.n_labeled is not None else "–"), fmt(m.map50), fmt(m.map),
                      f"{m.size_bytes / 1e6:.1f} MB" if m.size_bytes is not None else "–", where)
    console.print(table)
    if not models:
        console.print(f"no model yet: label the first batch and run `alloop step {esc(project)} --labels FILE`",
                      highlight=False)
