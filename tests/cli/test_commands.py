"""The command line: every command explains itself, errors are one line with a non-zero exit."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from alloop.cli import app

runner = CliRunner()
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    cmd = next(c for c in app.registered_commands if (c.name or c.callback.__name__) == name)
    assert cmd.callback.__doc__ and len(cmd.callback.__doc__.strip()) > 20


def test_step_on_a_non_project_is_one_line_error(tmp_path):
    result = runner.invoke(app, ["step", str(tmp_path), "--labels", "x.json"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "not an alloop project" in lines[0] and "alloop init" in lines[0]


def test_init_with_missing_images_is_one_line_error(tmp_path):
    result = runner.invoke(app, ["init", str(tmp_path / "p"), "--images", str(tmp_path / "nope"), "--quiet"])
    assert result.exit_code == 1
    assert "image folder not found" in result.output and "--images" in result.output
    assert not (tmp_path / "p").exists()


def test_bad_trainer_option_syntax(tmp_path):
    (tmp_path / "imgs").mkdir()
    result = runner.invoke(app, ["init", str(tmp_path / "p"), "--images", str(tmp_path / "imgs"), "-T", "epochs"])
    assert result.exit_code == 1 and "expected KEY=VALUE" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("alloop ")


@pytest.mark.parametrize("name", ["x[/]y", "[bold red]proj", "a[/bold]b"])
def test_rich_markup_in_user_strings_is_printed_literally(tmp_path, name):
    # Issue 19: a path with "[/]" crashed with MarkupError; "[bold red]" vanished from the message.
    from typer.testing import CliRunner

    from alloop.cli import app

    target = tmp_path / name
    result = CliRunner().invoke(app, ["status", str(target)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # a one-line error, no traceback
    assert name in result.output.replace("\n", "")
