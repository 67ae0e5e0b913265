"""`alloop embed`: compute the pool's embeddings now, or switch the embedder."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from alloop.cli.arguments import EngineOpt, ProjectArg, QuietOpt, RayAddressOpt, parse_options
from alloop.cli.output import console, esc, run, setup_logging


def embed(
    project: ProjectArg,
    embedder: Annotated[Optional[str], typer.Option(help="Switch the project's embedder: ssl, backbone, detector.")] = None,
    embedder_option: Annotated[Optional[list[str]], typer.Option("--embedder-option", "-E", help="Embedder setting KEY=VALUE (repeatable); replaces the stored options.")] = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Compute the pool's embeddings now (only images not cached under this embedder config)."""
    from alloop import loop

    setup_logging(quiet)
    opts = parse_options(embedder_option, "--embedder-option") if embedder_option else None
    key, computed = run(lambda: loop.reembed(project, embedder=embedder, options=opts, progress=not quiet,
                                             engine=engine, ray_address=ray_address))
    console.print(f"[green]✓[/] embeddings {esc(key)}: {computed} computed, the rest from cache")
