"""`alloop scores`: the uncertainty scores --score accepts."""

from __future__ import annotations

from alloop.cli.output import console


def scores() -> None:
    """List the uncertainty scores (NAME:AGG) that --score accepts."""
    from alloop.score import DEFAULT_SCORE, available_scores

    for spec in available_scores():
        console.print(spec + ("   (default)" if spec == DEFAULT_SCORE else ""), highlight=False)
