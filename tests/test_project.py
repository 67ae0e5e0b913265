"""Project directory: config round trip, not-a-project errors, the exclusive lock."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from alloop.errors import ConfigError, LockError, ProjectError
from alloop.project import CONFIG_FILE, Project, ProjectConfig, load_config


def test_config_round_trips_through_toml(tmp_path):
    cfg = ProjectConfig(image_root="/data/imgs", seed=3, trainer_options={"epochs": 5, "weights": "none"},
                        embedder_options={"epochs": 2}, selection_options={"alpha": 0.3})
    with Project.create(tmp_path / "p", cfg):
        pass
    assert load_config(tmp_path / "p" / CONFIG_FILE) == cfg


def test_unknown_config_key_names_the_known_ones(tmp_path):
    (tmp_path / CONFIG_FILE).write_text('[project]\nimage_root = "x"\nsed = 1\n')
    with pytest.raises(ConfigError, match="unknown key.*sed.*known: .*seed"):
        load_config(tmp_path / CONFIG_FILE)


def test_broken_toml_is_a_one_line_error(tmp_path):
    (tmp_path / CONFIG_FILE).write_text("[project\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / CONFIG_FILE)


def test_not_a_project(tmp_path):
    with pytest.raises(ProjectError, match="not an alloop project.*alloop init"):
        Project.open(tmp_path)
    with pytest.raises(ProjectError, match="no such project directory"):
        Project.open(tmp_path / "missing")


def test_create_refuses_an_existing_project(tmp_path):
    with Project.create(tmp_path / "p", ProjectConfig(image_root="x")):
        pass
    with pytest.raises(ProjectError, match="already an alloop project"):
        Project.create(tmp_path / "p", ProjectConfig(image_root="x"))


def _hold_lock(root, started, release):
    p = Project.open(root)
    started.set()
    release.wait(10)
    p.close()


def test_second_process_is_refused_with_the_holders_pid(tmp_path):
    with Project.create(tmp_path / "p", ProjectConfig(image_root="x")):
        pass
    ctx = mp.get_context("fork")
    started, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(tmp_path / "p", started, release))
    proc.start()
    try:
        assert started.wait(10)
        with pytest.raises(LockError, match=rf"locked by pid {proc.pid}"):
            Project.open(tmp_path / "p")
        # Read-only access (status) works while the lock is held.
        with Project.open(tmp_path / "p", lock=False) as ro:
            assert ro.store.counts()["images"] == 0
    finally:
        release.set()
        proc.join(10)
    with Project.open(tmp_path / "p"):
        pass


def test_lock_of_a_killed_process_is_released(tmp_path):
    with Project.create(tmp_path / "p", ProjectConfig(image_root="x")):
        pass
    ctx = mp.get_context("fork")
    started, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(tmp_path / "p", started, release))
    proc.start()
    assert started.wait(10)
    proc.kill()  # SIGKILL: no cleanup runs, the kernel drops the flock
    proc.join(10)
    with Project.open(tmp_path / "p"):
        pass


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="val_fraction"):
        ProjectConfig(image_root="x", val_fraction=1.5)
    with pytest.raises(ConfigError, match="device"):
        ProjectConfig(image_root="x", device="tpu")
