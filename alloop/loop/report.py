"""The report stage of init and every step: the iteration's HTML report, when the report extra is installed."""

from __future__ import annotations

from pathlib import Path

from alloop.loop.records import ReportInfo
from alloop.loop.runner import Record, Turn
from alloop.project import Project


def report_stage(turn: Turn, record: Record) -> ReportInfo:
    """Write the iteration's report (None when alloop[report] is not installed)."""
    path = write_report_page(turn.project, turn.iteration)
    info = ReportInfo(file=turn.project.relpath(path) if path else None)
    record(info)
    return info


def write_report_page(project: Project, iteration: int) -> Path | None:
    """The report of ``iteration``; None without the report extra (the loop works without it)."""
    try:
        from alloop.report import write_report
    except ImportError:
        return None
    return write_report(project, iteration)
