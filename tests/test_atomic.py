"""Atomic writes: the old file or the new one, never half of one, and no temporary left behind."""

from __future__ import annotations

import errno
import json
import math
import sqlite3

import pytest
import torch

from alloop import atomic
from alloop.errors import DiskFullError


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
    with pytest.raises(DiskFullError, match=rf"^disk full: cannot write {target} on /.* free, needs more than the "
                                            r"4 bytes it had written\); free space on "), \
            atomic.atomic_path(target) as tmp:
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


# --- issue 19 item 5: a full disk is one line, and leaves no temporary -------------------------------


def test_a_write_larger_than_the_free_space_is_refused_before_writing(small_disk):
    disk = small_disk("1m")
    target = disk.path / "predictions.npz"
    with pytest.raises(DiskFullError) as err:
        atomic.write_bytes(target, b"\0" * 3_000_000)
    assert str(err.value) == (f"disk full: cannot write {target} on {disk.path} (1.0 MB free, needs 3.0 MB); "
                              f"free space on {disk.path} and rerun the same command (finished work is kept)")
    assert list(disk.path.iterdir()) == []


def test_torch_save_filling_the_disk_is_a_disk_full_error_and_its_temporary_is_removed(small_disk):
    # Issue 19: `step` died with OSError [Errno 28] + "RuntimeError: [enforce fail at inline_container.cc:672]"
    # and left a 63 MB best.pt.tmp; `init` died with the bare RuntimeError (torch's writer gives no errno).
    disk = small_disk("2m")
    target = disk.path / "checkpoints" / "best.pt"
    # torch.save(path) writes from C++ and raises a bare RuntimeError; torch.save(file object) writes
    # through Python and raises OSError ENOSPC: both are a full disk.
    for to_file in (True, False):
        with pytest.raises(DiskFullError, match=rf"^disk full: cannot write {target} on {disk.path} \([\d.]+ MB free, "
                                                rf"needs more than the [\d.]+ MB it had written\); free space on "
                                                rf"{disk.path} and rerun"), atomic.atomic_path(target) as tmp:
            if to_file:
                torch.save({"w": torch.zeros(1_000_000)}, tmp)
            else:
                with open(tmp, "wb") as fh:
                    torch.save({"w": torch.zeros(1_000_000)}, fh)
        assert list(target.parent.iterdir()) == []
    atomic.write_bytes(target, b"fits")  # the space came back with the temporary
    assert target.read_bytes() == b"fits"


def test_sqlite_filling_the_disk_is_recognised(small_disk):
    disk = small_disk("256k")
    conn = sqlite3.connect(disk.path / "alloop.db")
    conn.execute("CREATE TABLE t (x BLOB)")
    with pytest.raises(sqlite3.OperationalError) as err:
        for _ in range(100):
            conn.execute("INSERT INTO t VALUES (?)", (b"\0" * 100_000,))
    conn.close()
    full = atomic.disk_full(err.value, disk.path / "alloop.db")
    assert str(full).startswith(f"disk full: cannot write {disk.path / 'alloop.db'} on {disk.path} (")


def test_other_errors_are_not_taken_for_a_full_disk(tmp_path):
    assert atomic.disk_full(RuntimeError("CUDA out of memory"), tmp_path / "x") is None
    assert atomic.disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path / "x") is None
    with pytest.raises(ValueError, match="bad"), atomic.atomic_path(tmp_path / "x"):
        raise ValueError("bad")
    assert list(tmp_path.iterdir()) == []
