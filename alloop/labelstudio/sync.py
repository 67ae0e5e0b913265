"""Push the current batch to a Label Studio project and pull its finished annotations back.

``push``: create (or reuse) the Label Studio project linked to the alloop project, with the
labeling interface for its classes and a Local Storage connection for its image folder, then add
one task per image of the current batch that Label Studio does not have yet, the model's boxes as
predictions. Pushing twice creates no duplicate tasks.

``pull``: download the project's JSON export (annotated tasks only) into
``artifacts/labelstudio/pulls/`` and say what is new. ``step_from_labelstudio`` pulls and runs
``alloop step`` on that file; what it imported is remembered, so pulling again without new or
changed annotations imports nothing.

The link (server URL, project id, what was imported) lives in ``artifacts/labelstudio/link.json``;
the API token never does.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alloop import atomic
from alloop.errors import ProjectError
from alloop.formats import labelstudio as lsformat
from alloop.labelstudio.client import Client, Connection, LabelStudioError
from alloop.project import Project

log = logging.getLogger("alloop")

STATE_DIR = "labelstudio"
LINK_FILE = "link.json"


@dataclass(frozen=True)
class Link:
    """Which Label Studio project an alloop project is linked to, and what was imported from it."""

    url: str
    project_id: int
    imported: Mapping[str, str] = field(default_factory=dict)  # task id -> annotation fingerprint

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "project_id": self.project_id, "imported": dict(self.imported)}


@dataclass(frozen=True)
class PushResult:
    """What a push did."""

    project_id: int
    project_url: str
    tag: str
    created: int  # tasks added now
    existing: int  # batch images Label Studio already had
    labeled: int  # batch images already labeled in alloop (not pushed)
    predictions: int  # predicted boxes sent with the new tasks
    new_project: bool


@dataclass(frozen=True)
class PullResult:
    """What a pull found."""

    project_id: int
    file: Path  # the JSON export written (annotated tasks)
    annotated: int  # tasks with a submitted annotation
    new: int  # annotated tasks whose image is still waiting for labels in alloop
    changed: int  # annotated tasks already imported whose annotation changed since
    waiting: int  # batch images Label Studio has not finished
    fingerprints: Mapping[str, str] = field(default_factory=dict)


# -- the link ----------------------------------------------------------------------------------

def state_dir(project: Project) -> Path:
    """Where alloop keeps what it knows about the linked Label Studio project."""
    return project.artifacts / STATE_DIR


def load_link(project: Project) -> Link | None:
    """The saved link, or None when the project was never pushed."""
    path = state_dir(project) / LINK_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Link(str(doc["url"]), int(doc["project_id"]), dict(doc.get("imported", {})))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ProjectError(f"{path}: unreadable ({e}); delete it to link a new Label Studio project") from e


def save_link(project: Project, link: Link) -> None:
    """Write the link atomically."""
    atomic.write_json(state_dir(project) / LINK_FILE, link.to_json())


def _linked(project: Project, client: Client, ls_project: int | None) -> Link | None:
    link = load_link(project)
    ls_project = ls_project if ls_project is not None else project.config.labelstudio_project
    if ls_project is not None:
        if link is not None and link.project_id == ls_project and link.url == client.url:
            return link
        return Link(client.url, int(ls_project))
    if link is not None and link.url != client.url:
        raise LabelStudioError(
            f"{project.root} is linked to Label Studio project {link.project_id} at {link.url}, not {client.url}; "
            "set LABEL_STUDIO_URL to that server, or pass --ls-project ID to link a project on this one"
        )
    return link


def connection_for(project_dir: Path, url: str | None = None, api_key: str | None = None) -> Connection:
    """The Label Studio connection for a project: ``url``, else [labelstudio] url, else $LABEL_STUDIO_URL."""
    with Project.open(Path(project_dir), lock=False) as project:
        return Connection.resolve(url or project.config.labelstudio_url, api_key)


def project_page(client: Client, project_id: int) -> str:
    """The project's data manager page, for the user to open."""
    return f"{client.url}/projects/{project_id}/data"


# -- push --------------------------------------------------------------------------------------

def push(
    project_dir: Path,
    connection: Connection,
    *,
    ls_project: int | None = None,
    title: str | None = None,
    document_root: str | Path | None = None,
) -> PushResult:
    """Send the current batch to Label Studio (see the module docstring); returns what was done."""
    client = Client(connection)
    client.whoami()  # URL and token first: one clear error before any work
    with Project.open(Path(project_dir), lock=False) as project:
        store = project.store
        tags = store.tags()
        if not tags:
            raise ProjectError(f"{project_dir}: no batch selected yet; run `alloop init` first")
        tag = tags[-1]
        config = lsformat.labeling_config(store.classes())
        prefix = project.config.image_url_prefix
        root = lsformat.document_root(document_root or project.config.labelstudio_document_root)
        tasks = _batch_tasks(project, tag.name, prefix, root)
        link, new_project = _project_for(client, project, _linked(project, client, ls_project), title, config)
        save_link(project, link)
        if not prefix:
            _ensure_local_storage(client, link.project_id, project.image_root, root)
        have = {str(t.get("data", {}).get("alloop_file")) for t in client.tasks(link.project_id)}
        labeled = {r.path for r in store.images(store.labeled_ids())}
        pending = [t for t in tasks if t["data"]["alloop_file"] not in labeled]
        new = [t for t in pending if t["data"]["alloop_file"] not in have]
        if new:
            client.import_tasks(link.project_id, new)
        n_pred = sum(len(p["result"]) for t in new for p in t.get("predictions", ()))
        return PushResult(project_id=link.project_id, project_url=project_page(client, link.project_id),
                          tag=tag.name, created=len(new), existing=len(pending) - len(new),
                          labeled=len(tasks) - len(pending), predictions=n_pred, new_project=new_project)


def _batch_tasks(project: Project, tag: str, prefix: str | None, root: Path) -> list[dict[str, Any]]:
    """The batch's Label Studio tasks as `alloop export` writes them, image URLs under Label Studio's document root."""
    from alloop.loop import export

    image_root = project.image_root
    if not prefix and lsformat.local_files_path(image_root / "x", root) is None:
        raise LabelStudioError(
            f"images in {image_root} lie outside Label Studio's document root {root}; start Label Studio "
            f"with {lsformat.DOCUMENT_ROOT_ENV} set to a parent folder of {image_root} and give alloop "
            f"the same value (environment or [labelstudio] document_root), or set image_url_prefix"
        )
    with tempfile.TemporaryDirectory(prefix="alloop-ls-") as tmp:
        tasks = json.loads(export(project.root, tag=tag, fmt="labelstudio", out=Path(tmp)).read_text())
    if not prefix:
        for task in tasks:
            rel = lsformat.local_files_path(image_root / task["data"]["alloop_file"], root)
            task["data"]["image"] = lsformat.LOCAL_FILES_URL + quote(rel)
    return tasks


def _project_for(client: Client, project: Project, link: Link | None, title: str | None,
                 config: str) -> tuple[Link, bool]:
    """The linked Label Studio project with the current labeling interface, created when there is none."""
    if link is None:
        name = title or f"alloop {project.root.name}"
        created = client.create_project(name[:50] if len(name) >= 3 else f"alloop {name}", config,
                                        description=f"Active-learning batches from alloop project {project.root}")
        log.info("created Label Studio project %s", created["id"])
        return Link(client.url, int(created["id"])), True
    current = client.project(link.project_id)
    if current.get("label_config", "").strip() != config.strip():
        # New classes (imported with --add-classes) need their <Label>; existing ones are kept.
        client.update_project(link.project_id, label_config=config)
        log.info("updated the labeling interface of Label Studio project %d", link.project_id)
    return link, False


def _ensure_local_storage(client: Client, project_id: int, image_root: Path, root: Path) -> None:
    """A Local Storage connection for the image folder, so Label Studio serves its files."""
    path = str(Path(image_root))
    for storage in client.local_storages(project_id):
        if str(storage.get("path", "")).rstrip("/") == path.rstrip("/"):
            return
    try:
        client.create_local_storage(project_id, path, title=f"alloop images {Path(path).name}"[:50])
    except LabelStudioError as e:
        raise LabelStudioError(
            f"{e}; start Label Studio with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
            f"{lsformat.DOCUMENT_ROOT_ENV}={root} (a parent folder of {path}, the same value alloop uses)"
        ) from None


# -- pull --------------------------------------------------------------------------------------

def _fingerprint(task: Mapping[str, Any]) -> str:
    """What identifies a task's annotations as they are now (ids and update times)."""
    parts = sorted(
        f"{a.get('id')}@{a.get('updated_at') or a.get('created_at')}{'x' if a.get('was_cancelled') else ''}"
        for a in task.get("annotations") or () if isinstance(a, dict)
    )
    return ";".join(parts)


def pull(project_dir: Path, connection: Connection, *, ls_project: int | None = None) -> PullResult:
    """Download the annotated tasks of the linked Label Studio project; raise when nothing is new."""
    client = Client(connection)
    client.whoami()
    with Project.open(Path(project_dir), lock=False) as project:
        link = _linked(project, client, ls_project)
        if link is None:
            raise LabelStudioError(
                f"{project_dir} is not linked to a Label Studio project yet; run `alloop labelstudio push "
                f"{project_dir}` first (or pass --ls-project ID)"
            )
        exported = client.export_json(link.project_id)
        store = project.store
        queued = {r.path for r in store.images(store.queued_ids())}
        annotated = [t for t in exported if any(isinstance(a, dict) and not a.get("was_cancelled")
                                                for a in t.get("annotations") or ())]
        fingerprints = {str(t.get("id")): _fingerprint(t) for t in annotated}
        new = [t for t in annotated if t.get("data", {}).get("alloop_file") in queued]
        changed = [t for t in annotated if t not in new and str(t.get("id")) in link.imported
                   and link.imported[str(t.get("id"))] != fingerprints[str(t.get("id"))]]
        foreign = [t for t in annotated if t not in new and str(t.get("id")) not in link.imported
                   and "alloop_file" not in t.get("data", {})]
        done = {t.get("data", {}).get("alloop_file") for t in annotated}
        waiting = len(queued - done)
        if not new and not changed and not foreign:
            raise LabelStudioError(
                f"nothing new to import from Label Studio project {link.project_id}: {len(annotated)} annotated "
                f"task(s), all imported already, {waiting} batch image(s) still to label; label them in "
                f"{project_page(client, link.project_id)} (Submit), then pull again"
            )
        out = state_dir(project) / "pulls" / f"project-{link.project_id}-{time.strftime('%Y%m%d-%H%M%S')}.json"
        atomic.write_json(out, annotated)
        return PullResult(project_id=link.project_id, file=out, annotated=len(annotated), new=len(new),
                          changed=len(changed), waiting=waiting, fingerprints=fingerprints)


def step_from_labelstudio(project_dir: Path, connection: Connection, *, n: int,
                          ls_project: int | None = None, **step_options: Any):
    """Pull the finished annotations and run ``alloop step`` on them; returns (PullResult, StepResult)."""
    from alloop.loop import step

    with Project.open(Path(project_dir), lock=False) as project:
        last = project.store.iterations()[-1:]
        resuming = bool(last) and last[0].n > 0 and last[0].status == "running" \
            and "import" in project.store.stages(last[0].n)
    if resuming:
        # An interrupted step whose import is done: finish it; its labels are in the store already.
        log.info("resuming iteration %d (its Label Studio labels are imported already)", last[0].n)
        return None, step(Path(project_dir), labels=None, n=n, **step_options)
    pulled = pull(project_dir, connection, ls_project=ls_project)
    result = step(Path(project_dir), labels=pulled.file, label_format="labelstudio", n=n, **step_options)
    with Project.open(Path(project_dir), lock=False) as project:
        link = load_link(project) or Link(Client(connection).url, pulled.project_id)
        save_link(project, Link(link.url, link.project_id, {**link.imported, **pulled.fingerprints}))
    return pulled, result


__all__ = [
    "Link",
    "PullResult",
    "PushResult",
    "connection_for",
    "load_link",
    "pull",
    "push",
    "save_link",
    "state_dir",
    "step_from_labelstudio",
]
