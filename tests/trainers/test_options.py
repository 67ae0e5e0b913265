"""Trainer options: one declaration gives the default, the check and the help line."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pytest

from alloop.errors import ConfigError
from alloop.trainers.options import (
    Bool,
    Choice,
    Float,
    Int,
    NameOrPath,
    Range,
    Strings,
    Text,
    config_from_mapping,
    describe,
    option,
    validate,
)


@dataclass(frozen=True)
class Demo:
    epochs: int = option(20, "passes over the training images", Int(1))
    layers: int | None = option(None, "backbone stages left trainable", Int(0, 5, optional=True))
    lr: float | None = option(None, "peak learning rate", Float(0.0, open_low=True, optional=True))
    optimizer: str = option("sgd", "sgd or adamw", Choice(("sgd", "adamw")))
    augment: bool = option(True, "random flips while training", Bool())
    image: str = option("tao:5", "container image", Text(nonempty=True))
    weights: str | None = option(None, "a weights name, a .pth file or none", NameOrPath())
    args: tuple[str, ...] = option((), "extra arguments", Strings())
    jitter: tuple[float, float] = option((0.8, 1.2), "scale jitter factors", Range())

    def __post_init__(self) -> None:
        validate(self)


def test_defaults_pass_and_values_are_normalised():
    assert Demo() == Demo()
    cfg = Demo(weights=" None ", args="--a b", jitter=[0.9, 1.1])
    assert cfg.weights is None and cfg.args == ("--a", "b") and cfg.jitter == (0.9, 1.1)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"epochs": True}, "epochs must be an integer >= 1, got True"),
        ({"epochs": 2.5}, "epochs must be an integer >= 1, got 2.5"),
        ({"layers": 6}, "layers must be an integer 0..5 or none, got 6"),
        ({"lr": 0.0}, r"lr must be a number in \(0.0, inf\] or none, got 0.0"),
        ({"lr": float("nan")}, "lr must be a number"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; use one of sgd, adamw"),
        ({"augment": "yes"}, "augment must be true or false, got 'yes'"),
        ({"image": " "}, "image must be a non-empty string"),
        ({"weights": 3}, "weights must be a name, a file path or none, got 3"),
        ({"args": [1]}, "args must be a list of strings"),
        ({"jitter": (1.2, 0.8)}, r"jitter must be two numbers 0.0 < low <= high, e.g. \[0.8, 1.2\]"),
    ],
)
def test_each_bad_value_names_the_option_and_what_is_allowed(values, message):
    with pytest.raises(ConfigError, match=message):
        Demo(**values)


def test_a_toml_table_builds_the_config_and_errors_name_the_table():
    where = "alloop.toml [trainer.options]"
    assert config_from_mapping(Demo, {"epochs": 3, "weights": "none"}, where=where) == Demo(epochs=3)
    with pytest.raises(ConfigError, match=r"^alloop.toml \[trainer.options\]: unknown option\(s\) epoch; known"):
        config_from_mapping(Demo, {"epoch": 3}, where=where)
    with pytest.raises(ConfigError, match=r"^alloop.toml \[trainer.options\]: epochs must be an integer >= 1"):
        config_from_mapping(Demo, {"epochs": 0}, where=where)


def test_describe_gives_name_type_default_and_one_line_of_help():
    info = {o.name: o for o in describe(Demo)}
    assert list(info) == [f.name for f in fields(Demo)]
    assert info["epochs"].default == 20 and info["epochs"].type == "int"
    assert info["lr"].help == "peak learning rate"

    @dataclass(frozen=True)
    class Plain:  # a third-party Config written without option(): listed, with no help
        k: int = 3

    (only,) = describe(Plain)
    assert (only.name, only.default, only.help) == ("k", 3, "")


def test_help_is_one_line():
    with pytest.raises(ValueError, match="one line"):
        option(1, "two\nlines")


@pytest.mark.parametrize("name", ["torchvision", "tao"])
def test_every_builtin_trainer_option_has_help(name):
    from alloop.trainers import load_trainer

    info = describe(load_trainer(name).Config)
    assert info and not [o.name for o in info if not o.help]
