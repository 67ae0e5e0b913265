"""Helpers the loop tests share: what waits for labels, and the whole store for 'unchanged' checks."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from alloop.project import Project


def _queued(project_dir: Path) -> list[str]:
    with Project.open(project_dir, lock=False) as p:
        return sorted(r.path for r in p.store.images() if r.id in p.store.queued_ids())


def _dump(project_dir: Path) -> list[str]:
    con = sqlite3.connect(project_dir / "alloop.db")
    try:
        return list(con.iterdump())
    finally:
        con.close()


@pytest.fixture()
def queued_paths() -> Callable[[Path], list[str]]:
    """``queued_paths(project_dir)``: paths of the images waiting for labels, sorted."""
    return _queued


@pytest.fixture()
def store_dump() -> Callable[[Path], list[str]]:
    """``store_dump(project_dir)``: every row of the store as SQL, for 'unchanged' checks."""
    return _dump
