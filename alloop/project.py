"""A project directory: ``alloop.toml`` (config) + ``alloop.db`` (store) + ``artifacts/``.

Opening a project checks it really is one, takes the exclusive lock when asked, and hands out
the artifact paths so no other module invents its own layout.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Any

import tomli_w
import tomllib

from alloop import atomic
from alloop.config import CONFIG_FILE, ProjectConfig
from alloop.errors import ConfigError, LockError, ProjectError
from alloop.store import Store, now

STORE_FILE = "alloop.db"
LOCK_FILE = ".alloop.lock"
# `alloop status` probes the lock with a shared flock held for microseconds; a command taking the
# lock at that very instant retries for this long before calling the project busy.
ACQUIRE_RETRY_S = 0.5


class ProjectLock:
    """An exclusive advisory lock on the project (flock: the kernel drops it if the holder dies)."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE
        self._fh: Any = None

    def acquire(self) -> None:
        """Take the lock or raise LockError naming the holder."""
        fh = open(self.path, "a+")
        deadline = time.monotonic() + ACQUIRE_RETRY_S
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                fh.close()
                raise LockError(
                    f"{self.path.parent}: project is busy, locked by {holder}; wait for it to finish "
                    "(a crashed holder releases the lock automatically)"
                ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        self._fh = fh

    def holder(self) -> str | None:
        """Who holds the lock now ("pid N on HOST"), or None when nobody does (a crashed holder holds nothing)."""
        try:
            fh = open(self.path, encoding="utf-8")
        except OSError:
            return None  # no lock file yet, or not ours to read: nothing to tell (status must not fail on it)
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return fh.read().strip() or "another process"
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return None

    def release(self) -> None:
        """Give the lock back."""
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _check_unfinished_create(root: Path) -> None:
    """A store without a config is a create that stopped before writing the config (a full disk):
    finishing it is safe while the store is still empty. One that holds work is a project whose
    ``alloop.toml`` went missing, and creating over it is refused."""
    with Store(root / STORE_FILE) as store:
        empty = not store.iterations() and store.counts()["images"] == 0
    if not empty:
        raise ProjectError(
            f"{root}: {STORE_FILE} holds a project but {CONFIG_FILE} is missing; restore {root / CONFIG_FILE} "
            "(or move the folder aside and start a new project elsewhere)"
        )


class Project:
    """An open project: its directory, config, store and artifact paths."""

    def __init__(self, root: Path, config: ProjectConfig, store: Store, lock: ProjectLock | None) -> None:
        self.root = root
        self.config = config
        self.store = store
        self._lock = lock

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, config: ProjectConfig, *, lock: bool = True) -> Project:
        """Create a new project directory (it must not be a project yet)."""
        root = Path(root)
        if (root / CONFIG_FILE).exists():
            raise ProjectError(f"{root}: already an alloop project; use `alloop step` or choose a new directory")
        if (root / STORE_FILE).exists():
            _check_unfinished_create(root)
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root}: exists and is not a directory; choose another project path")
        root.mkdir(parents=True, exist_ok=True)
        plock = ProjectLock(root) if lock else None
        if plock:
            plock.acquire()
        try:
            store = Store(root / STORE_FILE, create=True)
            # Config last: its presence is what marks a directory as a project.
            atomic.write_text(root / CONFIG_FILE, _config_header() + tomli_w.dumps(config.to_toml()))
        except BaseException:
            if plock:
                plock.release()
            raise
        return cls(root, config, store, plock)

    @classmethod
    def open(cls, root: Path, *, lock: bool = True) -> Project:
        """Open an existing project; a clear error when ``root`` is not one."""
        root = Path(root)
        if not root.is_dir():
            raise ProjectError(f"{root}: no such project directory; create one with `alloop init {root} --images DIR`")
        if not (root / CONFIG_FILE).exists() or not (root / STORE_FILE).exists():
            raise ProjectError(
                f"{root}: not an alloop project (no {CONFIG_FILE} / {STORE_FILE}); "
                f"run `alloop init {root} --images DIR` first"
            )
        config = load_config(root / CONFIG_FILE)
        plock = ProjectLock(root) if lock else None
        if plock:
            plock.acquire()
        try:
            store = Store(root / STORE_FILE)
        except BaseException:
            if plock:
                plock.release()
            raise
        return cls(root, config, store, plock)

    def close(self) -> None:
        """Close the store and release the lock."""
        self.store.close()
        if self._lock:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save_config(self, config: ProjectConfig) -> None:
        """Atomically rewrite alloop.toml."""
        atomic.write_text(self.root / CONFIG_FILE, _config_header() + tomli_w.dumps(config.to_toml()))
        self.config = config

    # -- paths ------------------------------------------------------------------------------

    @property
    def image_root(self) -> Path:
        """The folder image paths are relative to."""
        root = Path(self.config.image_root)
        return root if root.is_absolute() else (self.root / root).resolve()

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def embeddings_dir(self, key: str) -> Path:
        return self.artifacts / "embeddings" / key

    def embedder_dir(self, name: str) -> Path:
        return self.artifacts / "embedders" / name

    def checkpoint_dir(self, iteration: int) -> Path:
        return self.artifacts / "checkpoints" / f"iteration-{iteration}"

    def predictions_file(self, iteration: int) -> Path:
        return self.artifacts / "predictions" / f"iteration-{iteration}.npz"

    def export_dir(self, tag: str) -> Path:
        return self.artifacts / "exports" / tag

    def report_dir(self, iteration: int) -> Path:
        return self.artifacts / "reports" / f"iteration-{iteration}"

    def backups_dir(self) -> Path:
        return self.artifacts / "backups"

    def backup(self, out: Path | None = None) -> Path:
        """Copy the store to ``out`` (default: artifacts/backups/alloop-<time>.db); consistent while a step writes."""
        target = Path(out) if out else self.backups_dir() / f"alloop-{now().replace(':', '')}.db"
        self.store.backup_to(target)
        return target

    def relpath(self, path: Path) -> str:
        """A path as shown to the user: relative to the project when inside it."""
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)


def load_config(path: Path) -> ProjectConfig:
    """Read and validate alloop.toml."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file or restore it from git/backup") from exc
    return ProjectConfig.from_toml(doc, where=str(path))


def _config_header() -> str:
    return (
        "# alloop project configuration. Edit freely between rounds: specs/alloop.toml in alloop's source explains\n"
        "# every key; a bad key or value is refused when the project opens, naming it and what is allowed.\n"
        "# Classes, labels, tags and iterations live in alloop.db (see `alloop status`).\n\n"
    )


__all__ = ["CONFIG_FILE", "STORE_FILE", "Project", "ProjectConfig", "ProjectLock", "load_config"]
