"""What every command shares at the edge: the consoles, escaping, logging, and AlloopError → one line."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from alloop.atomic import disk_full
from alloop.errors import AlloopError

T = TypeVar("T")

console = Console(stderr=False)
err_console = Console(stderr=True)


def setup_logging(quiet: bool) -> None:
    """Log to stderr through Rich; ``quiet`` keeps only warnings."""
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )


def esc(value: Any) -> str:
    """``value`` as text Rich prints literally: file, class and option names may hold "[...]" (issue 19)."""
    return escape(str(value))


def run(fn: Callable[[], T]) -> T:
    """Call the library; an AlloopError becomes one line on stderr and its exit code (1 unless it says)."""
    try:
        return fn()
    except AlloopError as exc:
        err_console.print(f"[bold red]error:[/] {esc(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err_console.print(
            "[yellow]interrupted:[/] finished stages are saved; run the same command again to resume", highlight=False
        )
        raise typer.Exit(130) from None
    except Exception as exc:
        # A full disk under a writer that does not name it (a plain open(), a library) is still one line.
        full = disk_full(exc)
        if full is None:
            raise
        err_console.print(f"[bold red]error:[/] {esc(full)}", highlight=False, soft_wrap=True)
        raise typer.Exit(full.exit_code) from None


def print_step_result(r: Any) -> None:
    """What a step did (``alloop step`` and ``alloop labelstudio pull``): warnings, labels, training, mAP."""
    for w in r.warnings:
        err_console.print(f"[yellow]warning:[/] {esc(w)}", highlight=False)
    imp = r.imported
    console.print(f"[green]✓[/] iteration {r.iteration}: labels new {imp.get('new', 0)}, corrected {imp.get('corrected', 0)}"
                  f"; trained on {r.n_train}, held out {r.n_val}")
    if r.map50 is not None:
        console.print(f"[green]✓[/] held-out mAP@0.5 = {r.map50:.3f}, mAP@[.5:.95] = {r.map:.3f} ({r.n_val} images)")
