"""The selection report: why these images were picked and whether the loop is improving.

One self-contained HTML page per iteration (``artifacts/reports/iteration-N/index.html``) plus the
same data as CSV/JSON beside it. The pipeline is gather (:mod:`.data`) → figures (:mod:`.figures`)
→ render (:mod:`.render`) and tables (:mod:`.tables`); :func:`write_report` runs it.
"""

from __future__ import annotations

from alloop.report.data import ReportData, gather_report_data
from alloop.report.writer import write_project_report, write_report

__all__ = ["ReportData", "gather_report_data", "write_project_report", "write_report"]
