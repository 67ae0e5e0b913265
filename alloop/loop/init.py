"""``alloop init`` = iteration 0: register → embed → select → export → report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from alloop import images as imagelib
from alloop.errors import ConfigError, ProjectError
from alloop.loop.batch import check_method, export_stage, select_first_batch
from alloop.loop.embed import embed_pool
from alloop.loop.plan import check_sizes, init_finished
from alloop.loop.records import INIT_TAG
from alloop.loop.register import register_images
from alloop.loop.report import report_stage
from alloop.loop.runner import StageRunner, Turn
from alloop.project import Project, ProjectConfig
from alloop.store import now

log = logging.getLogger("alloop")


@dataclass(frozen=True)
class InitResult:
    """What init did."""

    project: Path
    n_images: int
    bad_images: tuple[tuple[str, str], ...]
    tag: str
    n_selected: int
    export_dir: Path
    exports: tuple[Path, ...]
    resumed_stages: tuple[str, ...] = ()


def init(
    project_dir: Path,
    images_dir: Path | None,
    *,
    n: int,
    method: str | None = None,
    classes: Sequence[str] = (),
    config: ProjectConfig | None = None,
    progress: bool = True,
) -> InitResult:
    """Create (or finish creating) a project: register images, embed, select the first batch, export it."""
    check_sizes(n, None)
    with _open_or_create(Path(project_dir), images_dir, config, method) as project:
        store = project.store
        method = method or project.config.init_method
        check_method(method)
        if classes:
            store.add_classes(list(classes))
        store.start_iteration(0, method=method, score_spec=None, config={"n": n, "method": method})
        turn = Turn(project, 0, progress)
        stages = StageRunner(store, 0)
        stages.run("register", partial(register_images, turn))
        for path, reason in store.bad_images():
            log.warning("skipped %s: %s", path, reason)
        stages.run("embed", partial(embed_pool, turn))
        stages.run("select", partial(select_first_batch, turn, method, n))
        exported = stages.run("export", partial(export_stage, turn))
        stages.run("report", partial(report_stage, turn))
        store.update_iteration(0, status="done", finished_at=now(), n_labeled=len(store.labeled_ids()),
                               timings=stages.timings)
        tag = store.tag(INIT_TAG)
        return InitResult(
            project=Path(project_dir),
            n_images=len(turn.usable_rows()),
            bad_images=tuple(store.bad_images()),
            tag=INIT_TAG,
            n_selected=tag.size if tag else 0,
            export_dir=project.export_dir(INIT_TAG),
            exports=tuple(Path(f) for f in exported.files),
            resumed_stages=stages.resumed,
        )


def is_initialised(project_dir: Path) -> bool:
    """Whether ``project_dir`` holds a project whose init finished (the demo and simulate resume with it)."""
    if not (Path(project_dir) / "alloop.toml").exists():
        return False
    with Project.open(Path(project_dir), lock=False) as project:
        return init_finished(project.store)


def _open_or_create(project_dir: Path, images_dir: Path | None, config: ProjectConfig | None,
                    method: str | None) -> Project:
    """The interrupted project to finish, or a new one; refuses a finished init and an unusable folder."""
    if (project_dir / "alloop.toml").exists():
        project = Project.open(project_dir)
        if init_finished(project.store):
            project.close()
            raise ProjectError(
                f"{project_dir}: already initialised; label the batch and run `alloop step {project_dir} --labels FILE`"
            )
        log.info("resuming an interrupted init of %s", project_dir)
        return project
    if images_dir is None:
        raise ConfigError("--images is required: the folder that holds your raw images")
    images_dir = Path(images_dir)
    imagelib.discover(images_dir)  # fail before creating anything when the folder is unusable
    base = config or ProjectConfig(image_root=str(images_dir.resolve()))
    base = base.with_changes(image_root=str(images_dir.resolve()))
    check_method(base.init_method if method is None else method)
    return Project.create(project_dir, base)
