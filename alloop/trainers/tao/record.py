"""alloop's records beside TAO's files: the sidecar of a model and the digest of a finished run."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from alloop.errors import TrainerError

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".alloop.json"
SIDECAR_FORMAT = "alloop-tao-1"


def digest_run(spec: str, data_dir: Path) -> str:
    """Identifies a training run: the spec and every exported label file and image name."""
    h = hashlib.sha256(spec.encode())
    for p in sorted(data_dir.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(data_dir).as_posix().encode())
            if p.suffix == ".txt":
                h.update(p.read_bytes())
            else:
                h.update(str(p.stat().st_size).encode())
    return h.hexdigest()


def reuse_run(done: Path, digest: str) -> dict | None:
    """The record of a finished run with the same inputs (an interrupted step re-entering train)."""
    try:
        rec = json.loads(done.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model = done.parent / "results" / "weights" / str(rec.get("checkpoint", ""))
    if rec.get("digest") == digest and model.is_file():
        log.info("tao: this exact training run already finished; reusing its model")
        return rec
    return None



def read_sidecar(checkpoint: Path, *, required: bool) -> dict | None:
    path = Path(str(checkpoint) + SIDECAR_SUFFIX)
    if not path.is_file():
        if required:
            if not checkpoint.is_file():
                raise TrainerError(f"{checkpoint}: no such checkpoint; run alloop step to train one")
            raise TrainerError(
                f"{checkpoint}: no {path.name} next to it, so it was not trained by alloop's tao trainer; "
                "train with alloop (it records the classes and spec TAO needs)"
            )
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainerError(
            f"{path}: unreadable ({exc}); delete the iteration's checkpoint folder and train again"
        ) from exc
    if info.get("format") != SIDECAR_FORMAT or not isinstance(info.get("spec"), dict):
        raise TrainerError(f"{path}: not an alloop TAO record ({SIDECAR_FORMAT}); train again")
    if not checkpoint.is_file():
        raise TrainerError(f"{checkpoint}: the model file is missing; train again")
    return info


def jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


