"""Every command and every option explains itself (as simonw/llm's tests/test_docs.py checks its commands)."""

from __future__ import annotations

import pytest
import typer.main

from alloop.cli import app

GROUP = typer.main.get_command(app)


def _walk(group, prefix: str = "") -> dict:
    """"name" or "group sub" -> click command, for every command and command group of the app."""
    out = {}
    for name, command in group.commands.items():
        out[f"{prefix}{name}"] = command
        if hasattr(command, "commands"):
            out.update(_walk(command, f"{prefix}{name} "))
    return out


ALL = _walk(GROUP)
COMMANDS = sorted(ALL)


def test_the_app_and_every_command_are_registered_once():
    assert GROUP.help and "alloop init" in GROUP.help
    assert set(GROUP.commands) == ({c.name or c.callback.__name__ for c in app.registered_commands}  # type: ignore[attr-defined]
                                   - {"select_cmd"} | {"select"} | {g.name for g in app.registered_groups})
    assert len(GROUP.commands) >= 15  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_a_summary_line(name):
    summary = (ALL[name].help or "").strip().splitlines()[0] if ALL[name].help else ""
    assert len(summary) > 20 and summary.endswith("."), f"`alloop {name}` needs a one-line summary"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_and_argument_of_every_command_has_help(name):
    missing = [p.name for p in ALL[name].params if not (getattr(p, "help", None) or "").strip() and p.name != "help"]
    assert not missing, f"`alloop {name}`: no help for {', '.join(missing)}"


def _option_help(command: str, flag: str) -> str:
    params = GROUP.commands[command].params  # type: ignore[attr-defined]
    return next(p.help for p in params if flag in getattr(p, "opts", ()))


def test_format_lists_in_help_are_the_registered_formats():
    # Help texts are written out (the CLI imports no library to start), so a new format must be added there too.
    from alloop import formats

    def listed(text: str) -> list[str]:
        return [w.strip(" .,") for w in text.split(":", 1)[1].replace("(sniffed when omitted)", "").split(",")]

    assert listed(_option_help("step", "--format")) == formats.import_formats()
    assert listed(_option_help("init", "--export-format")) == formats.export_formats()
    batch, training = _option_help("export", "--format").split("With --training-set")
    assert listed(batch) == formats.export_formats() and listed(training) == formats.train_export_formats()


def test_commands_write_no_default_values_of_their_own():
    # alloop.config owns every default: a CLI parameter defaults to None, a flag's False, or a config constant.
    import ast
    from pathlib import Path

    import alloop.cli

    literals = []
    for path in sorted(Path(alloop.cli.__file__).parent.glob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for default in fn.args.defaults + [d for d in fn.args.kw_defaults if d is not None]:
                for node in ast.walk(default):
                    if isinstance(node, ast.Constant) and node.value not in (None, False, True, ","):
                        literals.append(f"{path.name}: {fn.name}(... = {ast.unparse(default)})")
    assert not literals, "defaults written in the CLI (move them to alloop.config):\n" + "\n".join(literals)
