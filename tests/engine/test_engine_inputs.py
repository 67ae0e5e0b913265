"""Bad inputs to the engines, each one line naming the fix; none needs a Ray cluster."""

from __future__ import annotations

import socket
import sys

import pytest
from typer.testing import CliRunner

from alloop.cli import app
from alloop.config import ProjectConfig
from alloop.engine import EmbedderSpec, LocalEngine, build_engine, predictions, trainer_spec
from alloop.errors import ConfigError, EmbedError, TrainerError

from ..embed.conftest import make_pool

BACKBONE = {"arch": "mobilenet_v2", "weights": "none", "image_size": 32}


def test_unknown_engine_in_alloop_toml_is_refused():
    with pytest.raises(ConfigError, match=r'\[engine\] name = "spark": must be local or ray'):
        ProjectConfig.from_toml({"project": {"image_root": "x"}, "engine": {"name": "spark"}}, where="alloop.toml")


def test_negative_workers_are_refused():
    with pytest.raises(ConfigError, match=r"\[engine\] workers = -1: must be a whole number of model workers"):
        ProjectConfig.from_toml({"project": {"image_root": "x"}, "engine": {"workers": -1}}, where="alloop.toml")


def test_unknown_engine_on_the_command_line_is_one_line_and_creates_nothing(tmp_path):
    make_pool(tmp_path / "pool", n=2)
    result = CliRunner().invoke(app, ["init", str(tmp_path / "p"), "--images", str(tmp_path / "pool"),
                                      "--engine", "spark"])
    assert result.exit_code != 0
    assert "[engine] name = \"spark\": must be local or ray" in result.output
    assert not (tmp_path / "p" / "alloop.db").exists()


def test_build_engine_names_the_engines():
    with pytest.raises(ConfigError, match=r"--engine spark: unknown; engines: local, ray"):
        build_engine("spark")


def test_a_ray_address_nobody_listens_on_fails_at_once():
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'alloop[ray]' (CI installs it)")
    from alloop.engine.ray import RayEngine

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"--ray-address 127.0.0.1:{port}: no Ray cluster answers there"):
        list(RayEngine(f"127.0.0.1:{port}").embed(None, None, ["a.jpg"], progress=False))


def test_ray_engine_without_ray_installed_says_how_to_install(monkeypatch):
    from alloop.engine.ray import RayEngine

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    with pytest.raises(ConfigError, match=r"--engine ray needs Ray, which is not installed; pip install 'alloop\[ray\]'"):
        list(RayEngine().embed(None, None, ["a.jpg"], progress=False))


def test_a_worker_that_sees_other_embedder_weights_refuses(tmp_path):
    spec = EmbedderSpec("backbone", BACKBONE, str(tmp_path / "embedder"), "cpu", 0, key="backbone-from-the-head")
    with pytest.raises(EmbedError, match=r"is backbone-[0-9a-f]+, not backbone-from-the-head; the project "
                                         r"directory must be on a filesystem every Ray worker sees"):
        spec.build()


def test_an_unreadable_image_fails_prediction_in_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parents[1] / "data" / "plugin_pkg"))
    paths = make_pool(tmp_path / "pool", n=3)
    broken = tmp_path / "pool" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    ckpt = tmp_path / "meanbox.json"
    ckpt.write_text('{"classes": ["apple"], "boxes": [[0.1, 0.1, 0.5, 0.5]], "scores": [0.9], "config": {}}')
    spec = trainer_spec(ProjectConfig(image_root=str(tmp_path), trainer="meanbox", device="cpu"), ["apple"])
    trainer = spec.build()
    assert len(predictions(LocalEngine(), trainer, spec, ckpt, paths)) == 3
    with pytest.raises(TrainerError, match=rf"^{broken}: cannot decode image \(.*\); fix or remove the file"):
        predictions(LocalEngine(), trainer, spec, ckpt, [*paths, broken])
