"""Project directory: config round trip, not-a-project errors, the exclusive lock."""

from __future__ import annotations

import multiprocessing as mp
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from alloop.errors import ConfigError, LockError, ProjectError
from alloop.project import CONFIG_FILE, Project, ProjectConfig, load_config
from alloop.store import Store


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


def test_create_finishes_a_create_that_stopped_before_the_config(tmp_path):
    # A full disk while the store was being created leaves alloop.db and no alloop.toml.
    (tmp_path / "p").mkdir()
    Store(tmp_path / "p" / "alloop.db", create=True).close()
    with Project.create(tmp_path / "p", ProjectConfig(image_root="x")) as p:
        assert p.store.iterations() == []
    assert (tmp_path / "p" / "alloop.toml").exists()


def test_create_refuses_a_store_with_work_whose_config_went_missing(tmp_path):
    with Project.create(tmp_path / "p", ProjectConfig(image_root="x")) as p:
        p.store.start_iteration(0, method="random", score_spec=None, config={})
    (tmp_path / "p" / "alloop.toml").unlink()
    with pytest.raises(ProjectError, match=r"alloop.db holds a project but alloop.toml is missing; restore .*alloop.toml"):
        Project.create(tmp_path / "p", ProjectConfig(image_root="x"))
    assert (tmp_path / "p" / "alloop.db").exists()


def _hold_lock(root, started, release):
    p = Project.open(root)
    started.set()
    release.wait(10)
    p.close()


@contextmanager
def _lock_held_by_another_process(root: Path) -> Iterator[mp.Process]:
    """A new project at ``root`` whose lock a forked process holds until the block ends."""
    with Project.create(root, ProjectConfig(image_root="x")):
        pass
    ctx = mp.get_context("fork")
    started, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(root, started, release))
    proc.start()
    try:
        assert started.wait(10)
        yield proc
    finally:
        # A killed holder may have died inside the Event's shared lock: setting it would hang.
        if proc.exitcode is None:
            release.set()
        proc.join(10)


def test_second_process_is_refused_with_the_holders_pid(tmp_path):
    with _lock_held_by_another_process(tmp_path / "p") as proc:
        with pytest.raises(LockError, match=rf"locked by pid {proc.pid}"):
            Project.open(tmp_path / "p")
        # Read-only access (status) works while the lock is held.
        with Project.open(tmp_path / "p", lock=False) as ro:
            assert ro.store.counts()["images"] == 0
    with Project.open(tmp_path / "p"):
        pass


def test_lock_of_a_killed_process_is_released(tmp_path):
    with _lock_held_by_another_process(tmp_path / "p") as proc:
        proc.kill()  # SIGKILL: no cleanup runs, the kernel drops the flock
        proc.join(10)
        with Project.open(tmp_path / "p"):
            pass


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="val_fraction"):
        ProjectConfig(image_root="x", val_fraction=1.5)
    with pytest.raises(ConfigError, match="device"):
        ProjectConfig(image_root="x", device="tpu")


def test_the_reference_config_in_specs_loads_round_trips_and_covers_every_key():
    import re
    import tomllib
    from pathlib import Path

    from alloop.embed import load_embedder
    from alloop.select import selectors
    from alloop.trainers import config_from_mapping, load_trainer

    path = Path(__file__).resolve().parents[1] / "specs" / "alloop.toml"
    text = path.read_text(encoding="utf-8")
    cfg = ProjectConfig.from_toml(tomllib.loads(text), where=str(path))
    assert ProjectConfig.from_toml(cfg.to_toml(), where="round trip") == cfg
    # Every key alloop.toml accepts is shown in its section, set or commented out with its meaning
    # (an options table as its [section.options] subtable).
    from alloop.config import SECTIONS, defaults

    blocks = dict(re.findall(r"^\[([a-z_.]+)\]\n(.*?)(?=^\[|\Z)", text, flags=re.M | re.S))
    for section, keys in SECTIONS.items():
        shown = set(re.findall(r"^#?\s*([a-z_]+)\s*=", blocks[section], flags=re.M))
        shown |= {"options"} if f"{section}.options" in blocks else set()
        assert set(keys) <= shown, f"[{section}] in specs/alloop.toml lacks {set(keys) - shown}"
    # Its values are the code's defaults (option tables are examples).
    for name, value in defaults().items():
        if not name.endswith("_options"):
            assert getattr(cfg, name) == value, name
    known = {k for s in selectors().values() for k in s.defaults}
    assert set(re.findall(r"^#?\s*([a-z_]+)\s*=", text.split("[selection.options]")[1].split("[embedder]")[0],
                          flags=re.M)) <= known
    # The embedder examples are for ssl (auto takes no options; its choice is tested in tests/embed/test_auto.py).
    ssl_examples = dict(re.findall(r"^#\s*([a-z_]+)\s*=\s*(\d+)", blocks["embedder.options"], flags=re.M))
    config_from_mapping(load_embedder("ssl").Config, {k: int(v) for k, v in ssl_examples.items()}, where="specs")
    assert cfg.embedder == "auto" and not cfg.embedder_options
    config_from_mapping(load_trainer(cfg.trainer).Config, cfg.trainer_options, where="specs trainer")


def test_lock_holder_is_none_when_free_and_names_a_live_holder(tmp_path):
    from alloop.project import ProjectLock

    with _lock_held_by_another_process(tmp_path / "p") as proc:
        assert ProjectLock(tmp_path / "p").holder() == f"pid {proc.pid} on {socket.gethostname()}"
    assert ProjectLock(tmp_path / "p").holder() is None
    assert ProjectLock(tmp_path / "missing").holder() is None


def test_a_status_probe_does_not_make_a_starting_step_fail(tmp_path):
    # `status` holds a shared flock for an instant; a command taking the lock then waits it out.
    import fcntl
    import threading

    from alloop.project import LOCK_FILE

    with Project.create(tmp_path / "p", ProjectConfig(image_root="x")):
        pass
    fh = open(tmp_path / "p" / LOCK_FILE)
    fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    threading.Timer(0.1, lambda: (fcntl.flock(fh.fileno(), fcntl.LOCK_UN), fh.close())).start()
    with Project.open(tmp_path / "p"):
        pass


def test_lock_holder_of_an_unreadable_lock_file_is_unknown_not_a_crash(tmp_path):
    import os

    from alloop.project import LOCK_FILE, ProjectLock

    with Project.create(tmp_path / "p", ProjectConfig(image_root="x")):
        pass
    (tmp_path / "p" / LOCK_FILE).unlink()
    (tmp_path / "p" / LOCK_FILE).mkdir()  # unreadable as a file for any user, root included
    assert ProjectLock(tmp_path / "p").holder() is None
    os.rmdir(tmp_path / "p" / LOCK_FILE)
