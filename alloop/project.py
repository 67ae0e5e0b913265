"""A project directory: ``alloop.toml`` (config) + ``alloop.db`` (store) + ``artifacts/``.

Opening a project checks it really is one, takes the exclusive lock when asked, and hands out
the artifact paths so no other module invents its own layout.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from alloop import atomic
from alloop.errors import ConfigError, LockError, ProjectError
from alloop.score import DEFAULT_SCORE
from alloop.store import Store

CONFIG_FILE = "alloop.toml"
STORE_FILE = "alloop.db"
LOCK_FILE = ".alloop.lock"


@dataclass(frozen=True)
class ProjectConfig:
    """Everything in alloop.toml. Sections map to the fields below; see specs/alloop.toml."""

    image_root: str                              # absolute, or relative to the project directory
    seed: int = 0
    device: str = "auto"                         # auto | cpu | cuda | cuda:N
    val_fraction: float = 0.2                    # share of each labeled batch held out for evaluation
    export_formats: tuple[str, ...] = ("coco", "labelstudio")
    image_url_prefix: str | None = None          # where Label Studio can fetch images (http://host:port/)
    selection_method: str = "auto"               # for `step`: by regime (see alloop/select/auto.py)
    init_method: str = "auto"                    # for `init`: auto = typiclust without a model
    score: str = DEFAULT_SCORE
    selection_options: dict[str, Any] = field(default_factory=dict)   # e.g. {alpha = 0.5}
    embedder: str = "ssl"
    embedder_options: dict[str, Any] = field(default_factory=dict)
    trainer: str = "torchvision"
    trainer_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"{CONFIG_FILE}: val_fraction must be in [0, 1), got {self.val_fraction}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"{CONFIG_FILE}: device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def to_toml(self) -> dict[str, Any]:
        """The nested TOML document for this config."""
        doc: dict[str, Any] = {
            "project": {
                "image_root": self.image_root,
                "seed": self.seed,
                "device": self.device,
                "val_fraction": self.val_fraction,
                "export_formats": list(self.export_formats),
            },
            "selection": {
                "init_method": self.init_method,
                "method": self.selection_method,
                "score": self.score,
                **({"options": _tomlable(self.selection_options)} if self.selection_options else {}),
            },
            "embedder": {"name": self.embedder, **({"options": _tomlable(self.embedder_options)} if self.embedder_options else {})},
            "trainer": {"name": self.trainer, **({"options": _tomlable(self.trainer_options)} if self.trainer_options else {})},
        }
        if self.image_url_prefix:
            doc["project"]["image_url_prefix"] = self.image_url_prefix
        return doc

    @classmethod
    def from_toml(cls, doc: dict[str, Any], *, where: str) -> ProjectConfig:
        """Parse alloop.toml; unknown keys are errors naming the known ones."""
        sections = {
            "project": {"image_root", "seed", "device", "val_fraction", "export_formats", "image_url_prefix"},
            "selection": {"init_method", "method", "score", "options"},
            "embedder": {"name", "options"},
            "trainer": {"name", "options"},
        }
        for name, table in doc.items():
            if name not in sections:
                raise ConfigError(f"{where}: unknown section [{name}]; known sections: {', '.join(sections)}")
            if not isinstance(table, dict):
                raise ConfigError(f"{where}: [{name}] must be a table")
            unknown = set(table) - sections[name]
            if unknown:
                raise ConfigError(
                    f"{where}: unknown key(s) {', '.join(sorted(unknown))} in [{name}]; "
                    f"known: {', '.join(sorted(sections[name]))}"
                )
        p, s = doc.get("project", {}), doc.get("selection", {})
        e, t = doc.get("embedder", {}), doc.get("trainer", {})
        if "image_root" not in p:
            raise ConfigError(f"{where}: [project] image_root is missing; set it to your image folder")
        # Defaults come from the dataclass alone: a key absent from the file means "the default".
        d = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
        try:
            return cls(
                image_root=str(p["image_root"]),
                seed=int(p.get("seed", d["seed"])),
                device=str(p.get("device", d["device"])),
                val_fraction=float(p.get("val_fraction", d["val_fraction"])),
                export_formats=tuple(p.get("export_formats", d["export_formats"])),
                image_url_prefix=p.get("image_url_prefix"),
                init_method=str(s.get("init_method", d["init_method"])),
                selection_method=str(s.get("method", d["selection_method"])),
                score=str(s.get("score", d["score"])),
                selection_options=dict(s.get("options", {})),
                embedder=str(e.get("name", d["embedder"])),
                embedder_options=dict(e.get("options", {})),
                trainer=str(t.get("name", d["trainer"])),
                trainer_options=dict(t.get("options", {})),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc

    def with_changes(self, **changes: Any) -> ProjectConfig:
        """A copy with some fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


class ProjectLock:
    """An exclusive advisory lock on the project (flock: the kernel drops it if the holder dies)."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE
        self._fh: Any = None

    def acquire(self) -> None:
        """Take the lock or raise LockError naming the holder."""
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
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

    def release(self) -> None:
        """Give the lock back."""
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


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
        if (root / CONFIG_FILE).exists() or (root / STORE_FILE).exists():
            raise ProjectError(f"{root}: already an alloop project; use `alloop step` or choose a new directory")
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


def _tomlable(options: dict[str, Any]) -> dict[str, Any]:
    """TOML has no null: an option set to None is written as "none" (read back as None)."""
    return {k: ("none" if v is None else list(v) if isinstance(v, tuple) else v) for k, v in options.items()}


def _config_header() -> str:
    return (
        "# alloop project configuration. Edit freely; `alloop init --help` and the README explain each key.\n"
        "# Classes, labels, tags and iterations live in alloop.db (see `alloop status`).\n\n"
    )


__all__ = ["CONFIG_FILE", "STORE_FILE", "Project", "ProjectConfig", "ProjectLock", "load_config"]
