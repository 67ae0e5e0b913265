"""Every command and every option explains itself (as simonw/llm's tests/test_docs.py checks its commands)."""

from __future__ import annotations

import pytest
import typer.main

from alloop.cli import app

GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)  # type: ignore[attr-defined]


def test_the_app_and_every_command_are_registered_once():
    assert GROUP.help and "alloop init" in GROUP.help
    assert len(COMMANDS) == len(app.registered_commands) >= 15


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_a_summary_line(name):
    command = GROUP.commands[name]  # type: ignore[attr-defined]
    summary = (command.help or "").strip().splitlines()[0] if command.help else ""
    assert len(summary) > 20 and summary.endswith("."), f"`alloop {name}` needs a one-line summary"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_and_argument_of_every_command_has_help(name):
    command = GROUP.commands[name]  # type: ignore[attr-defined]
    missing = [p.name for p in command.params
               if not (getattr(p, "help", None) or "").strip() and p.name != "help"]
    assert not missing, f"`alloop {name}`: no help for {', '.join(missing)}"
