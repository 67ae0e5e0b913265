"""`alloop trainers`: the installed detector plugins and their options."""

from __future__ import annotations

from alloop.cli.output import console, esc, run


def trainers() -> None:
    """List installed detector plugins and their options."""
    from alloop.summary import trainer_catalog

    for name, entry in run(trainer_catalog).items():
        console.print(f"[bold]{esc(name)}[/]  ({esc(entry['entry_point'])})")
        for opt, default in entry["options"].items():
            help_line = entry["help"].get(opt, "")
            comment = f"  [dim]# {esc(help_line)}[/]" if help_line else ""
            console.print(f"    {esc(opt)} = {esc(repr(default))}{comment}", highlight=False)
