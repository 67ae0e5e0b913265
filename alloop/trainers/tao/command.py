"""The command lines that start TAO (launcher or docker) and the launcher's mounts file."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alloop.errors import TrainerError
from alloop.trainers.tao.config import TaoConfig


def tao_command(
    config: TaoConfig, task: str, args: Sequence[str], *, mounts: Sequence[Path] = ()
) -> list[str]:
    """The argument list that runs ``<network> <task> <args>`` with the configured runner.

    ``mounts``: host directories the container needs, mounted at the same path (docker runner; the
    launcher takes them from its mounts file, see :func:`write_mounts_file`).
    """
    tail = [config.network, task, *args]
    if config.runner == "launcher":
        group = [config.task_group] if config.task_group else []
        return [*config.launcher, *group, *tail]
    cmd = [config.docker, "run", "--rm"]
    if config.gpu_index is None:
        cmd += ["--gpus", "all"]
    else:
        ids = ",".join(str(i) for i in config.gpu_index)
        cmd += ["--gpus", f'"device={ids}"' if "," in ids else f"device={ids}"]
    if config.docker_user:
        cmd += ["--user", f"{os.getuid()}:{os.getgid()}"]
    for d in _mount_roots(mounts):
        cmd += ["-v", f"{d}:{d}"]
    return [*cmd, *config.docker_args, config.docker_image, *tail]


def _mount_roots(paths: Sequence[Path]) -> list[Path]:
    """Distinct directories, none inside another, sorted."""
    dirs = sorted({Path(os.path.realpath(p)) for p in paths})
    out: list[Path] = []
    for d in dirs:
        if not any(d == o or o in d.parents for o in out):
            out.append(d)
    return out


def write_mounts_file(path: Path, mounts: Sequence[Path], *, docker_user: bool = True) -> Path:
    """A TAO launcher mounts file (``~/.tao_mounts.json`` format) mounting ``mounts`` at the same path.

    ``DockerOptions``: ``tty`` false because alloop reads the output through a pipe (the launcher's
    default ``docker exec -it`` needs a terminal), ``user`` = the current uid:gid when ``docker_user``.
    """
    doc: dict[str, Any] = {
        "Mounts": [{"source": str(d), "destination": str(d)} for d in _mount_roots(mounts)],
        "DockerOptions": {"tty": False},
    }
    if docker_user:
        doc["DockerOptions"]["user"] = f"{os.getuid()}:{os.getgid()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


# The keys the TAO launcher accepts (docker_handler.py): anything else fails there, after alloop's check.
MOUNTS_FILE_KEYS = ("Mounts", "Envs", "DockerOptions")
DOCKER_OPTIONS = ("user", "ports", "shm_size", "ulimits", "privileged", "network", "tty")


def check_mounts_file(path: Path, needed: Sequence[Path]) -> None:
    """A user's mounts file must be one the launcher accepts and mount every needed directory at the
    same path inside the container, with the tty off."""
    where = f"mounts_file {path}"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainerError(f"{where}: no such file; fix the trainer option or remove it") from None
    except (OSError, ValueError) as exc:
        raise TrainerError(f"{where}: not JSON ({exc}); fix it or drop mounts_file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Mounts"), list):
        raise TrainerError(
            f'{where}: not a TAO mounts file; it needs "Mounts": [{{"source": ..., "destination": ...}}]'
        )
    unknown = [k for k in doc if k not in MOUNTS_FILE_KEYS]
    if unknown:
        raise TrainerError(f"{where}: unknown key {unknown[0]!r}, which the TAO launcher rejects; "
                           f"use only {', '.join(MOUNTS_FILE_KEYS)}")
    options = doc.get("DockerOptions", {})
    if not isinstance(options, dict):
        raise TrainerError(f"{where}: DockerOptions must be an object of {', '.join(DOCKER_OPTIONS)}")
    bad = [k for k in options if k not in DOCKER_OPTIONS]
    if bad:
        raise TrainerError(f"{where}: DockerOptions {bad[0]!r} is not an option the TAO launcher accepts; "
                           f"use {', '.join(DOCKER_OPTIONS)}")
    envs = doc.get("Envs", [])
    if not isinstance(envs, list) or not all(
        isinstance(e, dict) and {"variable", "value"} <= set(e) for e in envs
    ):
        raise TrainerError(f'{where}: each Envs entry needs "variable" and "value"')
    mounts = []
    for m in doc["Mounts"]:
        if not (isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("source", "destination"))):
            raise TrainerError(
                f'{where}: each Mounts entry needs "source" and "destination" paths, got {m!r}'
            )
        source = Path(os.path.realpath(os.path.expanduser(m["source"])))
        if not source.exists():
            raise TrainerError(f"{where}: mount source {source} does not exist (the launcher refuses it); "
                               "create it or remove the entry")
        mounts.append((source, Path(os.path.realpath(os.path.expanduser(m["destination"])))))
    if options.get("tty", True) is not False:
        raise TrainerError(
            f'{where}: add "DockerOptions": {{"tty": false}}; alloop reads TAO\'s output through a '
            "pipe and the launcher's default `docker exec -it` fails without a terminal"
        )
    for d in _mount_roots(needed):
        if not any((d == s or s in d.parents) and s == t for s, t in mounts):
            raise TrainerError(
                f"{where} does not mount {d} at the same path inside the container; add "
                f'{{"source": "{d}", "destination": "{d}"}} to its Mounts, '
                "or drop mounts_file to let alloop write one"
            )
