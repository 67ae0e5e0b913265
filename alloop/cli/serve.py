"""`alloop serve`: the current model as a Label Studio ML backend (pre-annotations while labeling)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from alloop.cli.arguments import ProjectArg, QuietOpt
from alloop.cli.output import console, esc, run, setup_logging
from alloop.config import BATCH_SIZE, SERVE


def serve(
    project: ProjectArg,
    host: Annotated[str, typer.Option(help="Address to listen on; 127.0.0.1 keeps it on this machine.")] = SERVE.host,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = SERVE.port,
    threshold: Annotated[float | None, typer.Option("--preannotation-threshold", min=0.0, max=1.0, help="Send only boxes scoring at least this. Default: \\[preannotation] threshold in alloop.toml.")] = None,
    max_boxes: Annotated[int | None, typer.Option("--preannotation-max-boxes", min=1, help="Send at most this many boxes per image, best first. Default: \\[preannotation] max_boxes.")] = None,
    connect: Annotated[bool, typer.Option("--connect/--no-connect", help="Register this backend with the Label Studio project `alloop labelstudio push` linked ($LABEL_STUDIO_URL, $LABEL_STUDIO_API_KEY).")] = False,
    train_after: Annotated[int | None, typer.Option(min=1, help="Run `alloop step` on Label Studio's labels (and push the next batch) after this many new or changed annotations (webhook events). Default: never.")] = None,
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="Batch size of the steps --train-after runs.")] = BATCH_SIZE,
    device: Annotated[str | None, typer.Option(help="Override the project's device: auto, cpu, cuda, cuda:N.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Serve the newest trained model to Label Studio as an ML backend (/health, /setup, /predict, /webhook).

    In Label Studio: project Settings → Model → Connect Model, URL http://HOST:PORT (or --connect). Start Label
    Studio with ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false to let it reach a backend on 127.0.0.1.
    A newer model is picked up after each `alloop step`. Ctrl+C stops the server.
    """
    from alloop.labelstudio.backend import BackendServer, Predictor, Trainer, connect_backend
    from alloop.labelstudio.client import Client
    from alloop.labelstudio.sync import connection_for, load_link
    from alloop.preannotate import Preannotation
    from alloop.project import Project

    setup_logging(quiet)

    def go() -> Any:
        with Project.open(project, lock=False) as p:
            cfg = p.config
            link = load_link(p)
        rule = Preannotation(threshold if threshold is not None else cfg.preannotation_threshold,
                             max_boxes if max_boxes is not None else cfg.preannotation_max_boxes)
        predictor = Predictor(project, rule, device=device)
        connection = connection_for(project) if (connect or train_after) else None
        trainer = Trainer(project, train_after, n=n, connection=connection, step_options={}) if train_after else None
        try:
            server = BackendServer(predictor, host, port, trainer=trainer)
        except OSError as e:
            from alloop.errors import ConfigError

            raise ConfigError(f"--host {host} --port {port}: cannot listen ({e.strerror}); pick another --port") from None
        connected = None
        if connect:
            project_id = cfg.labelstudio_project or (link.project_id if link else None)
            if project_id is None:
                from alloop.labelstudio.client import LabelStudioError

                raise LabelStudioError(f"--connect: {project} is linked to no Label Studio project; run "
                                       f"`alloop labelstudio push {project}` first")
            connected = (project_id, connect_backend(Client(connection), project_id, server.url))
        return server, predictor, connected

    server, predictor, connected = run(go)
    console.print(f"[green]✓[/] ML backend for {esc(project)} at [bold]{esc(server.url)}[/] "
                  f"(model {esc(predictor.model_version())}; boxes ≥ {predictor.rule.threshold}, "
                  f"at most {predictor.rule.max_boxes} per image)")
    if connected:
        console.print(f"[green]✓[/] connected to Label Studio project {connected[0]}")
    else:
        console.print(f"  Label Studio: Settings → Model → Connect Model → URL {esc(server.url)}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.server_close()
