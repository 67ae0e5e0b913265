"""The ``alloop`` command line: parse, call the library, print. No logic and no defaults live here.

One command per module; this file joins them into one Typer app, once. Every option a command
leaves unset reaches the library as None, and :mod:`alloop.config` decides what that means.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from alloop import __version__
from alloop.cli import (
    add,
    backup,
    demo,
    doctor,
    embed,
    export,
    export_model,
    init,
    labelstudio,
    predict,
    report,
    scores,
    select,
    serve,
    simulate,
    status,
    step,
    synth,
    trainers,
)
from alloop.cli.output import console

app = typer.Typer(
    name="alloop",
    help=(
        "Active learning for object detection, offline. Point it at raw images; it picks what to label, "
        "fine-tunes a detector on your labels, and picks the next batch.\n\n"
        "Workflow: `alloop init PROJECT --images DIR` → label the exported batch → "
        "`alloop step PROJECT --labels FILE` → label → step … ; `alloop status PROJECT` at any time."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(f"alloop {__version__}")
        raise typer.Exit()


# The commands, in the order `alloop --help` lists them.
app.command()(init.init)
app.command()(step.step)
app.command()(status.status)
app.command()(trainers.trainers)
app.command()(synth.synth)
app.command()(demo.demo)
app.command()(add.add)
app.command()(doctor.doctor)
app.command()(backup.backup)
app.command()(export.export)
app.command()(predict.predict)
app.command("export-model")(export_model.export_model)
app.command()(embed.embed)
app.command("select")(select.select_cmd)
app.command()(simulate.simulate)
app.command()(report.report)
app.command()(scores.scores)
app.add_typer(labelstudio.app, name="labelstudio")
app.command()(serve.serve)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
