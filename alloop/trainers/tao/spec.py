"""The YOLOv4 experiment spec: the values it needs and its rendering from a Jinja2 template.

The templates live in ``specs/tao/`` so they read without Python; ``alloop/trainers/tao/specs`` is a
symbolic link to that folder, copied into the wheel as package data (pyproject.toml), the way the
store's schema SQL is shipped (:mod:`alloop.store.migrations` says why a link).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from alloop.errors import ConfigError
from alloop.trainers.tao.anchors import anchor_shapes
from alloop.trainers.tao.config import NETWORKS, TaoConfig
from alloop.trainers.tao.paths import check_tao_path

SPEC_DIR = resources.files("alloop.trainers.tao") / "specs"
SPEC_SOURCE = "specs/tao"  # where the shipped templates are kept in alloop's repository


def _template(text: str, search: Path | None) -> Any:
    """``search``: the folder a user's template may ``{% include %}`` from."""
    import jinja2

    loader = jinja2.FileSystemLoader(str(search)) if search is not None else None
    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    return env.from_string(text)


def render_spec(
    context: Mapping[str, Any], *, network: str = "yolo_v4", template: str | Path | None = None
) -> str:
    """The experiment spec text for ``context`` (see :func:`spec_context`) from the network's template."""
    import jinja2

    name = NETWORKS[network].template
    if template is not None:
        path = Path(template).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"alloop.toml [trainer.options] spec_template {path}: no such file; point it at a copy of "
                f"{SPEC_SOURCE}/{name} (installed as {SPEC_DIR / name})"
            )
        where, source, search = str(path), path, path.parent
    else:
        where, source, search = f"{SPEC_SOURCE}/{name}", SPEC_DIR / name, None
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"spec template {where}: unreadable ({exc.strerror}); fix spec_template or "
                          "reinstall alloop") from exc
    try:
        return _template(text, search).render(**context)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"spec template {where}: {exc}; fix the template") from exc


def spec_context(
    config: TaoConfig,
    class_names: Sequence[str],
    *,
    train_dir: Path,
    val_dir: Path,
    anchors: Sequence[tuple[float, float]],
    num_epochs: int,
    seed: int,
    resume_model_path: Path | None = None,
    pretrain_model_path: Path | None = None,
) -> dict[str, Any]:
    """Every value the spec template uses. ``train_dir``/``val_dir`` hold images/ and labels/."""
    for name, path in (("train data", train_dir), ("validation data", val_dir),
                       ("resume model", resume_model_path), ("pretrained model", pretrain_model_path)):
        if path is not None:
            check_tao_path(Path(path), name)
    return {
        "random_seed": int(seed) % 2**32,
        "anchors": anchor_shapes(anchors),
        "arch": config.arch,
        "nlayers": config.nlayers,
        "batch_size": config.batch_size,
        "num_epochs": int(num_epochs),
        "checkpoint_interval": min(config.checkpoint_interval, int(num_epochs)),
        "min_learning_rate": config.min_learning_rate,
        "max_learning_rate": config.max_learning_rate,
        "soft_start": config.soft_start,
        "resume_model_path": str(resume_model_path) if resume_model_path else "",
        "pretrain_model_path": str(pretrain_model_path) if pretrain_model_path else "",
        "eval_batch_size": config.eval_batch_size,
        "nms_confidence": config.nms_confidence,
        "nms_iou": config.nms_iou,
        "top_k": config.top_k,
        "horizontal_flip": config.horizontal_flip,
        "mosaic_prob": config.mosaic_prob,
        "output_width": config.output_width,
        "output_height": config.output_height,
        "class_names": list(class_names),
        "train_images": str(Path(train_dir) / "images"),
        "train_labels": str(Path(train_dir) / "labels"),
        "val_images": str(Path(val_dir) / "images"),
        "val_labels": str(Path(val_dir) / "labels"),
    }

