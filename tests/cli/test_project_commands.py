"""Small commands end to end: backup writes a readable copy; a bad --size is a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from alloop.cli import app
from alloop.project import Project, ProjectConfig
from alloop.store import Store


def test_backup_writes_a_readable_copy_by_default_under_artifacts(tmp_path):
    root = tmp_path / "p"
    with Project.create(root, ProjectConfig(image_root="imgs")) as p:
        p.store.add_classes(["apple"])
    result = CliRunner().invoke(app, ["backup", str(root)])
    assert result.exit_code == 0, result.output
    copies = list((root / "artifacts" / "backups").glob("alloop-*.db"))
    assert len(copies) == 1 and str(copies[0].name) in result.output.replace("\n", "")
    assert Store(copies[0]).classes() == ["apple"]
    out = tmp_path / "elsewhere" / "b.db"
    assert CliRunner().invoke(app, ["backup", str(root), "--out", str(out)]).exit_code == 0
    assert Store(out).classes() == ["apple"]


@pytest.mark.parametrize("command", ["synth", "demo"])
@pytest.mark.parametrize("size", ["320", "axb", "0x240"])
def test_a_bad_size_is_a_one_line_error(tmp_path, command, size):
    result = CliRunner().invoke(app, [command, str(tmp_path / "out"), "--size", size])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"--size '{size}'" in lines[0] and "320x240" in lines[0]
    assert not Path(tmp_path / "out").exists()
