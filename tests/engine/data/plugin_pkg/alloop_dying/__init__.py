"""An embedder whose process dies on purpose: the Ray engine's fault tests (tests/engine/).

It is alloop's ``backbone`` embedder (same vectors, same cache key) plus two ways to die, both
driven by files so that a test can arm them and see what happened across worker processes:

- ``crash_once``: the first call anywhere creates this file and kills its process (os._exit);
  every later call embeds. A retried batch on a restarted actor then succeeds.
- ``budget_file``: holds how many more images may be embedded; a call that would go past it kills
  its process (after 2 s of "work"), every time, until the file is removed (a worker that keeps dying).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, fields
from pathlib import Path

from alloop.embed.backbone import BackboneConfig, BackboneEmbedder


@dataclass(frozen=True)
class DyingConfig(BackboneConfig):
    """The backbone's options plus the two crash switches (paths; empty: off)."""

    crash_once: str = ""
    budget_file: str = ""


class DyingEmbedder(BackboneEmbedder):
    """The backbone embedder with a process that dies when told to."""

    name = "dying"
    Config = DyingConfig

    def key(self) -> str:
        """The backbone's key for the same backbone options: the crash switches change no vector."""
        same = BackboneConfig(**{f.name: getattr(self.config, f.name) for f in fields(BackboneConfig)})
        return BackboneEmbedder(same, self.work_dir, self.device).key()

    def embed(self, images, *, batch_size=32, progress=True):
        if self.config.crash_once:
            marker = Path(self.config.crash_once)
            try:
                marker.touch(exist_ok=False)
            except FileExistsError:
                pass
            else:
                os._exit(1)
        if self.config.budget_file and Path(self.config.budget_file).exists():
            budget = Path(self.config.budget_file)
            left = int(budget.read_text())
            if len(images) > left:
                time.sleep(2)  # dies mid-batch, as a real crash does, after the last batch went back
                os._exit(1)
            budget.write_text(str(left - len(images)))
        return super().embed(images, batch_size=batch_size, progress=progress)
