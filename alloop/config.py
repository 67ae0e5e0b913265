"""alloop.toml: :class:`ProjectConfig`, every default (once), and the validation of a whole config.

``specs/alloop.toml`` is the annotated reference of the file. Where a key lives in the TOML
(:data:`SECTIONS`) and what a field's default is (the dataclass) are written here and nowhere
else: the CLI passes None for an option left unset, and :meth:`ProjectConfig.with_changes`
keeps the default (or the project's current value) for it.

A config is checked as a whole when it is loaded or built: every bad key gives one problem that
names the key, the value found and what is allowed, and all problems come in one error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from alloop.device import is_device_name
from alloop.errors import ConfigError
from alloop.preannotate import DEFAULT_MAX_BOXES, DEFAULT_THRESHOLD
from alloop.score import DEFAULT_SCORE

CONFIG_FILE = "alloop.toml"

# TOML section -> {key: ProjectConfig field}. The one map between the file and the dataclass.
SECTIONS: dict[str, dict[str, str]] = {
    "project": {
        "image_root": "image_root",
        "seed": "seed",
        "device": "device",
        "val_fraction": "val_fraction",
        "export_formats": "export_formats",
        "image_url_prefix": "image_url_prefix",
        "max_image_pixels": "max_image_pixels",
    },
    "selection": {
        "init_method": "init_method",
        "method": "selection_method",
        "score": "score",
        "options": "selection_options",
    },
    "embedder": {"name": "embedder", "options": "embedder_options"},
    "trainer": {"name": "trainer", "options": "trainer_options"},
    "preannotation": {"threshold": "preannotation_threshold", "max_boxes": "preannotation_max_boxes"},
    "labelstudio": {"url": "labelstudio_url", "project": "labelstudio_project",
                    "document_root": "labelstudio_document_root"},
    "engine": {"name": "engine", "address": "ray_address", "workers": "engine_workers"},
}
# ProjectConfig field -> (section, key), for messages.
KEY_OF: dict[str, tuple[str, str]] = {f: (s, k) for s, keys in SECTIONS.items() for k, f in keys.items()}
# Seeds go to numpy's and torch's generators: numpy takes 0 ≤ seed < 2**32.
MAX_SEED = 2**32 - 1
# The most max_image_pixels may be; alloop.images sets Pillow's own limit to it so that Pillow
# never refuses an image the project's limit lets through.
MAX_IMAGE_PIXELS_CEILING = 800_000_000


@dataclass(frozen=True)
class ProjectConfig:
    """Everything in alloop.toml (sections and keys: :data:`SECTIONS`; reference: specs/alloop.toml)."""

    image_root: str                              # absolute, or relative to the project directory
    seed: int = 0
    device: str = "auto"                         # auto | cpu | cuda | cuda:N
    val_fraction: float = 0.2                    # share of each labeled batch held out for evaluation
    export_formats: tuple[str, ...] = ("coco", "labelstudio")
    image_url_prefix: str | None = None          # where Label Studio can fetch images (http://host:port/)
    # Larger images are refused at registration from their header, before decoding (a 775 KB PNG can
    # hold 27000x27000 pixels, gigabytes decoded); 100 MP leaves room for 50 MP drone photos.
    max_image_pixels: int = 100_000_000
    selection_method: str = "auto"               # for `step`: by regime (see alloop/select/auto.py)
    init_method: str = "auto"                    # for `init`: auto = typiclust without a model
    score: str = DEFAULT_SCORE
    selection_options: dict[str, Any] = field(default_factory=dict)   # e.g. {alpha = 0.5}
    embedder: str = "auto"                       # ImageNet backbone when its weights are offline, else ssl
    embedder_options: dict[str, Any] = field(default_factory=dict)
    trainer: str = "torchvision"
    trainer_options: dict[str, Any] = field(default_factory=dict)
    # The model's boxes a labeler sees (exports, `alloop labelstudio push`, `alloop serve`): alloop/preannotate.py
    preannotation_threshold: float = DEFAULT_THRESHOLD
    preannotation_max_boxes: int = DEFAULT_MAX_BOXES
    # Label Studio (alloop/labelstudio/): server URL (else $LABEL_STUDIO_URL; the API token only ever
    # comes from $LABEL_STUDIO_API_KEY, never from this file, which reports print), the linked project
    # id, and its local-files document root (else $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, else /).
    labelstudio_url: str | None = None
    labelstudio_project: int | None = None
    labelstudio_document_root: str | None = None
    # Where embedding and inference run (alloop/engine/): local (this process) or ray (a Ray cluster at
    # ray_address, else the one `ray start` runs here / $RAY_ADDRESS), with engine_workers model actors
    # (0: one per GPU of the cluster, else one per CPU).
    engine: str = "local"
    ray_address: str | None = None
    engine_workers: int = 0

    def __post_init__(self) -> None:
        problems = value_problems({f.name: getattr(self, f.name) for f in fields(self)})
        if problems:
            raise ConfigError("project config: " + "; ".join(problems))

    def to_toml(self) -> dict[str, Any]:
        """The nested TOML document for this config (unset optional keys and empty option tables left out)."""
        doc: dict[str, Any] = {}
        for section, keys in SECTIONS.items():
            table: dict[str, Any] = {}
            for key, name in keys.items():
                value = getattr(self, name)
                if value is None or (name.endswith("_options") and not value):
                    continue
                table[key] = _tomlable(value) if name.endswith("_options") else (
                    list(value) if isinstance(value, tuple) else value)
            if table or section in ("project", "selection", "embedder", "trainer"):
                doc[section] = table
        return doc

    @classmethod
    def from_toml(cls, doc: Mapping[str, Any], *, where: str) -> ProjectConfig:
        """Parse and check alloop.toml; every problem (unknown key, wrong type or value) in one error."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        for section, table in doc.items():
            if section not in SECTIONS:
                problems.append(f"unknown section [{section}]; known sections: {', '.join(SECTIONS)}")
                continue
            if not isinstance(table, Mapping):
                problems.append(f"[{section}] must be a table, got {_shown(table)}")
                continue
            unknown = sorted(set(table) - set(SECTIONS[section]))
            if unknown:
                problems.append(f"unknown key(s) {', '.join(unknown)} in [{section}]; "
                                f"known: {', '.join(sorted(SECTIONS[section]))}")
            for key, name in SECTIONS[section].items():
                if key in table:
                    raw = table[key]
                    values[name] = tuple(raw) if name == "export_formats" and isinstance(raw, list) else raw
        if "image_root" not in values:
            problems.append("[project] image_root is missing; set it to your image folder")
        else:
            problems += value_problems({**defaults(), **values})
        if problems:
            raise ConfigError(f"{where}: " + "; ".join(problems))
        return cls(**values)

    def with_changes(self, **changes: Any) -> ProjectConfig:
        """A copy with some fields replaced; None means "leave it as it is" (an unset CLI option)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


# --------------------------------------------------------------------------------------------
# defaults of command parameters that are not alloop.toml keys (the CLI shows them in --help)

BATCH_SIZE = 100  # `alloop init/step --n`: new images to select for labeling per batch
EXPORT_FORMAT = "coco"  # `alloop export --format`, for a batch and for the training set


@dataclass(frozen=True)
class OrchardDefaults:
    """`alloop synth` (and the demo's data): the synthetic orchard generator."""

    images: int = 200
    size: tuple[int, int] = (320, 240)  # width, height
    seed: int = 0


@dataclass(frozen=True)
class DemoDefaults:
    """`alloop demo`: sized to finish in about 5 minutes on 2 CPU cores with a clearly rising curve."""

    directory: str = "data/demo"
    images: int = 240
    steps: int = 3
    batch: int = 24


@dataclass(frozen=True)
class SimulationDefaults:
    """`alloop simulate`: label efficiency of selection methods against random."""

    out: str = "simulation"
    budget_per_round: int = 50
    rounds: int = 6
    methods: tuple[str, ...] = ("random", "coral", "auto")
    seeds: int = 3  # seeds 0..N-1
    test_fraction: float = 0.2


@dataclass(frozen=True)
class ServeDefaults:
    """`alloop serve`: where the Label Studio ML backend listens (this machine only by default)."""

    host: str = "127.0.0.1"
    port: int = 9090


ORCHARD = OrchardDefaults()
DEMO = DemoDefaults()
SIMULATION = SimulationDefaults()
SERVE = ServeDefaults()


def defaults() -> dict[str, Any]:
    """Every field's default (image_root has none: it is the one required key)."""
    out: dict[str, Any] = {}
    for f in fields(ProjectConfig):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def default(name: str) -> Any:
    """The default of one ProjectConfig field, e.g. ``default("embedder")`` (for help texts)."""
    return defaults()[name]


def value_problems(values: Mapping[str, Any]) -> list[str]:
    """One line per field of ``values`` that is not allowed: ``[section] key = value: what is allowed``."""
    problems = []
    for name, value in values.items():
        allowed = _CHECKS[name](value)
        if allowed:
            section, key = KEY_OF[name]
            problems.append(f"[{section}] {key} = {_shown(value)}: {allowed}")
    return problems


# --------------------------------------------------------------------------------------------
# one check per field: None when the value is allowed, else what is allowed


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a non-empty string"


def _seed(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED:
        return None
    return f"must be a whole number from 0 to {MAX_SEED}, e.g. seed = 0"


def _device(value: Any) -> str | None:
    return None if is_device_name(value) else "must be auto, cpu, cuda or cuda:N"


def _val_fraction(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0:
        return None
    return "must be a number in [0, 1), e.g. val_fraction = 0.2"


def _export_formats(value: Any) -> str | None:
    from alloop.formats import export_formats

    known = export_formats()
    rule = f"must be a list of one or more of {', '.join(known)}, e.g. export_formats = [\"coco\"]"
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        return rule
    unknown = [v for v in value if v not in known]
    if unknown:
        return f"unknown format(s) {', '.join(map(_shown, unknown))}; {rule}"
    if len(set(value)) != len(value):
        return f"lists a format twice; {rule}"
    return None


def _url_prefix(value: Any) -> str | None:
    return None if value is None or (isinstance(value, str) and value.strip()) else (
        'must be a URL prefix, e.g. image_url_prefix = "http://127.0.0.1:8081/", or left out')


def _score(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a score NAME:AGG or an image score's name (see `alloop scores`)"
    from alloop.score import parse_score_spec

    try:
        parse_score_spec(value)
    except ConfigError as exc:
        return str(exc)
    return None


def _max_image_pixels(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_IMAGE_PIXELS_CEILING:
        return None
    return f"must be a whole number of pixels from 1 to {MAX_IMAGE_PIXELS_CEILING}, e.g. max_image_pixels = 100000000"


def _options(value: Any) -> str | None:
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return None
    return "must be a table of KEY = VALUE settings"


def _threshold(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return None
    return "must be a score in [0, 1], e.g. threshold = 0.5"


def _max_boxes(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return None
    return "must be a whole number of boxes ≥ 1, e.g. max_boxes = 30"


def _http_url(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().startswith(("http://", "https://"))):
        return None
    return 'must be the Label Studio URL, e.g. url = "http://127.0.0.1:8080", or left out'


def _project_id(value: Any) -> str | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return None
    return "must be a Label Studio project id (a whole number ≥ 1), or left out"


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _engine(value: Any) -> str | None:
    return None if value in ("local", "ray") else 'must be local or ray, e.g. name = "ray"'


def _workers(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return None
    return "must be a whole number of model workers ≥ 0 (0: one per GPU, else one per CPU of the cluster)"


_CHECKS = {
    "image_root": _text,
    "seed": _seed,
    "device": _device,
    "val_fraction": _val_fraction,
    "export_formats": _export_formats,
    "image_url_prefix": _url_prefix,
    "max_image_pixels": _max_image_pixels,
    "selection_method": _text,
    "init_method": _text,
    "score": _score,
    "selection_options": _options,
    "embedder": _text,
    "embedder_options": _options,
    "trainer": _text,
    "trainer_options": _options,
    "preannotation_threshold": _threshold,
    "preannotation_max_boxes": _max_boxes,
    "labelstudio_url": _http_url,
    "labelstudio_project": _project_id,
    "labelstudio_document_root": _optional_text,
    "engine": _engine,
    "ray_address": _optional_text,
    "engine_workers": _workers,
}


def _shown(value: Any) -> str:
    """A value as it would be written in TOML (strings quoted, booleans lower case)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False, default=str)


def _tomlable(options: Mapping[str, Any]) -> dict[str, Any]:
    """TOML has no null: an option set to None is written as "none" (read back as None)."""
    return {k: ("none" if v is None else list(v) if isinstance(v, tuple) else v) for k, v in options.items()}


__all__ = ["BATCH_SIZE", "CONFIG_FILE", "DEMO", "EXPORT_FORMAT", "KEY_OF", "ORCHARD", "SECTIONS",
           "SERVE", "SIMULATION", "ProjectConfig", "default", "defaults", "value_problems"]
