"""Trainer options, each declared once: name, type, default, a check and one line of help.

A trainer's ``Config`` is a frozen dataclass whose fields are made with :func:`option`; its
``__post_init__`` calls :func:`validate`, which runs every field's check (and stores the
normalised value: "none" -> None, a list -> a tuple). ``alloop trainers`` lists :func:`describe`;
:func:`config_from_mapping` builds a Config from alloop.toml's ``[trainer.options]`` table.

    @dataclass(frozen=True)
    class MyConfig:
        epochs: int = option(20, "passes over the training images", Int(1))
        lr: float | None = option(None, "peak learning rate (none: the optimizer's)", Float(0, optional=True))

        def __post_init__(self) -> None:
            validate(self)

Checks raise :class:`ConfigError` with "NAME must be ..., got VALUE"; rules between two options
stay in the Config's ``__post_init__`` after ``validate``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from alloop.errors import ConfigError

# A check takes (option name, value) and returns the value to store, or raises ConfigError.
Check = Callable[[str, Any], Any]

# TOML has no null: these strings stand for None in alloop.toml and after -T key=value.
NONE_WORDS = ("", "none", "null")


def option(default: Any, help: str, check: Check | None = None) -> Any:
    """A Config field with its default, one line of help (shown by `alloop trainers`) and a check."""
    if "\n" in help:
        raise ValueError("an option's help is one line")
    return field(default=default, metadata={"help": help, "check": check})


def validate(config: Any) -> None:
    """Run the check of every field of ``config`` (a frozen dataclass) and store what it returns."""
    for f in fields(config):
        check = f.metadata.get("check")
        if check is not None:
            object.__setattr__(config, f.name, check(f.name, getattr(config, f.name)))


@dataclass(frozen=True)
class OptionInfo:
    """One option of a trainer, as `alloop trainers` lists it."""

    name: str
    type: str  # the annotation as written, e.g. "int | None"
    default: Any
    help: str  # "" for a third-party Config that declares none


def describe(config_cls: type) -> list[OptionInfo]:
    """Every option of a Config dataclass, in declaration order (plain dataclasses too)."""
    out = []
    for f in fields(config_cls):
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = None
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append(OptionInfo(f.name, type_name, default, f.metadata.get("help", "")))
    return out


def config_from_mapping(config_cls: type, values: Mapping[str, Any], *, where: str) -> Any:
    """Build a Config from a TOML table; an unknown key or a bad value is a ConfigError naming ``where``."""
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(unknown)}; known options are {', '.join(sorted(known))}"
        )
    values = {k: (None if _is_none_word(v) else v) for k, v in values.items()}
    try:
        return config_cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _is_none_word(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in ("none", "null")


# -- checks -------------------------------------------------------------------------------------


def _plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Int:
    """An integer in ``low..high`` (no ``high``: unbounded); ``optional``: None allowed."""

    low: int
    high: int | None = None
    optional: bool = False

    def __call__(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if not _plain_int(value) or value < self.low or (self.high is not None and value > self.high):
            bound = f"{self.low}..{self.high}" if self.high is not None else f">= {self.low}"
            or_none = " or none" if self.optional else ""
            raise ConfigError(f"{name} must be an integer {bound}{or_none}, got {value!r}")
        return value


@dataclass(frozen=True)
class Float:
    """A finite number in [low, high] (``open_low`` / ``open_high`` exclude the ends)."""

    low: float
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    optional: bool = False

    def __call__(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        ok = _number(value) and (value > self.low if self.open_low else value >= self.low) and (
            value < self.high if self.open_high else value <= self.high
        )
        if not ok:
            interval = f"{'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"
            or_none = " or none" if self.optional else ""
            raise ConfigError(f"{name} must be a number in {interval}{or_none}, got {value!r}")
        return value


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple[str, ...]

    def __call__(self, name: str, value: Any) -> Any:
        if value not in self.values:
            raise ConfigError(f"unknown {name} {value!r}; use one of {', '.join(self.values)}")
        return value


@dataclass(frozen=True)
class Bool:
    """true or false (TOML booleans; no 0/1 or "yes")."""

    def __call__(self, name: str, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value


@dataclass(frozen=True)
class Text:
    """A string; ``nonempty``: not blank."""

    nonempty: bool = False

    def __call__(self, name: str, value: Any) -> Any:
        if not isinstance(value, str) or (self.nonempty and not value.strip()):
            what = "a non-empty string" if self.nonempty else "a string"
            raise ConfigError(f"{name} must be {what}, got {value!r}")
        return value


@dataclass(frozen=True)
class NameOrPath:
    """A file path or a name, or none ("", "none", "null" and None all mean None); stored as str."""

    what: str = "a name, a file path or none"

    def __call__(self, name: str, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{name} must be {self.what}, got {value!r}")
        if value is not None and value.strip().lower() in NONE_WORDS:
            return None
        return value


@dataclass(frozen=True)
class Strings:
    """A list of strings (a string is split on whitespace, as a shell would for plain words)."""

    def __call__(self, name: str, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, got {value!r}")
        return tuple(value)


@dataclass(frozen=True)
class Range:
    """Two numbers ``low <= high`` above ``above`` (a TOML array becomes a tuple), e.g. [0.8, 1.2]."""

    above: float = 0.0
    example: str = "[0.8, 1.2]"

    def __call__(self, name: str, value: Any) -> Any:
        if isinstance(value, list):
            value = tuple(value)
        if (
            not isinstance(value, tuple)
            or len(value) != 2
            or not all(_number(v) for v in value)
            or not self.above < value[0] <= value[1]
        ):
            raise ConfigError(
                f"{name} must be two numbers {self.above} < low <= high, e.g. {self.example}; got {value!r}"
            )
        return value


def checks(*steps: Check) -> Check:
    """Several checks in a row, each given what the previous returned."""

    def run(name: str, value: Any) -> Any:
        for step in steps:
            value = step(name, value)
        return value

    return run


def one_of(values: Sequence[str]) -> Choice:
    """:class:`Choice` from any sequence of names."""
    return Choice(tuple(values))


__all__ = [
    "NONE_WORDS",
    "Bool",
    "Check",
    "Choice",
    "Float",
    "Int",
    "NameOrPath",
    "OptionInfo",
    "Range",
    "Strings",
    "Text",
    "checks",
    "config_from_mapping",
    "describe",
    "one_of",
    "option",
    "validate",
]
