"""The image pool over time: register new images, and check the store against the files on disk.

Images are identified by content hash. A file that disappears or changes is detected and
reported — its labels are never dropped silently: a missing image is set aside (state
``missing``) until it comes back, a changed labeled image is flagged for re-labeling.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from alloop import images as imagelib
from alloop.project import Project
from alloop.store import ImageRow

log = logging.getLogger("alloop")


@dataclass(frozen=True)
class Registration:
    """What a scan of the image root found: counts, the bad or skipped files (path, reason), and
    new images whose content equals another registered image's (path, the other's path)."""

    added: int
    known: int
    bad: tuple[tuple[str, str], ...]
    duplicates: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Finding:
    """One problem `alloop doctor` found, with how to fix it."""

    kind: str
    subject: str
    detail: str
    fix: str


@dataclass(frozen=True)
class Checkup:
    """All findings; ``ok`` when there are none."""

    findings: tuple[Finding, ...] = ()
    checked_images: int = 0
    repaired: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.findings


# A pool copied twice over must not flood the terminal: the first notices, then a count.
_DUPLICATE_NOTICES = 10


def register(project: Project, *, root: Path | None = None, progress: bool = True,
             on_commit: Callable[[Registration], None] | None = None) -> Registration:
    """Scan ``root`` (default: the image root) and register images not seen before, in one transaction.

    ``root`` must lie inside the project's image root (paths are stored relative to it).
    ``on_commit`` runs inside that transaction (to record a stage, or to refuse the result by raising).
    """
    image_root = project.image_root
    folder = Path(root) if root else image_root
    imagelib.relative_name(folder, image_root)  # refuses a folder outside the root, with the fix
    found = imagelib.scan(folder, image_root=image_root)
    known = project.store.image_by_path()
    new_paths = [p for p in found.files if imagelib.relative_name(p, image_root) not in known]
    items = imagelib.inspect_all(new_paths, image_root, max_pixels=project.config.max_image_pixels)
    if progress:
        from rich.progress import track

        items = track(items, total=len(new_paths), description="reading images", transient=True)
    infos, bad = [], list(found.skipped)
    for item in items:
        (infos if isinstance(item, imagelib.ImageInfo) else bad).append(item)
    duplicates = _same_content(infos, known.values())
    for path, other in duplicates[:_DUPLICATE_NOTICES]:
        log.warning("%s has the same content as %s; both are registered (delete one if it is a copy)", path, other)
    if len(duplicates) > _DUPLICATE_NOTICES:
        log.warning("and %d more new images have the same content as another image", len(duplicates) - _DUPLICATE_NOTICES)
    scanned = PurePosixPath(imagelib.relative_name(folder, image_root))
    still_bad = {b.path for b in bad}
    fixed = [path for path, _ in project.store.bad_images()
             if path not in still_bad and scanned in PurePosixPath(path).parents]
    with project.store.transaction():
        added = project.store.add_images((i.path, i.sha256, i.width, i.height) for i in infos)
        project.store.forget_bad_images(fixed)
        project.store.record_bad_images((b.path, b.reason) for b in bad)
        result = Registration(added=added, known=len(found.files) - len(new_paths),
                              bad=tuple((b.path, b.reason) for b in bad), duplicates=duplicates)
        if on_commit is not None:
            on_commit(result)
    return result


def _same_content(infos: list[imagelib.ImageInfo], known: Iterable[ImageRow]) -> tuple[tuple[str, str], ...]:
    """(new image, the image it copies) for each new image whose hash is already taken."""
    first = {r.sha256: r.path for r in known}
    out = []
    for info in infos:
        other = first.setdefault(info.sha256, info.path)
        if other != info.path:
            out.append((info.path, other))
    return tuple(out)


def check(project: Project, *, repair: bool = False) -> Checkup:
    """Compare the store with the files: missing/changed images, the image root, the store itself, artifacts.

    ``repair`` applies only safe fixes: mark missing images (restored ones back to ok), take the new
    hash of changed unlabeled images. Labels are never touched.
    """
    store = project.store
    findings: list[Finding] = []
    repaired: list[str] = []
    integrity = store.integrity_check()
    if integrity != "ok":
        findings.append(Finding("store", str(store.path), integrity,
                                f"restore the newest backup from {project.backups_dir()}"))
    root = project.image_root
    rows = store.images()
    if not root.is_dir():
        findings.append(Finding("image_root", str(root), "the image root does not exist",
                                f"set image_root in {project.root / 'alloop.toml'} to where the images are now"))
        return Checkup(tuple(findings), 0, ())
    labeled = store.labeled_ids()
    missing_count = 0
    for r in rows:
        try:
            path = imagelib.resolve_in_root(root, r.path)
        except imagelib.ImageError as exc:
            findings.append(Finding("escape", r.path, str(exc), "the store was edited by hand; restore a backup"))
            continue
        if not path.exists():
            missing_count += 1
            findings.append(Finding(
                "missing", r.path, "labeled image is gone" if r.id in labeled else "image is gone",
                "put the file back (its labels are kept) or run `alloop doctor --repair` to set it aside",
            ))
            if repair and r.state != "missing":
                store.set_image_state(r.id, "missing")
                repaired.append(f"set aside missing {r.path}")
            continue
        sha = imagelib.sha256_of(path)
        if sha != r.sha256:
            if r.id in labeled:
                findings.append(Finding("changed", r.path, "labeled image's content changed; its boxes may not fit",
                                        "check and re-label it, then `alloop doctor --repair` accepts the new file"))
                if repair:
                    store.set_image_state(r.id, "changed", sha)
                    repaired.append(f"flagged changed labeled {r.path}")
            else:
                findings.append(Finding("changed", r.path, "image content changed",
                                        "`alloop doctor --repair` re-hashes it (it is re-embedded next step)"))
                if repair:
                    store.set_image_state(r.id, "ok", sha)
                    repaired.append(f"re-hashed {r.path}")
        elif r.state == "missing" and repair:
            store.set_image_state(r.id, "ok")
            repaired.append(f"restored {r.path}")
    if rows and missing_count == len(rows):
        findings.insert(0, Finding("image_root", str(root), "no registered image is under the image root",
                                   f"the folder moved? set image_root in {project.root / 'alloop.toml'}"))
    findings.extend(_orphans(project))
    findings.extend(_temporaries(project, repaired if repair else None))
    return Checkup(tuple(findings), len(rows), tuple(repaired))


# A temporary this recently written may belong to a command writing now (backup, export-model and
# the Label Studio commands write without the project lock): reported, never deleted.
_TEMP_IN_USE_S = 600


def _temporaries(project: Project, repaired: list[str] | None) -> list[Finding]:
    """Temporary files and staging folders an interrupted write left (kill -9, a full disk before
    alloop cleaned up after itself); with ``repaired`` given, delete those not written recently."""
    root = project.root
    found = [p for p in root.glob("*.tmp") if p.is_file()]
    if project.artifacts.is_dir():
        found += [p for p in project.artifacts.rglob("*.tmp") if p.is_file()]
        found += [p for p in project.artifacts.rglob(".staging-*") if p.is_dir()]
    out = []
    for path in sorted(set(found)):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # finished (renamed) or removed since the scan
        age = time.time() - stat.st_mtime
        what = "staging folder" if path.is_dir() else f"temporary file ({stat.st_size / 1e6:.1f} MB)"
        if age < _TEMP_IN_USE_S:
            out.append(Finding("temporary", project.relpath(path), f"{what} written {age:.0f} s ago",
                               "if no alloop command is running, run `alloop doctor --repair` in a few minutes"))
            continue
        out.append(Finding("temporary", project.relpath(path), f"{what} left by an interrupted write",
                           "`alloop doctor --repair` deletes it"))
        if repaired is not None:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            repaired.append(f"deleted {project.relpath(path)}")
    return out


def _orphans(project: Project) -> list[Finding]:
    """Artifacts no iteration refers to (left by an interrupted run); safe to delete."""
    out = []
    known = {it.n for it in project.store.iterations()}
    ckpt_root = project.artifacts / "checkpoints"
    if ckpt_root.exists():
        for d in sorted(ckpt_root.iterdir()):
            n = d.name.removeprefix("iteration-")
            if n.isdigit() and int(n) not in known:
                out.append(Finding("orphan", project.relpath(d), "checkpoint of an iteration the store does not know",
                                   "delete it, or rerun `alloop step` (it will be rebuilt)"))
    emb_root = project.artifacts / "embeddings"
    if emb_root.exists():
        referenced = project.store.embedding_shards()
        for key_dir in sorted(p for p in emb_root.iterdir() if p.is_dir()):
            for shard in sorted(key_dir.glob("shard-*.npy")):
                if (key_dir.name, shard.name) not in referenced:
                    out.append(Finding("orphan", project.relpath(shard), "embedding shard not in the index",
                                       "delete it (a crash between writing and indexing left it)"))
    return out
