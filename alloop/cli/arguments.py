"""Arguments and options several commands share, and the KEY=VALUE option parser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import tomllib
import typer

from alloop.errors import ConfigError

ProjectArg = Annotated[Path, typer.Argument(help="Project directory (holds alloop.toml, alloop.db, artifacts/).")]
BatchOpt = Annotated[
    int, typer.Option("--n", "-n", min=1, help="Batch size: how many NEW images to select for labeling now (not the total).")
]  # defaults: alloop.config.BATCH_SIZE (init, step), DEMO.batch (demo)
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only print warnings and the final summary.")]
EngineOpt = Annotated[str | None, typer.Option(
    "--engine", help="Where embedding and inference run: local (this process) or ray (Ray Data on a Ray cluster; "
    "pip install 'alloop\\[ray]'; images and project on a path every worker sees). Default: \\[engine] name in alloop.toml.")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", help="The Ray cluster of --engine ray, e.g. 10.0.0.5:6379 or ray://head:10001. Default: "
    "\\[engine] address in alloop.toml, else the cluster `ray start` runs on this machine ($RAY_ADDRESS).")]


def parse_options(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """KEY=VALUE pairs; VALUE is read as TOML (numbers, true/false, "strings", [lists]) or a bare string."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE, e.g. {flag} epochs=10")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
    return out


def shown_default(name: str) -> str:
    """The config default of field ``name`` as `--help` shows it (the CLI itself passes None)."""
    from alloop.config import default

    value = default(name)
    return ", ".join(value) if isinstance(value, tuple) else str(value)


def shown_size(size: tuple[int, int]) -> str:
    """(320, 240) as "320x240", the form --size takes."""
    return f"{size[0]}x{size[1]}"


def parse_size(text: str) -> tuple[int, int]:
    """``--size WIDTHxHEIGHT`` as (width, height) pixels."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None
    if width <= 0 or height <= 0:
        raise ConfigError(f"--size {text!r}: width and height must be positive, e.g. 320x240")
    return width, height
