"""The TAO trainer's settings (``[trainer] options`` in alloop.toml) and their validation."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alloop.errors import ConfigError

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
# here with their own template under tao_specs/.
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


@dataclass(frozen=True)
class TaoConfig:
    """Settings of the TAO trainer (``[trainer.options]`` in alloop.toml, ``-T key=value`` on the CLI)."""

    # How to start TAO: "launcher" runs `<launcher> <task_group> <network> <task> ...` (the TAO
    # launcher, `pip install nvidia-tao`); "docker" runs `docker run ... <docker_image> <network> <task> ...`.
    runner: str = "launcher"
    # The launcher command: an executable name/path, or a list (a command prefix, e.g.
    # ["python", "/path/fake_tao.py"] in tests).
    launcher: str | tuple[str, ...] = "tao"
    task_group: str = "model"  # TAO 5's launcher groups detectors under `tao model`; "" for older launchers
    docker: str = "docker"  # the docker executable (runner = "docker")
    docker_image: str = DEFAULT_IMAGE  # TAO image with yolo_v4 (runner = "docker")
    docker_args: tuple[str, ...] = ()  # extra `docker run` arguments, e.g. ["--shm-size", "16g"]
    docker_user: bool = True  # run the container as the current uid:gid so results stay yours
    # The launcher's mounts file: None -> alloop writes one (every directory it passes to TAO mounted
    # at the same path, docker user = you, no tty) and points LAUNCHER_MOUNTS at it; a path -> that
    # file is used as is and must mount those directories at the same path (checked).
    mounts_file: str | None = None
    network: str = "yolo_v4"  # TAO detector (one of NETWORKS)
    arch: str = "resnet"  # backbone
    nlayers: int = 18  # backbone depth (resnet 10/18/34/50/101, vgg 16/19, darknet 19/53...)
    key: str = "nvidia_tlt"  # model key for -k (needed for .tlt models of TAO < 5; "" omits -k)
    epochs: int = 50  # epochs per run (the tutorial's); a resumed run adds them to the checkpoint's epoch
    batch_size: int = 8  # batch_size_per_gpu
    eval_batch_size: int = 8  # eval_config.batch_size, also TAO's inference batch size
    output_width: int = 704  # network input width (multiple of 32; the tutorial's portrait 704x1280)
    output_height: int = 1280  # network input height (multiple of 32)
    max_learning_rate: float = 1e-4  # soft-start cosine schedule: peak
    min_learning_rate: float = 1e-7  # soft-start cosine schedule: start and end
    soft_start: float = 0.3  # share of the run spent warming up to the peak
    horizontal_flip: float = 0.5  # augmentation_config.horizontal_flip probability
    mosaic_prob: float = 0.5  # augmentation_config.mosaic_prob
    checkpoint_interval: int = 10  # TAO writes a model every this many epochs (and the last one)
    checkpoint: str = "last"  # model returned: "last" epoch, or "best" TAO validation mAP among saved ones
    # Starting weights of the first run: a TAO pretrained backbone/model file (.hdf5, or .tlt with key),
    # e.g. NGC's pretrained_object_detection:resnet18 resnet_18.hdf5. None trains from scratch.
    pretrained_model: str | None = None
    # How a later iteration starts from the previous one's model: "resume" (resume_model_path:
    # optimizer state and epoch count continue, as the tutorial) or "pretrain" (weights only, fresh schedule).
    resume_mode: str = "resume"
    # Anchors: "default" (the tutorial's small-object anchors), "kmeans" (IoU k-means on the labeled
    # boxes at the network input size, as `tao model yolo_v4 kmeans`), or 9 [w, h] pairs smallest first.
    anchors: str | tuple[tuple[float, float], ...] = "default"
    nms_confidence: float = 0.001  # nms_config.confidence_threshold (low: scoring needs uncertain boxes)
    nms_iou: float = 0.5  # nms_config.clustering_iou_threshold
    top_k: int = 200  # nms_config.top_k, boxes kept per image
    gpus: int = 1  # --gpus for train (inference always runs on one)
    gpu_index: tuple[int, ...] | None = None  # which GPUs (--gpu_index, or docker --gpus device=...)
    extra_args: tuple[str, ...] = ()  # appended to the train command, e.g. ["--use_amp"]
    spec_template: str | None = None  # your own Jinja2 spec template (copy of tao_specs/yolo_v4.txt.j2)

    def __post_init__(self) -> None:
        _choice(self, "runner", RUNNERS)
        _choice(self, "network", tuple(NETWORKS))
        _choice(self, "resume_mode", RESUME_MODES)
        _choice(self, "checkpoint", CHECKPOINT_CHOICES)
        launcher = self.launcher
        if isinstance(launcher, str):
            launcher = (launcher,) if launcher.strip() else ()
        if not isinstance(launcher, (list, tuple)) or not launcher or not all(
            isinstance(a, str) and a for a in launcher
        ):
            raise ConfigError(
                f"launcher must be a command name/path or a list of strings, got {self.launcher!r}"
            )
        object.__setattr__(self, "launcher", tuple(launcher))
        for name in ("docker_args", "extra_args"):
            object.__setattr__(self, name, _str_tuple(getattr(self, name), name))
        for name in ("task_group", "key"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("docker", "docker_image", "arch"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ConfigError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("pretrained_model", "mounts_file", "spec_template"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
                value = None
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a file path or none, got {value!r}")
            object.__setattr__(self, name, value)
        if not isinstance(self.docker_user, bool):
            raise ConfigError(f"docker_user must be true or false, got {self.docker_user!r}")
        net = NETWORKS[self.network]
        if self.arch not in net.archs:
            raise ConfigError(
                f"arch '{self.arch}' is not a {self.network} backbone; use one of {', '.join(net.archs)}"
            )
        _check_int(self, "nlayers", 1)
        depths = net.archs[self.arch]
        if depths is not None and self.nlayers not in depths:
            raise ConfigError(
                f"nlayers = {self.nlayers}: {self.arch} in {self.network} comes in "
                f"{', '.join(map(str, depths))} layers"
            )
        for name in ("epochs", "batch_size", "eval_batch_size", "checkpoint_interval", "top_k", "gpus"):
            _check_int(self, name, 1)
        for name in ("output_width", "output_height"):
            _check_int(self, name, 32)
            if getattr(self, name) % 32:
                raise ConfigError(
                    f"{name} must be a multiple of 32 (TAO's YOLOv4 input), got {getattr(self, name)}"
                )
        _check_float(self, "max_learning_rate", 0.0, 1.0, open_low=True)
        _check_float(self, "min_learning_rate", 0.0, 1.0, open_low=True)
        if self.min_learning_rate >= self.max_learning_rate:  # TAO asserts max > min (common/utils.py)
            raise ConfigError(
                f"min_learning_rate ({self.min_learning_rate}) must be below "
                f"max_learning_rate ({self.max_learning_rate}), as TAO asserts; lower min_learning_rate"
            )
        _check_float(self, "soft_start", 0.0, 1.0, open_high=True)
        _check_float(self, "horizontal_flip", 0.0, 1.0)
        _check_float(self, "mosaic_prob", 0.0, 1.0)
        # TAO's inference tool asserts 0 < threshold < 1; alloop passes at least this one.
        _check_float(self, "nms_confidence", 0.0, 1.0, open_low=True, open_high=True)
        _check_float(self, "nms_iou", 0.0, 1.0, open_low=True)
        gpu_index = self.gpu_index
        if gpu_index is not None:
            if isinstance(gpu_index, int) and not isinstance(gpu_index, bool):
                gpu_index = (gpu_index,)
            if not isinstance(gpu_index, (list, tuple)) or not gpu_index or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in gpu_index
            ):
                raise ConfigError(f"gpu_index must be GPU numbers >= 0, e.g. [0, 1], got {self.gpu_index!r}")
            gpu_index = tuple(gpu_index)
            if len(gpu_index) != self.gpus:
                raise ConfigError(
                    f"gpu_index names {len(gpu_index)} GPU(s) but gpus = {self.gpus}; make them agree"
                )
        object.__setattr__(self, "gpu_index", gpu_index)
        object.__setattr__(self, "anchors", _parse_anchors(self.anchors))


def _choice(cfg: Any, name: str, allowed: Sequence[str]) -> None:
    if getattr(cfg, name) not in allowed:
        raise ConfigError(f"unknown {name} {getattr(cfg, name)!r}; use one of {', '.join(allowed)}")


def _str_tuple(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a list of strings, got {value!r}")
    return tuple(value)


def _check_int(cfg: Any, name: str, low: int) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_float(cfg: Any, name: str, low: float, high: float, *, open_low: bool = False,
                 open_high: bool = False) -> None:
    value = getattr(cfg, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if open_low else value >= low) and (value < high if open_high else value <= high)
    if not ok:
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise ConfigError(f"{name} must be a number in {interval}, got {value!r}")


def _parse_anchors(value: Any) -> str | tuple[tuple[float, float], ...]:
    if isinstance(value, str):
        if value not in ("default", "kmeans"):
            raise ConfigError(f"anchors must be \"default\", \"kmeans\" or 9 [w, h] pairs, got {value!r}")
        return value
    try:
        pairs = tuple((float(w), float(h)) for w, h in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"anchors must be \"default\", \"kmeans\" or 9 [w, h] pairs, got {value!r}"
        ) from None
    if len(pairs) != 9 or not all(math.isfinite(v) and v > 0 for p in pairs for v in p):
        raise ConfigError(
            f"anchors needs 9 [w, h] pairs of positive pixel sizes (smallest first), got {value!r}"
        )
    return pairs

