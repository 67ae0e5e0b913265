"""`alloop labelstudio push|pull`: the labeling round through a live Label Studio, no files to carry."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from alloop.cli.arguments import BatchOpt, ProjectArg, QuietOpt
from alloop.cli.output import console, esc, print_step_result, run, setup_logging
from alloop.config import BATCH_SIZE

app = typer.Typer(
    name="labelstudio",
    help=(
        "Label in a running Label Studio: `push` sends the current batch as tasks with the model's boxes as "
        "pre-annotations, `pull` imports the submitted annotations, runs `alloop step` and pushes the next batch. "
        "Connection: $LABEL_STUDIO_URL (or \\[labelstudio] url in alloop.toml) and $LABEL_STUDIO_API_KEY "
        "(Account & Settings → Access Token)."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

UrlOpt = Annotated[str | None, typer.Option("--url", help="Label Studio URL. Default: \\[labelstudio] url in alloop.toml, else $LABEL_STUDIO_URL.")]
LsProjectOpt = Annotated[int | None, typer.Option("--ls-project", min=1, help="Use this existing Label Studio project (its id, from the URL /projects/ID). Default: \\[labelstudio] project, else the one the first push created.")]


def _print_push(r: Any) -> None:
    what = "created" if r.new_project else "using"
    console.print(f"[green]✓[/] {what} Label Studio project {r.project_id}: {esc(r.project_url)}")
    console.print(f"[green]✓[/] batch {esc(r.tag)}: {r.created} new task(s) with {r.predictions} pre-annotated box(es)"
                  + (f", {r.existing} already there" if r.existing else "")
                  + (f", {r.labeled} labeled already" if r.labeled else ""))


@app.command()
def push(
    project: ProjectArg,
    url: UrlOpt = None,
    ls_project: LsProjectOpt = None,
    title: Annotated[str | None, typer.Option(help="Title of a new Label Studio project. Default: alloop <project folder name>.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Send the current batch to Label Studio (creating the project, its labeling interface and image storage).

    Pushing again adds only the tasks Label Studio does not have yet.
    """
    from alloop.labelstudio.sync import connection_for
    from alloop.labelstudio.sync import push as push_batch

    setup_logging(quiet)
    r = run(lambda: push_batch(project, connection_for(project, url), ls_project=ls_project, title=title))
    _print_push(r)
    console.print(f"\nNext: label the tasks (Submit), then `alloop labelstudio pull {esc(project)}`")


@app.command()
def pull(
    project: ProjectArg,
    n: BatchOpt = BATCH_SIZE,
    url: UrlOpt = None,
    ls_project: LsProjectOpt = None,
    push_next: Annotated[bool, typer.Option("--push/--no-push", help="Push the next batch to Label Studio after the step.")] = True,
    quiet: QuietOpt = False,
) -> None:
    """Import the annotations submitted in Label Studio, run `alloop step`, and push the next batch.

    Only new or changed annotations count: pulling twice imports nothing twice.
    """
    from alloop.labelstudio.sync import connection_for, step_from_labelstudio
    from alloop.labelstudio.sync import push as push_batch

    setup_logging(quiet)

    def go() -> Any:
        connection = connection_for(project, url)
        pulled, stepped = step_from_labelstudio(project, connection, n=n, ls_project=ls_project, progress=not quiet)
        pushed = push_batch(project, connection, ls_project=ls_project) if push_next else None
        return pulled, stepped, pushed

    pulled, r, pushed = run(go)
    if pulled is not None:
        console.print(f"[green]✓[/] pulled {pulled.annotated} annotated task(s) from Label Studio project "
                      f"{pulled.project_id}: {pulled.new} new, {pulled.changed} changed; {pulled.waiting} still to label")
    print_step_result(r)
    if r.report:
        console.print(f"  report: {esc(r.report)}")
    if pushed is not None:
        _print_push(pushed)
        console.print(f"\nNext: label the new tasks, then `alloop labelstudio pull {esc(project)} --n {n}`")
    else:
        console.print(f"\nNext: `alloop labelstudio push {esc(project)}`")
