"""Runs the stages of one iteration, skipping those the store says are finished.

A stage is a function with a ``record`` argument (passed by name): it does its work, then calls
``record(info)`` inside the transaction of its last store writes (stages that write nothing call it
on its own), so a stage is marked done exactly when its writes are committed. Files a stage
produces are written atomically before it is marked done. An interrupted iteration therefore
resumes at the stage that was cut off.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from alloop.loop.records import StageInfo, read_stages, stage_kinds
from alloop.project import Project
from alloop.store import ImageRow, Store

log = logging.getLogger("alloop")

# Test hook: ALLOOP_FAULT_INJECT=kill:<stage> SIGKILLs the process just before <stage> commits.
FAULT_ENV = "ALLOOP_FAULT_INJECT"

InfoT = TypeVar("InfoT", bound=StageInfo)
Record = Callable[[StageInfo], None]


@dataclass(frozen=True)
class Turn:
    """One iteration being run: the open project, the iteration's number, whether to show progress."""

    project: Project
    iteration: int
    progress: bool

    @property
    def store(self) -> Store:
        return self.project.store

    def usable_rows(self) -> list[ImageRow]:
        """Registered images that could be read."""
        return self.store.images(state="ok")

    def rows_by_id(self, ids: set[int]) -> list[ImageRow]:
        """The rows of ``ids`` (one query for those rows, not a read of the whole pool)."""
        return self.store.images(ids)

    def candidates(self) -> list[ImageRow]:
        """Usable images neither labeled nor waiting in a batch: what the next batch is picked from."""
        blocked = self.store.labeled_ids() | self.store.queued_ids()
        return [r for r in self.usable_rows() if r.id not in blocked]


class StageRunner:
    """The stages of ``iteration``: what is done already (typed infos), timings, and running the rest."""

    def __init__(self, store: Store, iteration: int) -> None:
        self.store = store
        self.iteration = iteration
        self.kinds = stage_kinds(iteration)
        done = read_stages(iteration, store.stages(iteration))
        self.infos: dict[str, StageInfo] = {n: r.info for n, r in done.items() if r.info is not None}
        self.resumed = tuple(done)
        self.timings: dict[str, float] = {n: r.seconds or 0.0 for n, r in done.items()}

    def run(self, name: str, stage: Callable[[Record], InfoT]) -> InfoT:
        """``stage(record=...)`` unless finished; returns the stage's info (the stored one when skipped)."""
        kind = self.kinds[name]
        if name in self.infos:
            log.info("stage %s of iteration %d already done, skipping", name, self.iteration)
            return self.infos[name]  # type: ignore[return-value]
        t0 = time.perf_counter()
        log.info("stage %s…", name)
        recorded: list[StageInfo] = []

        def record(info: StageInfo) -> None:
            if not isinstance(info, kind):
                raise TypeError(f"stage {name} recorded {type(info).__name__}; it must record {kind.__name__}")
            if os.environ.get(FAULT_ENV) == f"kill:{name}":
                # Fault injection for the crash tests: die after the stage's work, before its commit.
                os.kill(os.getpid(), signal.SIGKILL)
            seconds = time.perf_counter() - t0
            self.store.finish_stage(self.iteration, name, seconds=seconds, info=info.to_json())
            recorded.append(info)
            self.timings[name] = seconds

        # Warnings a stage raises (a batch larger than what is left, a score on empty input) reach
        # the user through the logger like every other message, not as raw Python warnings.
        with warnings.catch_warnings(record=True) as caught:
            try:
                info = stage(record=record)
            finally:
                for w in caught:
                    log.warning("%s", w.message)
        if not recorded or recorded[-1] is not info:
            raise RuntimeError(f"stage {name} did not record the info it returned")
        self.infos[name] = info
        return info


__all__ = ["FAULT_ENV", "Record", "StageRunner", "Turn"]
