"""Atomic writes: the old file or the new one, never half of one, and no temporary left behind."""

from __future__ import annotations

import errno
import json
import math

import pytest

from alloop import atomic


def test_write_text_json_and_bytes_replace_the_file(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic.write_json(target, {"b": [1, 2], "name": "pomme"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"b": [1, 2], "name": "pomme"}
    atomic.write_text(target, "x\n")
    assert target.read_text() == "x\n"
    atomic.write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert atomic.leftover_temps(target.parent) == []


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "best.pt"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="No space left"):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_json_for_other_tools_refuses_nan_and_writes_nothing(tmp_path):
    target = tmp_path / "instances.json"
    with pytest.raises(ValueError):
        atomic.write_json(target, {"area": math.nan}, allow_nan=False)
    assert list(tmp_path.iterdir()) == []
    atomic.write_json(target, {"area": 1.5}, indent=None)
    assert target.read_text() == '{"area": 1.5}\n'


def test_leftover_temps_finds_what_a_killed_write_left(tmp_path):
    (tmp_path / ".last.pt.ab12_x9Z.tmp").write_bytes(b"torn")  # as mkstemp names them
    (tmp_path / "notes.tmp").write_text("a user's file")
    (tmp_path / "last.pt").write_bytes(b"ok")
    assert [p.name for p in atomic.leftover_temps(tmp_path)] == [".last.pt.ab12_x9Z.tmp"]
    assert atomic.leftover_temps(tmp_path / "missing") == []
