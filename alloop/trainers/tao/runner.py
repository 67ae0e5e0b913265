"""Running TAO: the command as an argument list, its output streamed to the log and checked."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from alloop.errors import TrainerError
from alloop.trainers.tao.config import INSTALL_HINT, TaoConfig

log = logging.getLogger(__name__)

_EPOCH_LINE = re.compile(r"\bEpoch (\d+)/(\d+)")
_TAIL_LINES = 40


def _resolve_executable(cmd: Sequence[str], config: TaoConfig) -> None:
    exe = cmd[0]
    if os.sep in exe:
        ok = os.path.isfile(exe) and os.access(exe, os.X_OK)
    else:
        ok = shutil.which(exe) is not None
    if not ok:
        if config.runner == "launcher":
            raise TrainerError(f"TAO launcher '{exe}' not found; {INSTALL_HINT}")
        raise TrainerError(
            f"'{exe}' not found: the docker runner needs Docker with the NVIDIA Container Toolkit; "
            "install them, set the trainer option docker=PATH, or use runner=launcher; see docs/tao.md"
        )


def run_tao(cmd: Sequence[str], *, what: str, log_file: Path, config: TaoConfig,
            env: Mapping[str, str] | None = None, progress: bool = False) -> list[str]:
    """Run ``cmd`` (an argument list, never a shell string), streaming its output to the log.

    Every line goes to ``log_file`` and to the ``alloop.trainers.tao`` logger; Keras' progress bar
    redraws (``\\r``) keep their last state. A non-zero exit, or the launcher's ``Execution status:
    FAIL`` with exit 0, raises TrainerError with the command and the last lines. Returns the tail.
    """
    _resolve_executable(cmd, config)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    failed_status = False
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=0, desc=f"TAO {what}", unit="epoch", leave=False)
    full_env = {**os.environ, **(env or {})}
    log.info("running %s", " ".join(cmd))
    with log_file.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        try:
            proc = subprocess.Popen(
                list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=full_env, text=True, errors="replace", bufsize=1,
            )
        except OSError as exc:
            raise TrainerError(f"cannot start {cmd[0]} ({exc.strerror}); {INSTALL_HINT}") from exc
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n").split("\r")[-1].rstrip()
                out.write(line + "\n")
                if not line:
                    continue
                tail.append(line)
                log.info("tao: %s", line)
                if "Execution status: FAIL" in line:
                    failed_status = True
                m = _EPOCH_LINE.search(line)
                if bar is not None and m:
                    bar.total = int(m.group(2))
                    bar.n = int(m.group(1)) - 1
                    bar.refresh()
            rc = proc.wait()
        except BaseException:
            _stop(proc)
            raise
        finally:
            if bar is not None:
                bar.close()
    if rc != 0 or failed_status:
        last = " | ".join(list(tail)[-8:]) or "(no output)"
        status = f"exit code {rc}" if rc != 0 else "Execution status: FAIL"
        raise TrainerError(
            f"TAO {what} failed ({status}): {' '.join(cmd)}; last lines: {last}; full log: {log_file}"
        )
    return list(tail)


def _stop(proc: subprocess.Popen) -> None:
    # SIGINT lets the launcher stop its container (its `finally`), docker run forwards it.
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

