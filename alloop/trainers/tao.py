"""NVIDIA TAO Toolkit as an alloop trainer: YOLOv4 trained and run in TAO's container.

``train`` exports the labeled images as KITTI (TAO's layout, :mod:`alloop.formats.kitti`), renders
a YOLOv4 experiment spec from a template, and runs ``tao model yolo_v4 train`` through the TAO
launcher, or ``docker run <TAO image> yolo_v4 train`` directly; ``predict`` stages the images in a
flat folder, runs ``yolo_v4 inference`` and reads its KITTI labels (16 fields, the last one the
confidence) back as :class:`~alloop.boxes.Detections`. The container's output is streamed to the
log line by line; a failure raises :class:`~alloop.errors.TrainerError` quoting its last lines.

What TAO expects, from its sources (``NVIDIA/tao_tensorflow1_backend``, ``nvidia_tao_tf1/cv/yolo_v4``)
and the YOLOv4 page of the TAO docs:

- ``train -e SPEC -r RESULTS_DIR [-k KEY] [--gpus N] [--gpu_index I...]``; the task must be the
  first argument after ``yolo_v4``. Checkpoints land in
  ``RESULTS_DIR/weights/yolov4_<arch><n>_epoch_NNN.hdf5`` (``.tlt`` before TAO 5), the per-epoch
  log in ``RESULTS_DIR/yolov4_training_log_<arch><n>.csv``.
- ``inference -m MODEL -e SPEC -i IMAGE_DIR -r RESULTS_DIR [-k KEY] [-t THRESHOLD]`` reads only the
  top level of IMAGE_DIR (.jpg/.jpeg/.png) and writes ``RESULTS_DIR/labels/<stem>.txt``; boxes are
  in the original image's pixels; classes are the lower-cased ``target_class_mapping`` values.
- Resuming (``resume_model_path``) continues the epoch count parsed from the file name up to
  ``num_epochs``, so alloop sets ``num_epochs`` = that epoch + ``epochs``.
- The launcher does not exit non-zero when the task fails (it prints ``Execution status: FAIL``),
  so alloop also checks that line and that the expected files exist.
- TAO re-splits its command line on spaces inside the container: no path may contain whitespace.

TAO gives one confidence per box (YOLOv4's objectness × class probability for the predicted class),
not a distribution. alloop builds ``probs`` as ``p`` for the predicted class, ``1 − p`` for
background and 0 for the other classes, and ``objectness = p``. See docs/tao.md for which scores
stay meaningful.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from alloop.boxes import Detections, ImageAnnotation
from alloop.errors import ConfigError, LabelError, TrainerError
from alloop.trainers.base import Example, TrainResult, config_from_mapping

log = logging.getLogger(__name__)

SPEC_DIR = Path(__file__).with_name("tao_specs")
SIDECAR_SUFFIX = ".alloop.json"
SIDECAR_FORMAT = "alloop-tao-1"
DEFAULT_IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:5.0.0-tf1.15.5"  # the tf1 image the launcher maps yolo_v4 to
RUNNERS = ("launcher", "docker")
RESUME_MODES = ("resume", "pretrain")
CHECKPOINT_CHOICES = ("last", "best")
INSTALL_HINT = (
    "install the TAO launcher with `pip install nvidia-tao` (plus Docker, the NVIDIA Container Toolkit and "
    "`docker login nvcr.io`), set the trainer option launcher=PATH, or use runner=docker; see docs/tao.md"
)
# Image suffixes TAO reads (case-sensitive): its KITTI training loader and its inference tool.
TRAIN_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})
INFER_SUFFIXES = frozenset({".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG"})
_UNSAFE_PATH = re.compile(r"[\s'\"\\$`]")
_EPOCH_FILE = re.compile(r"_epoch_(\d+)\.(hdf5|tlt)$")
_EPOCH_LINE = re.compile(r"\bEpoch (\d+)/(\d+)")
_TAIL_LINES = 40


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

# Anchors (w, h) at the network's input size, smallest first: the MinneApple tutorial's, shrunk for
# apples of 12-42 px in 704x1280 inputs. ``anchors = "kmeans"`` fits them to the labeled boxes instead.
DEFAULT_ANCHORS: tuple[tuple[float, float], ...] = (
    (15.64, 12.00), (12.71, 18.00), (17.60, 22.00),
    (20.53, 21.00), (25.42, 20.00), (22.49, 29.00),
    (29.33, 27.00), (32.27, 35.00), (41.07, 42.00),
)


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
        if self.min_learning_rate > self.max_learning_rate:
            raise ConfigError(
                f"min_learning_rate ({self.min_learning_rate}) must not exceed "
                f"max_learning_rate ({self.max_learning_rate})"
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


# -- anchors ---------------------------------------------------------------------------------------

def _wh_iou(w: np.ndarray, h: np.ndarray, cw: np.ndarray, ch: np.ndarray) -> np.ndarray:
    inter = np.minimum(w[:, None], cw[None, :]) * np.minimum(h[:, None], ch[None, :])
    return inter / (w[:, None] * h[:, None] + cw[None, :] * ch[None, :] - inter)


def kmeans_anchors(
    sizes: np.ndarray, *, output_width: int, output_height: int, k: int = 9, seed: int = 0,
    max_steps: int = 1000, restarts: int = 5,
) -> tuple[tuple[float, float], ...]:
    """Anchor (w, h) pairs at the network input size, smallest area first.

    ``sizes``: (N, 2) box width and height as fractions of their image. Assign each box to the
    anchor of highest IoU (boxes and anchors centred together), move each anchor to the median of
    its boxes, repeat until nothing moves: the method of TAO's ``yolo_v4 kmeans`` (YOLOv2's anchor
    clustering, distance 1 − IoU). Unlike TAO's single random start, the starts are k-means++
    picks and the best of ``restarts`` runs (highest mean IoU of each box with its anchor) is kept.
    """
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    sizes = sizes[(sizes > 0).all(axis=1)]
    if len(sizes) <= k:
        raise ValueError(f"k-means anchors need more than {k} boxes, got {len(sizes)}")
    w, h = sizes[:, 0], sizes[:, 1]
    rng = np.random.default_rng(seed)
    best, best_fit = None, -1.0
    for _ in range(restarts):
        picks = [int(rng.integers(len(sizes)))]
        for _ in range(k - 1):  # k-means++: the next start far (in 1 - IoU) from those picked
            d = 1.0 - _wh_iou(w, h, w[picks], h[picks]).max(axis=1)
            nxt = rng.choice(len(sizes), p=d**2 / (d**2).sum()) if d.sum() > 0 else rng.integers(len(sizes))
            picks.append(int(nxt))
        cw, ch = w[picks].copy(), h[picks].copy()
        assign = np.full(len(sizes), -1)
        for _ in range(max_steps):
            new = _wh_iou(w, h, cw, ch).argmax(axis=1)
            if np.array_equal(new, assign):
                break
            assign = new
            for j in range(k):
                members = assign == j
                if members.any():  # an empty cluster keeps its centre
                    cw[j], ch[j] = np.median(w[members]), np.median(h[members])
        fit = float(_wh_iou(w, h, cw, ch).max(axis=1).mean())
        if fit > best_fit:
            best, best_fit = (cw, ch), fit
    cw, ch = best
    order = np.argsort(cw * ch, kind="stable")
    return tuple(
        (round(float(cw[j] * output_width), 2), round(float(ch[j] * output_height), 2)) for j in order
    )


def _anchor_string(pairs: Sequence[tuple[float, float]]) -> str:
    return "[" + ", ".join(f"({w:.2f}, {h:.2f})" for w, h in pairs) + "]"


def anchor_shapes(pairs: Sequence[tuple[float, float]]) -> dict[str, str]:
    """TAO's three anchor strings from 9 (w, h) pairs sorted small to big."""
    pairs = sorted(pairs, key=lambda p: p[0] * p[1])
    return {"small": _anchor_string(pairs[0:3]), "mid": _anchor_string(pairs[3:6]),
            "big": _anchor_string(pairs[6:9])}


# -- spec rendering --------------------------------------------------------------------------------

def _template_env(search: Path) -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(search)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_spec(
    context: Mapping[str, Any], *, network: str = "yolo_v4", template: str | Path | None = None
) -> str:
    """The experiment spec text for ``context`` (see :func:`spec_context`) from the network's template."""
    import jinja2

    if template is not None:
        path = Path(template).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"spec_template {path}: no such file; point it at a copy of "
                f"{SPEC_DIR / NETWORKS[network].template}"
            )
        env, name = _template_env(path.parent), path.name
    else:
        env, name = _template_env(SPEC_DIR), NETWORKS[network].template
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"spec template {template or name}: {exc}; fix the template") from exc


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
            _check_tao_path(Path(path), name)
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


def _check_tao_path(path: Path, what: str) -> None:
    # TAO joins its arguments into a `bash -c '...'` string inside the container and re-splits them.
    if _UNSAFE_PATH.search(str(path)):
        raise TrainerError(
            f"{what} path {str(path)!r} contains a space, quote or shell character, which TAO's container "
            "entrypoint cannot pass through; move the project (or file) to a plain path"
        )


# -- commands --------------------------------------------------------------------------------------

def tao_command(
    config: TaoConfig, task: str, args: Sequence[str], *, mounts: Sequence[Path] = ()
) -> list[str]:
    """The argument list that runs ``<network> <task> <args>`` with the configured runner.

    ``mounts``: host directories the container needs, mounted at the same path (docker runner; the
    launcher takes them from its mounts file, see :func:`write_mounts_file`).
    """
    tail = [config.network, task, *args]
    if config.runner == "launcher":
        group = [config.task_group] if config.task_group else []
        return [*config.launcher, *group, *tail]
    cmd = [config.docker, "run", "--rm"]
    if config.gpu_index is None:
        cmd += ["--gpus", "all"]
    else:
        ids = ",".join(str(i) for i in config.gpu_index)
        cmd += ["--gpus", f'"device={ids}"' if "," in ids else f"device={ids}"]
    if config.docker_user:
        cmd += ["--user", f"{os.getuid()}:{os.getgid()}"]
    for d in _mount_roots(mounts):
        cmd += ["-v", f"{d}:{d}"]
    return [*cmd, *config.docker_args, config.docker_image, *tail]


def _mount_roots(paths: Sequence[Path]) -> list[Path]:
    """Distinct directories, none inside another, sorted."""
    dirs = sorted({Path(os.path.realpath(p)) for p in paths})
    out: list[Path] = []
    for d in dirs:
        if not any(d == o or o in d.parents for o in out):
            out.append(d)
    return out


def write_mounts_file(path: Path, mounts: Sequence[Path], *, docker_user: bool = True) -> Path:
    """A TAO launcher mounts file (``~/.tao_mounts.json`` format) mounting ``mounts`` at the same path.

    ``DockerOptions``: ``tty`` false because alloop reads the output through a pipe (the launcher's
    default ``docker exec -it`` needs a terminal), ``user`` = the current uid:gid when ``docker_user``.
    """
    doc: dict[str, Any] = {
        "Mounts": [{"source": str(d), "destination": str(d)} for d in _mount_roots(mounts)],
        "DockerOptions": {"tty": False},
    }
    if docker_user:
        doc["DockerOptions"]["user"] = f"{os.getuid()}:{os.getgid()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def check_mounts_file(path: Path, needed: Sequence[Path]) -> None:
    """A user's mounts file must mount every needed directory at the same path inside the container."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        mounts = [(Path(os.path.realpath(os.path.expanduser(m["source"]))),
                   Path(os.path.realpath(os.path.expanduser(m["destination"])))) for m in doc["Mounts"]]
    except FileNotFoundError:
        raise TrainerError(f"mounts_file {path}: no such file; fix the trainer option or remove it") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainerError(
            f"mounts_file {path}: not a TAO mounts file ({exc}); "
            'it needs "Mounts": [{"source": ..., "destination": ...}]'
        ) from None
    tty = doc.get("DockerOptions", {}).get("tty", True) if isinstance(doc, dict) else True
    if tty is not False:
        raise TrainerError(
            f'mounts_file {path}: add "DockerOptions": {{"tty": false}}; alloop reads TAO\'s output through a '
            "pipe and the launcher's default `docker exec -it` fails without a terminal"
        )
    for d in _mount_roots(needed):
        if not any((d == s or s in d.parents) and s == t for s, t in mounts):
            raise TrainerError(
                f"mounts_file {path} does not mount {d} at the same path inside the container; add "
                f'{{"source": "{d}", "destination": "{d}"}} to its Mounts, '
                "or drop mounts_file to let alloop write one"
            )


def _resolve_executable(cmd: Sequence[str], config: TaoConfig) -> None:
    exe = cmd[0]
    if os.sep in exe:
        ok = os.path.isfile(exe) and os.access(exe, os.X_OK)
    else:
        ok = shutil.which(exe) is not None
    if not ok:
        if config.runner == "launcher":
            raise TrainerError(f"TAO launcher '{exe}' not found; {INSTALL_HINT}")
        raise TrainerError(
            f"'{exe}' not found: the docker runner needs Docker with the NVIDIA Container Toolkit; "
            "install them, set the trainer option docker=PATH, or use runner=launcher; see docs/tao.md"
        )


def run_tao(cmd: Sequence[str], *, what: str, log_file: Path, config: TaoConfig,
            env: Mapping[str, str] | None = None, progress: bool = False) -> list[str]:
    """Run ``cmd`` (an argument list, never a shell string), streaming its output to the log.

    Every line goes to ``log_file`` and to the ``alloop.trainers.tao`` logger; Keras' progress bar
    redraws (``\\r``) keep their last state. A non-zero exit, or the launcher's ``Execution status:
    FAIL`` with exit 0, raises TrainerError with the command and the last lines. Returns the tail.
    """
    _resolve_executable(cmd, config)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    failed_status = False
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=0, desc=f"TAO {what}", unit="epoch", leave=False)
    full_env = {**os.environ, **(env or {})}
    log.info("running %s", " ".join(cmd))
    with log_file.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        try:
            proc = subprocess.Popen(
                list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=full_env, text=True, errors="replace", bufsize=1,
            )
        except OSError as exc:
            raise TrainerError(f"cannot start {cmd[0]} ({exc.strerror}); {INSTALL_HINT}") from exc
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n").split("\r")[-1].rstrip()
                out.write(line + "\n")
                if not line:
                    continue
                tail.append(line)
                log.info("tao: %s", line)
                if "Execution status: FAIL" in line:
                    failed_status = True
                m = _EPOCH_LINE.search(line)
                if bar is not None and m:
                    bar.total = int(m.group(2))
                    bar.n = int(m.group(1)) - 1
                    bar.refresh()
            rc = proc.wait()
        except BaseException:
            _stop(proc)
            raise
        finally:
            if bar is not None:
                bar.close()
    if rc != 0 or failed_status:
        last = " | ".join(list(tail)[-8:]) or "(no output)"
        status = f"exit code {rc}" if rc != 0 else "Execution status: FAIL"
        raise TrainerError(
            f"TAO {what} failed ({status}): {' '.join(cmd)}; last lines: {last}; full log: {log_file}"
        )
    return list(tail)


def _stop(proc: subprocess.Popen) -> None:
    # SIGINT lets the launcher stop its container (its `finally`), docker run forwards it.
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- results ---------------------------------------------------------------------------------------

def find_checkpoints(weights_dir: Path) -> dict[int, Path]:
    """TAO's saved models by epoch: ``<prefix>_<arch>_epoch_NNN.hdf5`` (or ``.tlt``)."""
    found: dict[int, Path] = {}
    if weights_dir.is_dir():
        for p in sorted(weights_dir.iterdir()):
            m = _EPOCH_FILE.search(p.name)
            if m and p.is_file():
                found[int(m.group(1))] = p
    return found


def read_training_log(path: Path) -> list[dict[str, float]]:
    """TAO's per-epoch CSV (epoch, loss, lr, mAP when validated...) as numeric rows; [] when absent."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            row = {}
            for k, v in rec.items():
                try:
                    value = float(v)
                except (TypeError, ValueError):
                    continue
                if math.isfinite(value) and k:
                    row[k.strip()] = value
            if row:
                rows.append(row)
    return rows


def _map_key(row: Mapping[str, float]) -> str | None:
    for k in row:
        if k.lower() in ("map", "val_map", "map@0.5"):
            return k
    return None


def detections_from_boxes(boxes: Sequence[Any], classes: Sequence[str], width: int, height: int,
                          *, hflip: bool = False, score_threshold: float = 0.0) -> Detections:
    """Scored boxes of one image (``Box`` with ``score``) as Detections, highest score first.

    TAO gives one confidence ``p`` per box, so ``probs`` is ``p`` for the box's class, ``1 − p``
    for background (column 0) and 0 elsewhere; ``objectness = p``. ``hflip``: the boxes are on the
    mirrored image and are mapped back. Boxes are clipped to the image; empty ones are dropped.
    """
    index = {c: i for i, c in enumerate(classes)}
    rows = []
    for b in boxes:
        x0, y0, x1, y1 = float(b.x0), float(b.y0), float(b.x1), float(b.y1)
        if hflip:
            x0, x1 = width - x1, width - x0
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        p = float(b.score) if b.score is not None else 0.0
        if x1 - x0 <= 0 or y1 - y0 <= 0 or not p >= score_threshold:
            continue
        rows.append((x0, y0, x1, y1, index[b.label], min(max(p, 0.0), 1.0)))
    if not rows:
        return Detections.empty(len(classes))
    rows.sort(key=lambda r: -r[5])
    arr = np.array(rows, dtype=np.float64)
    labels = arr[:, 4].astype(np.int64)
    scores = arr[:, 5].astype(np.float32)
    probs = np.zeros((len(rows), len(classes) + 1), np.float32)
    probs[:, 0] = 1.0 - scores
    probs[np.arange(len(rows)), labels + 1] = scores
    return Detections(arr[:, :4].astype(np.float32), labels, scores, probs, scores.copy())


# -- the trainer -----------------------------------------------------------------------------------

class TaoTrainer:
    """NVIDIA TAO YOLOv4 behind alloop's Trainer protocol (the container does the work)."""

    name: ClassVar[str] = "tao"
    Config: ClassVar[type] = TaoConfig

    def __init__(self, config: TaoConfig | Mapping[str, Any], classes: Sequence[str], device: str = "auto"):
        if isinstance(config, Mapping):
            config = config_from_mapping(TaoConfig, config, where="[trainer] options (tao)")
        if not isinstance(config, TaoConfig):
            raise ConfigError(f"tao trainer: expected a TaoConfig, got {type(config).__name__}")
        classes = tuple(classes)
        if not classes or not all(isinstance(c, str) and c.strip() for c in classes):
            raise ConfigError(f"tao trainer: classes must be non-empty names, got {list(classes)}")
        from alloop.formats.kitti import kitti_name

        kitti = [kitti_name(c) for c in classes]
        bad = [c for c, k in zip(classes, kitti) if '"' in k or "\\" in k]
        if bad:
            raise ConfigError(f"tao trainer: class name {bad[0]!r} has a quote or backslash, which TAO's spec "
                              "cannot hold; rename the class")
        if len(set(kitti)) != len(kitti):
            raise ConfigError(
                f"tao trainer: classes {list(classes)} collide once lower-cased with spaces as '_' (TAO's "
                "class names); rename one"
            )
        self.config = config
        self.classes = classes
        self.kitti_names = tuple(kitti)
        # TAO runs on the GPUs its container sees (gpus / gpu_index), whatever torch's device is here.
        self.device = device

    # -- training ------------------------------------------------------------------------------

    def train(
        self,
        train: Sequence[Example],
        val: Sequence[Example],
        out_dir: Path,
        *,
        resume_from: Path | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> TrainResult:
        """Export KITTI, render the spec, run ``<network> train``; returns TAO's model file."""
        cfg = self.config
        if not train:
            raise TrainerError("tao trainer: no training images; label some images first")
        # Real paths: the launcher mounts real paths, so a symlinked path would not exist in the container.
        out_dir = Path(os.path.realpath(out_dir))
        _check_tao_path(out_dir, "checkpoint directory")
        out_dir.mkdir(parents=True, exist_ok=True)
        data_dir = out_dir / "data"
        self._export(train, val, data_dir)
        _make_tao_readable(data_dir / "train" / "images", TRAIN_SUFFIXES)
        has_val = (data_dir / "val" / "labels").is_dir()
        if not has_val:
            log.warning("tao: no held-out images; TAO's in-training mAP is measured on the training images")
        val_dir = data_dir / ("val" if has_val else "train")
        if has_val:
            _make_tao_readable(data_dir / "val" / "images", TRAIN_SUFFIXES)

        anchors = self._anchors(train, seed)
        resume_path, pretrain_path, start_epoch = self._starting_point(resume_from)
        num_epochs = start_epoch + cfg.epochs
        context = spec_context(cfg, self.kitti_names, train_dir=data_dir / "train", val_dir=val_dir,
                               anchors=anchors, num_epochs=num_epochs, seed=seed,
                               resume_model_path=resume_path, pretrain_model_path=pretrain_path)
        spec = render_spec(context, network=cfg.network, template=cfg.spec_template)
        spec_file = out_dir / "specs" / "train.txt"
        spec_file.parent.mkdir(parents=True, exist_ok=True)
        spec_file.write_text(spec, encoding="utf-8")

        results = out_dir / "results"
        digest = _digest(spec, data_dir)
        done = out_dir / "train_done.json"
        reused = _reuse(done, digest)
        if reused is None:
            done.unlink(missing_ok=True)
            if results.exists():
                shutil.rmtree(results)  # a half-finished run: its partial checkpoints must not be picked up
            results.mkdir(parents=True)
            args = ["-e", str(spec_file), "-r", str(results)]
            if cfg.key:
                args += ["-k", cfg.key]
            args += ["--gpus", str(cfg.gpus)]
            if cfg.gpu_index is not None and cfg.runner == "launcher":
                args += ["--gpu_index", *(str(i) for i in cfg.gpu_index)]
            args += list(cfg.extra_args)
            mounts = [out_dir, *(p.parent for p in (resume_path, pretrain_path) if p is not None)]
            cmd, env = self._command("train", args, mounts, out_dir)
            run_tao(cmd, what="train", log_file=out_dir / "logs" / "train.log", config=cfg, env=env,
                    progress=progress)
        checkpoints = find_checkpoints(results / "weights")
        if not checkpoints:
            raise TrainerError(
                f"TAO train finished but wrote no model in {results / 'weights'}; "
                f"see {out_dir / 'logs' / 'train.log'}"
            )
        csv_log = results / f"{NETWORKS[cfg.network].prefix}_training_log_{self._arch_name()}.csv"
        history = read_training_log(csv_log)
        epoch = self._pick(checkpoints, history)
        checkpoint = checkpoints[epoch]
        tao_map = _tao_map(history, epoch)
        sidecar = {
            "format": SIDECAR_FORMAT,
            "classes": list(self.classes),
            "kitti_names": list(self.kitti_names),
            "network": cfg.network,
            "arch": cfg.arch,
            "nlayers": cfg.nlayers,
            "epoch": epoch,
            "spec": context,
            "config": _jsonable(dataclasses.asdict(cfg)),
            "tao_val_map50": tao_map,
            "val_is_train": not has_val,
        }
        _write_json(Path(str(checkpoint) + SIDECAR_SUFFIX), sidecar)
        if reused is None:
            _write_json(done, {"digest": digest, "checkpoint": checkpoint.name})
        steps_per_epoch = math.ceil(len(train) / (cfg.batch_size * cfg.gpus))
        return TrainResult(
            checkpoint=checkpoint,
            epochs=epoch - start_epoch,
            steps=(epoch - start_epoch) * steps_per_epoch,
            best_metric=None,  # TAO measures mAP@0.5 only; alloop's mAP@[.5:.95] comes from evaluate()
            history=tuple(history),
            extra={"spec": str(spec_file), "log": str(out_dir / "logs" / "train.log"),
                   "tao_val_map50": tao_map, "start_epoch": start_epoch, "reused": reused is not None},
        )

    def _export(self, train: Sequence[Example], val: Sequence[Example], data_dir: Path) -> None:
        from alloop import formats

        root, anns, val_anns = _common_root(train, val, data_dir)
        try:
            formats.export_training_set("kitti", anns, data_dir, image_root=root, classes=self.classes,
                                        val=val_anns)
        except LabelError as exc:
            raise TrainerError(f"tao trainer: cannot export the labeled images as KITTI: {exc}") from exc

    def _anchors(self, train: Sequence[Example], seed: int) -> tuple[tuple[float, float], ...]:
        cfg = self.config
        if isinstance(cfg.anchors, tuple):
            return cfg.anchors
        if cfg.anchors == "default":
            return DEFAULT_ANCHORS
        sizes = [((b.x1 - b.x0) / e.annotation.width, (b.y1 - b.y0) / e.annotation.height)
                 for e in train for b in e.annotation.boxes]
        try:
            return kmeans_anchors(np.array(sizes), output_width=cfg.output_width,
                                  output_height=cfg.output_height, seed=seed)
        except ValueError as exc:
            log.warning("tao: %s; using the default anchors", exc)
            return DEFAULT_ANCHORS

    def _starting_point(self, resume_from: Path | None) -> tuple[Path | None, Path | None, int]:
        """(resume_model_path, pretrain_model_path, epoch the run starts at)."""
        cfg = self.config
        pretrained = None
        if cfg.pretrained_model is not None:
            pretrained = Path(os.path.realpath(os.path.expanduser(cfg.pretrained_model)))
            if not pretrained.is_file():
                raise TrainerError(
                    f"pretrained_model {pretrained}: no such file; "
                    "download it (see docs/tao.md) or set pretrained_model=none"
                )
        if resume_from is not None:
            resume_from = Path(os.path.realpath(resume_from))
            info = _read_sidecar(resume_from, required=False)
            if info is not None and info.get("classes") != list(self.classes):
                log.warning("tao: classes changed since %s; starting from the pretrained model", resume_from)
            elif info is not None and (info.get("network"), info.get("arch"), info.get("nlayers")) != (
                cfg.network, cfg.arch, cfg.nlayers
            ):
                log.warning("tao: %s is another network or backbone; starting from pretrained_model",
                            resume_from)
            elif cfg.resume_mode == "resume":
                m = _EPOCH_FILE.search(resume_from.name)
                if m is None:
                    raise TrainerError(
                        f"cannot resume from {resume_from}: TAO reads the epoch from names like "
                        "*_epoch_050.hdf5; "
                        "rename it or set resume_mode=pretrain"
                    )
                return resume_from, None, int(m.group(1))
            else:
                return None, resume_from, 0
        if pretrained is None:
            log.warning("tao: no pretrained_model set; YOLOv4 trains from random weights "
                        "(poor with few images; see docs/tao.md)")
        return None, pretrained, 0

    def _arch_name(self) -> str:
        cfg = self.config
        depths = NETWORKS[cfg.network].archs[cfg.arch]
        return f"{cfg.arch}{cfg.nlayers}" if depths is not None else cfg.arch

    def _pick(self, checkpoints: Mapping[int, Path], history: Sequence[Mapping[str, float]]) -> int:
        last = max(checkpoints)
        if self.config.checkpoint == "last":
            return last
        scored = [(row[k], int(row.get("epoch", -1))) for row in history if (k := _map_key(row))]
        scored = [(m, e) for m, e in scored if e in checkpoints]
        if not scored:
            log.warning("tao: no validation mAP for a saved epoch in TAO's log; using the last model")
            return last
        return max(scored)[1]

    def _command(
        self, task: str, args: list[str], mounts: list[Path], work: Path
    ) -> tuple[list[str], dict[str, str]]:
        cfg = self.config
        for p in mounts:
            _check_tao_path(p, "mounted")
        env: dict[str, str] = {}
        if cfg.runner == "launcher":
            if cfg.mounts_file is None:
                env["LAUNCHER_MOUNTS"] = str(write_mounts_file(work / "tao_mounts.json", mounts,
                                                               docker_user=cfg.docker_user))
            else:
                path = Path(os.path.expanduser(cfg.mounts_file))
                check_mounts_file(path, mounts)
                env["LAUNCHER_MOUNTS"] = str(path)
        return tao_command(cfg, task, args, mounts=mounts), env

    # -- inference -----------------------------------------------------------------------------

    def predict(
        self,
        checkpoint: Path,
        images: Sequence[Path],
        *,
        score_threshold: float = 0.05,
        hflip: bool = False,
        progress: bool = True,
    ) -> list[Detections]:
        """Run ``<network> inference`` on ``images``; Detections per image in original pixels."""
        cfg = self.config
        checkpoint = Path(os.path.realpath(checkpoint))
        info = _read_sidecar(checkpoint, required=True)
        if info["classes"] != list(self.classes):
            raise TrainerError(
                f"{checkpoint} was trained on classes {info['classes']}, "
                f"the project has {list(self.classes)}; "
                "train again (alloop step) before predicting"
            )
        if not images:
            return []
        work = _inference_dir(checkpoint) / ("hflip" if hflip else "plain")
        _check_tao_path(work, "inference directory")
        if work.exists():
            shutil.rmtree(work)
        staged = work / "images"
        staged.mkdir(parents=True)
        (work / "no_labels").mkdir()
        sizes = [_stage_image(Path(p), staged / f"{i:06d}", hflip=hflip) for i, p in enumerate(images)]

        # The training spec, minus its starting model; TAO's spec loader wants KITTI data sources
        # even for inference (it reads none), so they point at the staged images, not at the
        # training export (which may have moved with the project).
        context = dict(info["spec"])
        context.update(resume_model_path="", pretrain_model_path="", nms_confidence=cfg.nms_confidence,
                       nms_iou=cfg.nms_iou, top_k=cfg.top_k, eval_batch_size=cfg.eval_batch_size,
                       train_images=str(staged), train_labels=str(work / "no_labels"),
                       val_images=str(staged), val_labels=str(work / "no_labels"))
        spec_file = work / "inference.txt"
        spec_file.write_text(render_spec(context, network=info["network"], template=cfg.spec_template),
                             encoding="utf-8")
        results = work / "results"
        threshold = min(max(float(score_threshold), cfg.nms_confidence), 0.999)
        args = ["-m", str(checkpoint), "-e", str(spec_file), "-i", str(staged), "-r", str(results),
                "-t", repr(threshold)]
        if cfg.key:
            args += ["-k", cfg.key]
        if cfg.gpu_index is not None and cfg.runner == "launcher":
            args += ["--gpu_index", str(cfg.gpu_index[0])]
        cmd, env = self._command("inference", args, [work, checkpoint.parent], work)
        run_tao(cmd, what="inference", log_file=work / "inference.log", config=cfg, env=env,
                progress=progress)

        from alloop import formats

        labels_dir = results / "labels"
        try:
            found = (formats.read_kitti_detections(labels_dir, classes=self.classes)
                     if labels_dir.is_dir() else {})
        except LabelError as exc:
            raise TrainerError(f"TAO inference output is not readable: {exc}") from exc
        out = []
        for i, (path, (w, h)) in enumerate(zip(images, sizes)):
            key = f"{i:06d}"
            if key not in found:
                raise TrainerError(
                    f"TAO inference wrote no labels for {path} ({labels_dir / (key + '.txt')} missing); "
                    f"see {work / 'inference.log'}"
                )
            out.append(detections_from_boxes(found[key], self.classes, w, h, hflip=hflip,
                                             score_threshold=score_threshold))
        return out


# -- helpers ---------------------------------------------------------------------------------------

def _common_root(train: Sequence[Example], val: Sequence[Example],
                 data_dir: Path) -> tuple[Path, list[ImageAnnotation], list[ImageAnnotation]]:
    """The image root the examples' file names are relative to, or a link tree that makes one."""
    roots = set()
    for e in (*train, *val):
        path, name = Path(os.path.abspath(e.path)).as_posix(), e.annotation.file_name
        roots.add(path[: -len(name)] if path.endswith("/" + name) else None)
    if len(roots) == 1 and None not in roots:
        return Path(roots.pop()), [e.annotation for e in train], [e.annotation for e in val]
    # Examples from several roots (or renamed): link each file under its annotation's name.
    from alloop.formats.staging import place_image

    tree = data_dir.parent / "sources"
    if tree.exists():
        shutil.rmtree(tree)
    for e in (*train, *val):
        place_image(Path(e.path), tree / e.annotation.file_name)
    return tree, [e.annotation for e in train], [e.annotation for e in val]


def _inference_dir(checkpoint: Path) -> Path:
    """``<run>/inference`` for a model in TAO's ``<run>/results/weights/``, else beside the model."""
    if checkpoint.parent.name == "weights" and checkpoint.parent.parent.name == "results":
        return checkpoint.parent.parent.parent / "inference"
    return checkpoint.parent / "alloop_inference"


def _needs_rewrite(path: Path, suffixes: frozenset[str]) -> bool:
    from PIL import Image

    if path.suffix not in suffixes:
        return True
    with Image.open(path) as img:
        return img.getexif().get(0x0112, 1) != 1  # TAO ignores EXIF orientation; alloop's boxes follow it


def _make_tao_readable(images_dir: Path, suffixes: frozenset[str]) -> None:
    """Rewrite as PNG (upright) each exported image TAO would skip or read rotated."""
    from alloop.images import load_rgb

    for p in sorted(images_dir.iterdir()):
        if p.is_file() and _needs_rewrite(p, suffixes):
            img = load_rgb(p)
            p.unlink()  # first: the export hard-links the user's file, writing through it would change it
            img.save(p.with_suffix(".png"))


def _stage_image(src: Path, stem: Path, *, hflip: bool) -> tuple[int, int]:
    """Place ``src`` as ``stem.<ext>`` for TAO inference (mirrored when ``hflip``); its upright size."""
    from PIL import Image, ImageOps

    from alloop.formats.staging import place_image
    from alloop.images import load_rgb

    if not src.is_file():
        raise TrainerError(f"{src}: image file is missing; restore it or remove the image from the project")
    if not hflip and not _needs_rewrite(src, INFER_SUFFIXES):
        with Image.open(src) as img:
            size = img.size
        place_image(src, stem.with_suffix(src.suffix))
        return size
    img = load_rgb(src)
    if hflip:
        img = ImageOps.mirror(img)
    img.save(stem.with_suffix(".png"))
    return img.size


def _digest(spec: str, data_dir: Path) -> str:
    """Identifies a training run: the spec and every exported label file and image name."""
    h = hashlib.sha256(spec.encode())
    for p in sorted(data_dir.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(data_dir).as_posix().encode())
            if p.suffix == ".txt":
                h.update(p.read_bytes())
            else:
                h.update(str(p.stat().st_size).encode())
    return h.hexdigest()


def _reuse(done: Path, digest: str) -> dict | None:
    """The record of a finished run with the same inputs (an interrupted step re-entering train)."""
    try:
        rec = json.loads(done.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model = done.parent / "results" / "weights" / str(rec.get("checkpoint", ""))
    if rec.get("digest") == digest and model.is_file():
        log.info("tao: this exact training run already finished; reusing its model")
        return rec
    return None


def _tao_map(history: Sequence[Mapping[str, float]], epoch: int) -> float | None:
    for row in history:
        k = _map_key(row)
        if k and int(row.get("epoch", -1)) == epoch:
            return float(row[k])
    return None


def _read_sidecar(checkpoint: Path, *, required: bool) -> dict | None:
    path = Path(str(checkpoint) + SIDECAR_SUFFIX)
    if not path.is_file():
        if required:
            if not checkpoint.is_file():
                raise TrainerError(f"{checkpoint}: no such checkpoint; run alloop step to train one")
            raise TrainerError(
                f"{checkpoint}: no {path.name} next to it, so it was not trained by alloop's tao trainer; "
                "train with alloop (it records the classes and spec TAO needs)"
            )
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainerError(
            f"{path}: unreadable ({exc}); delete the iteration's checkpoint folder and train again"
        ) from exc
    if info.get("format") != SIDECAR_FORMAT or not isinstance(info.get("spec"), dict):
        raise TrainerError(f"{path}: not an alloop TAO record ({SIDECAR_FORMAT}); train again")
    if not checkpoint.is_file():
        raise TrainerError(f"{checkpoint}: the model file is missing; train again")
    return info


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


__all__ = [
    "DEFAULT_ANCHORS",
    "NETWORKS",
    "TaoConfig",
    "TaoTrainer",
    "anchor_shapes",
    "check_mounts_file",
    "detections_from_boxes",
    "find_checkpoints",
    "kmeans_anchors",
    "read_training_log",
    "render_spec",
    "run_tao",
    "spec_context",
    "tao_command",
    "write_mounts_file",
]
