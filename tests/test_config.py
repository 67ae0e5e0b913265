"""alloop.toml checked as a whole at load: one problem per bad key, naming the key, the value and what is allowed."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from typer.testing import CliRunner

from alloop.cli import app
from alloop.config import KEY_OF, SECTIONS, ProjectConfig, default, defaults
from alloop.errors import ConfigError
from alloop.project import CONFIG_FILE, Project, load_config


def _load(tmp_path: Path, project: str = "", extra: str = "") -> ProjectConfig:
    (tmp_path / CONFIG_FILE).write_text(f'[project]\nimage_root = "imgs"\n{project}\n{extra}', encoding="utf-8")
    return load_config(tmp_path / CONFIG_FILE)


@pytest.mark.parametrize(
    ("line", "shown"),
    [("seed = 1.7", "seed = 1.7"), ("seed = true", "seed = true"), ('seed = "abc"', 'seed = "abc"'),
     ("seed = -1", "seed = -1")],
)
def test_seed_must_be_a_whole_number(tmp_path, line, shown):
    # Issue 19: 1.7 and true became 1; "abc" gave a bare "invalid literal for int()".
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, line)
    message = str(err.value)
    assert message.startswith(str(tmp_path / CONFIG_FILE))
    assert f"[project] {shown}: must be a whole number" in message and "e.g. seed = 0" in message


def test_export_formats_must_be_a_list(tmp_path):
    # Issue 19: "coco" was iterated letter by letter and failed later as "unknown export format 'c'".
    with pytest.raises(ConfigError, match=r'\[project\] export_formats = "coco": must be a list .*'
                                          r'e\.g\. export_formats = \["coco"\]'):
        _load(tmp_path, 'export_formats = "coco"')


def test_unknown_export_format_is_named_with_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r'unknown format\(s\) "cocoa"; must be a list of one or more of .*coco'):
        _load(tmp_path, 'export_formats = ["coco", "cocoa"]')
    with pytest.raises(ConfigError, match="lists a format twice"):
        _load(tmp_path, 'export_formats = ["coco", "coco"]')


def test_every_bad_key_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, 'seed = true\ndevice = "tpu"\nval_fraction = 1\n',
              '[selection]\nscore = "nope:max"\n[trainer]\noptions = 3\n[embedder]\nname = ""\n')
    message = str(err.value)
    assert "\n" not in message  # one line for the CLI
    for part in ("[project] seed = true", '[project] device = "tpu": must be auto, cpu, cuda or cuda:N',
                 "[project] val_fraction = 1: must be a number in [0, 1)", '[selection] score = "nope:max"',
                 "[trainer] options = 3: must be a table", '[embedder] name = "": must be a non-empty string'):
        assert part in message, part


def test_booleans_are_not_numbers(tmp_path):
    with pytest.raises(ConfigError, match=r"\[project\] val_fraction = true"):
        _load(tmp_path, "val_fraction = true")


def test_unknown_section_and_missing_image_root(tmp_path):
    (tmp_path / CONFIG_FILE).write_text('[projet]\nimage_root = "x"\n')
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / CONFIG_FILE)
    assert "unknown section [projet]; known sections: project, selection, embedder, trainer" in str(err.value)
    assert "[project] image_root is missing" in str(err.value)


def test_a_valid_file_keeps_integers_and_lists_as_written(tmp_path):
    cfg = _load(tmp_path, 'seed = 7\nval_fraction = 0\nexport_formats = ["coco"]\ndevice = "cuda:1"')
    assert (cfg.seed, cfg.val_fraction, cfg.export_formats, cfg.device) == (7, 0, ("coco",), "cuda:1")


def test_a_config_built_in_code_is_checked_the_same_way():
    with pytest.raises(ConfigError, match=r"\[project\] seed = 1\.5: must be a whole number"):
        ProjectConfig(image_root="x", seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r'\[project\] export_formats = "coco"'):
        ProjectConfig(image_root="x", export_formats="coco")  # type: ignore[arg-type]


def test_with_changes_keeps_what_is_none():
    cfg = ProjectConfig(image_root="x", seed=3)
    assert cfg.with_changes(seed=None, device="cpu") == ProjectConfig(image_root="x", seed=3, device="cpu")


def test_defaults_come_from_the_dataclass_and_every_field_has_a_key():
    assert set(KEY_OF) == set(defaults()) | {"image_root"}
    assert default("export_formats") == ("coco", "labelstudio") and default("embedder") == "auto"
    assert {k for keys in SECTIONS.values() for k in keys} >= {"seed", "method", "name", "options"}


def test_a_bad_project_config_stops_the_cli_in_one_line_and_changes_nothing(tmp_path):
    with Project.create(tmp_path / "p", ProjectConfig(image_root="x")):
        pass
    db = tmp_path / "p" / "alloop.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    text = (tmp_path / "p" / CONFIG_FILE).read_text().replace("seed = 0", 'seed = "abc"')
    (tmp_path / "p" / CONFIG_FILE).write_text(text)
    result = CliRunner().invoke(app, ["status", str(tmp_path / "p")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and '[project] seed = "abc": must be a whole number' in result.output.replace("\n", "")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_init_options_left_unset_take_the_config_defaults(tmp_path):
    # The CLI passes None for what the user did not set; alloop.config decides.
    images = tmp_path / "imgs"
    images.mkdir()
    result = CliRunner().invoke(app, ["init", str(tmp_path / "p"), "--images", str(images), "--val-fraction", "1.5"])
    assert result.exit_code == 1 and "[project] val_fraction = 1.5" in result.output.replace("\n", "")
    assert not (tmp_path / "p").exists()
    # An unreadable pool stops init after the project is created: its alloop.toml shows what unset means.
    (images / "a.jpg").write_bytes(b"not an image")
    result = CliRunner().invoke(app, ["init", str(tmp_path / "p"), "--images", str(images), "--seed", "4", "-q"])
    assert result.exit_code == 1 and "could be read" in result.output
    written = load_config(tmp_path / "p" / CONFIG_FILE)
    assert written == ProjectConfig(image_root=str(images.resolve()), seed=4)
    assert tomllib.loads((tmp_path / "p" / CONFIG_FILE).read_text())["project"]["export_formats"] == ["coco", "labelstudio"]


# ---------------------------------------------------------------------------------------------
# every message that names an alloop.toml section or key names a real one (issue 15)

ROOT = Path(__file__).resolve().parents[1]
# "[section]", "[section.sub]", "[section] key", "key in alloop.toml [section]"; not inside a word ("list[str]").
SECTION_REF = re.compile(r"(?:(\w+) in (?:alloop\.toml )?)?(?<![\w\[])\[([A-Za-z_<>]+(?:\.[A-Za-z_<>{}]+)*)\](?: (\w+))?")
# Bracketed words in sources that are not alloop.toml references, each with its reason.
NOT_TOML = {
    ("alloop/cli/arguments.py", "[lists]"): "a TOML array in the KEY=VALUE help",
    ("alloop/cli/arguments.py", "[ray]"): "the pip extra in --engine's help (alloop\\[ray], escaped for Rich)",
    ("alloop/formats/labelstudio.py", "[name]"): "Label Studio's JSON shape",
    ("alloop/config.py", "[section] key"): "the message pattern itself",
}


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module; an f-string's fields become "{}"."""
    out = []
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.JoinedStr):
            out.append((node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
    return out


def _parse(path: Path) -> ast.Module:
    """``ast.parse`` of a file. CPython 3.11.7 can leave its AST converter's depth counter wrong after an
    earlier error in the same process (another test's TorchScript compile), and every later parse then
    raises "AST constructor recursion depth mismatch" (a CPython bug, fixed in 3.11.8): parse in a fresh
    interpreter in that case."""
    source = path.read_text(encoding="utf-8")
    try:
        return ast.parse(source)
    except SystemError:
        dumped = subprocess.run([sys.executable, "-c", "import ast, pickle, sys; "
                                 "sys.stdout.buffer.write(pickle.dumps(ast.parse(sys.stdin.read())))"],
                                input=source.encode(), capture_output=True, check=True).stdout
        return pickle.loads(dumped)


def _option_tables() -> dict[str, set[str]]:
    """The options each [x.options] table accepts: every installed plugin's Config fields, every selector's options."""
    from alloop.embed import available_embedders, load_embedder
    from alloop.select import selectors
    from alloop.trainers import available_trainers, load_trainer

    return {
        "trainer.options": {f.name for n in available_trainers() for f in dataclasses.fields(load_trainer(n).Config)},
        "embedder.options": {f.name for n in available_embedders() for f in dataclasses.fields(load_embedder(n).Config)},
        "selection.options": {k for s in selectors().values() for k in s.defaults},
    }


def _section_problems(section: str, key_after: str | None, key_before: str | None, tables: dict[str, set[str]]) -> str | None:
    if section == "{}":
        return None  # built from SECTIONS at run time (alloop.config), checked by the tests above
    keys = {**{s: set(k) for s, k in SECTIONS.items()}, **tables}
    if section not in keys:
        return f"[{section}] is not a section of alloop.toml (sections: {', '.join(sorted(keys))})"
    all_keys = set().union(*keys.values())
    for key in (key_before, key_after):
        # A word after "[section] " is a key when it looks like one; "[project] must be ..." is prose.
        if key and (key in all_keys or "_" in key) and key not in keys[section]:
            return f"{key!r} is not a key of [{section}] (keys: {', '.join(sorted(keys[section]))})"
    return None


def test_every_message_names_a_real_section_and_key():
    from rich.errors import StyleSyntaxError
    from rich.style import Style

    tables = _option_tables()
    wrong: dict[str, None] = {}  # an f-string's literal parts are also visited on their own: keep each once
    seen = 0
    for path in sorted((ROOT / "alloop").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for line, text in _string_literals(path):
            for m in SECTION_REF.finditer(text):
                key_before, section, key_after = m.groups()
                try:
                    Style.parse(section.replace(".", " "))
                    continue  # Rich markup such as [green] or [bold]
                except StyleSyntaxError:
                    pass
                bracket = f"[{section}]" + (f" {key_after}" if key_after else "")
                if (rel, f"[{section}]") in NOT_TOML or (rel, bracket) in NOT_TOML:
                    continue
                seen += 1
                problem = _section_problems(section, key_after, key_before, tables)
                if problem:
                    wrong[f"{rel}:{line}: {m.group(0)!r}: {problem}"] = None
    assert seen >= 5  # the scan finds the references it is meant to check
    assert not wrong, "messages naming alloop.toml sections or keys that do not exist:\n" + "\n".join(wrong)


def test_the_section_scan_catches_the_known_wrong_spellings():
    tables = {"trainer.options": {"epochs"}, "embedder.options": {"epochs"}, "selection.options": {"alpha"}}
    assert _section_problems("trainer.torchvision", None, None, tables)
    assert _section_problems("embed.ssl", None, None, tables)
    assert _section_problems("embed.{}", None, None, tables)  # f"[embed.{name}]"
    assert _section_problems("trainer.{}", None, None, tables)  # f"[trainer.{name}]": no such table either
    assert _section_problems("project", "sede", None, tables) is None  # prose-like word: not taken for a key
    assert _section_problems("project", "image_rot", None, tables)
    assert _section_problems("trainer.options", None, "grad_clip", tables)
    assert _section_problems("trainer.options", None, "epochs", tables) is None
    assert _section_problems("project", "seed", None, tables) is None


def test_the_reference_config_lists_the_batch_export_formats():
    from alloop.formats import export_formats

    text = (ROOT / "specs" / "alloop.toml").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("# Formats each batch is exported in"))
    assert line.split(":", 1)[1].split("(")[0].replace(" ", "").strip(",") == ",".join(export_formats())
