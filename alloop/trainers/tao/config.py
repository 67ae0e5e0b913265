"""The TAO trainer's settings (``[trainer.options]`` in alloop.toml) on the shared option checks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alloop.errors import ConfigError
from alloop.trainers.options import (
    Bool,
    Float,
    Int,
    NameOrPath,
    Strings,
    Text,
    checks,
    one_of,
    option,
    validate,
)
from alloop.trainers.tao.paths import SAFE_CHARS, UNSAFE_CHAR

DEFAULT_IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"  # the tf1 image the launcher maps yolo_v4 to
RUNNERS = ("launcher", "docker")
RESUME_MODES = ("resume", "pretrain")
CHECKPOINT_CHOICES = ("last", "best")
INSTALL_HINT = (
    "install the TAO launcher with `pip install nvidia-tao` (plus Docker, the NVIDIA Container Toolkit and "
    "`docker login nvcr.io`), set the trainer option launcher=PATH, or use runner=docker; see docs/tao.md"
)


@dataclass(frozen=True)
class Network:
    """What differs between TAO detectors: template, weight file naming, backbones."""

    name: str
    template: str
    prefix: str  # weights/<prefix>_<arch><nlayers>_epoch_NNN.hdf5, <prefix>_training_log_<arch>.csv
    archs: Mapping[str, tuple[int, ...] | None]  # backbone -> allowed nlayers (None: nlayers unused)


# YOLOv4 backbones and depths from TAO's yolo_v4/models/base_model.py. yolo_v3 / ssd can be added
# here with their own template under specs/tao/ (the repository's specs/ folder).
NETWORKS: dict[str, Network] = {
    "yolo_v4": Network(
        name="yolo_v4",
        template="yolo_v4.txt.j2",
        prefix="yolov4",
        archs={
            "resnet": (10, 18, 34, 50, 101),
            "vgg": (16, 19),
            "darknet": (19, 53),
            "cspdarknet": (19, 53),
            "efficientnet_b0": None,
            "mobilenet_v1": None,
            "mobilenet_v2": None,
            "squeezenet": None,
            "googlenet": None,
        },
    ),
}


def _launcher(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,) if value.strip() else ()
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(a, str) and a for a in value):
        raise ConfigError(f"{name} must be a command name/path or a list of strings, got {value!r}")
    return tuple(value)


def _multiple_of_32(name: str, value: int) -> int:
    if value % 32:
        raise ConfigError(f"{name} must be a multiple of 32 (TAO's YOLOv4 input), got {value}")
    return value


def _gpu_index(name: str, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)
    ):
        raise ConfigError(f"{name} must be GPU numbers >= 0, e.g. [0, 1], got {value!r}")
    return tuple(value)


def _anchors(name: str, value: Any) -> str | tuple[tuple[float, float], ...]:
    if isinstance(value, str):
        if value not in ("default", "kmeans"):
            raise ConfigError(f'{name} must be "default", "kmeans" or 9 [w, h] pairs, got {value!r}')
        return value
    try:
        pairs = tuple((float(w), float(h)) for w, h in value)
    except (TypeError, ValueError):
        raise ConfigError(f'{name} must be "default", "kmeans" or 9 [w, h] pairs, got {value!r}') from None
    if len(pairs) != 9 or not all(math.isfinite(v) and v > 0 for p in pairs for v in p):
        raise ConfigError(
            f"{name} needs 9 [w, h] pairs of positive pixel sizes (smallest first), got {value!r}"
        )
    return pairs


def _shell_words(name: str, value: Any) -> Any:
    """Words TAO's two ``bash -c`` layers pass through unchanged (the rule of :mod:`.paths`)."""
    for word in (value,) if isinstance(value, str) else value:
        m = UNSAFE_CHAR.search(word)
        if m:
            raise ConfigError(
                f"{name} {word!r} contains {m.group()!r}, which TAO's `bash -c` layers would split or "
                f"reinterpret; use only {SAFE_CHARS}"
            )
    return value


_PATH = NameOrPath("a file path or none")
_SIZE = checks(Int(32), _multiple_of_32)
_RATE = Float(0.0, 1.0, open_low=True)


@dataclass(frozen=True)
class TaoConfig:
    """Settings of the TAO trainer (``[trainer.options]`` in alloop.toml, ``-T key=value`` on the CLI)."""

    runner: str = option(
        "launcher",
        "launcher: `<launcher> <task_group> <network> <task>` (pip install "
        "nvidia-tao); docker: `docker run … <docker_image> <network> <task>`",
        one_of(RUNNERS),
    )
    launcher: str | tuple[str, ...] = option(
        "tao",
        'the launcher command: a name/path or a list (a command prefix, e.g. ["python", "fake_tao.py"])',
        _launcher,
    )
    task_group: str = option(
        "model", 'TAO 5\'s launcher groups detectors under `tao model`; "" for older launchers', Text()
    )
    docker: str = option("docker", "the docker executable (runner = docker)", Text(nonempty=True))
    docker_image: str = option(DEFAULT_IMAGE, "TAO image with yolo_v4 (runner = docker)", Text(nonempty=True))
    docker_args: tuple[str, ...] = option(
        (), 'extra `docker run` arguments, e.g. ["--shm-size", "16g"]', Strings()
    )
    docker_user: bool = option(True, "run the container as your uid:gid so its files stay yours", Bool())
    mounts_file: str | None = option(
        None,
        "your launcher mounts file (checked: the launcher's keys, same-path mounts, tty off); none: "
        "alloop writes one and points LAUNCHER_MOUNTS at it",
        _PATH,
    )
    network: str = option("yolo_v4", "TAO detector", one_of(tuple(NETWORKS)))
    arch: str = option("resnet", "backbone (see nlayers)", Text(nonempty=True))
    nlayers: int = option(18, "backbone depth (resnet 10/18/34/50/101, vgg 16/19, darknet 19/53...)", Int(1))
    key: str = option(
        "nvidia_tlt",
        'model key for -k (needed for .tlt models of TAO < 5; "" omits -k)',
        checks(Text(), _shell_words),
    )
    epochs: int = option(50, "epochs per run; a resumed run adds them to the checkpoint's epoch", Int(1))
    batch_size: int = option(8, "batch_size_per_gpu", Int(1))
    eval_batch_size: int = option(8, "eval_config.batch_size, also TAO's inference batch size", Int(1))
    output_width: int = option(704, "network input width (a multiple of 32)", _SIZE)
    output_height: int = option(1280, "network input height (a multiple of 32)", _SIZE)
    max_learning_rate: float = option(
        1e-4, "soft-start cosine schedule: peak (above min_learning_rate)", _RATE
    )
    min_learning_rate: float = option(1e-7, "soft-start cosine schedule: start and end", _RATE)
    soft_start: float = option(
        0.3, "share of the run spent warming up to the peak", Float(0.0, 1.0, open_high=True)
    )
    horizontal_flip: float = option(0.5, "augmentation_config.horizontal_flip probability", Float(0.0, 1.0))
    mosaic_prob: float = option(0.5, "augmentation_config.mosaic_prob", Float(0.0, 1.0))
    checkpoint_interval: int = option(10, "TAO saves a model every this many epochs (and the last)", Int(1))
    checkpoint: str = option(
        "last",
        "model returned: the last epoch, or the best TAO validation mAP among the saved ones",
        one_of(CHECKPOINT_CHOICES),
    )
    pretrained_model: str | None = option(
        None,
        "starting weights of the first run (.hdf5, or .tlt with key), e.g. NGC's resnet_18.hdf5; none: "
        "random weights",
        _PATH,
    )
    resume_mode: str = option(
        "resume",
        "a later iteration: resume (resume_model_path: optimizer, epoch count and anchors continue) "
        "or pretrain (weights only, fresh schedule and anchors)",
        one_of(RESUME_MODES),
    )
    anchors: str | tuple[tuple[float, float], ...] = option(
        "default",
        "default (small objects), kmeans (fitted to the labeled boxes; kept when resuming) or 9 [w, h] pairs",
        _anchors,
    )
    nms_confidence: float = option(
        0.001,
        "nms_config.confidence_threshold (low: scores need unsure boxes)",
        Float(0.0, 1.0, open_low=True, open_high=True),
    )
    nms_iou: float = option(0.5, "nms_config.clustering_iou_threshold", Float(0.0, 1.0, open_low=True))
    top_k: int = option(200, "nms_config.top_k, boxes kept per image", Int(1))
    gpus: int = option(1, "--gpus for train (inference runs on one)", Int(1))
    gpu_index: tuple[int, ...] | None = option(
        None, "which GPUs (--gpu_index, or docker --gpus device=...)", _gpu_index
    )
    extra_args: tuple[str, ...] = option(
        (), 'appended to the train command, e.g. ["--use_amp"]', checks(Strings(), _shell_words)
    )
    spec_template: str | None = option(
        None, "your own Jinja2 spec template (a copy of specs/tao/yolo_v4.txt.j2)", _PATH
    )

    def __post_init__(self) -> None:
        validate(self)
        net = NETWORKS[self.network]
        if self.arch not in net.archs:
            raise ConfigError(
                f"arch '{self.arch}' is not a {self.network} backbone; use one of {', '.join(net.archs)}"
            )
        depths = net.archs[self.arch]
        if depths is not None and self.nlayers not in depths:
            raise ConfigError(
                f"nlayers = {self.nlayers}: {self.arch} in {self.network} comes in "
                f"{', '.join(map(str, depths))} layers"
            )
        if self.min_learning_rate >= self.max_learning_rate:  # TAO asserts max > min (common/utils.py)
            raise ConfigError(
                f"min_learning_rate ({self.min_learning_rate}) must be below "
                f"max_learning_rate ({self.max_learning_rate}), as TAO asserts; lower min_learning_rate"
            )
        if self.gpu_index is not None and len(self.gpu_index) != self.gpus:
            raise ConfigError(
                f"gpu_index names {len(self.gpu_index)} GPU(s) but gpus = {self.gpus}; make them agree"
            )
