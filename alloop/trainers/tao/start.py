"""Where a TAO training run starts: from scratch, a pretrained file, or the previous iteration's model.

Resuming (``resume_model_path``) loads the saved Keras model as it is (``yolov4_model.py``
``resume_model``), and YOLOv4's anchors are constants of its ``YOLOAnchorBox`` layers
(``yolo_arch.py``), while the label encoder takes the spec's anchors (``models/utils.py``). A resumed
run must therefore get the anchors its checkpoint was built with, which alloop keeps in the model's
sidecar; new anchors only take effect in a fresh or ``pretrain`` run, which builds a new model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alloop.errors import TrainerError
from alloop.trainers.base import Example
from alloop.trainers.tao.anchors import DEFAULT_ANCHORS, anchors_from_shapes, kmeans_anchors
from alloop.trainers.tao.config import TaoConfig
from alloop.trainers.tao.record import read_sidecar
from alloop.trainers.tao.results import EPOCH_FILE

log = logging.getLogger(__name__)

Anchors = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class StartingPoint:
    """The model a run starts from, the epoch it continues at, and anchors it must keep (if any)."""

    resume_model: Path | None = None
    pretrain_model: Path | None = None
    epoch: int = 0
    anchors: Anchors | None = None  # the resumed model's own anchors; None: choose them afresh


def starting_point(config: TaoConfig, classes: Sequence[str], resume_from: Path | None) -> StartingPoint:
    """Resume from ``resume_from`` when it fits (same classes and network), else start from weights."""
    pretrained = None
    if config.pretrained_model is not None:
        pretrained = Path(os.path.realpath(os.path.expanduser(config.pretrained_model)))
        if not pretrained.is_file():
            raise TrainerError(
                f"pretrained_model {pretrained}: no such file; "
                "download it (see docs/tao.md) or set pretrained_model=none"
            )
    if resume_from is not None:
        resume_from = Path(os.path.realpath(resume_from))
        info = read_sidecar(resume_from, required=False)
        if info is not None and info.get("classes") != list(classes):
            log.warning("tao: classes changed since %s; starting from the pretrained model", resume_from)
        elif info is not None and (info.get("network"), info.get("arch"), info.get("nlayers")) != (
            config.network, config.arch, config.nlayers
        ):
            log.warning("tao: %s is another network or backbone; starting from pretrained_model", resume_from)
        elif config.resume_mode == "resume":
            m = EPOCH_FILE.search(resume_from.name)
            if m is None:
                raise TrainerError(
                    f"cannot resume from {resume_from}: TAO reads the epoch from names like "
                    "*_epoch_050.hdf5; rename it or set resume_mode=pretrain"
                )
            return StartingPoint(resume_model=resume_from, epoch=int(m.group(1)),
                                 anchors=_model_anchors(resume_from, info))
        else:
            return StartingPoint(pretrain_model=resume_from)
    if pretrained is None:
        log.warning("tao: no pretrained_model set; YOLOv4 trains from random weights "
                    "(poor with few images; see docs/tao.md)")
    return StartingPoint(pretrain_model=pretrained)


def _model_anchors(model: Path, info: dict | None) -> Anchors:
    if info is None:
        raise TrainerError(
            f"cannot resume from {model}: no {model.name}.alloop.json beside it says which anchors the model "
            "was built with, and TAO would encode targets with the spec's while the model decodes with its "
            "own; set resume_mode=pretrain, or train from the start"
        )
    if info.get("anchors"):
        return tuple((float(w), float(h)) for w, h in info["anchors"])
    try:  # records written before the anchors were kept: the spec the model was trained with has them
        return anchors_from_shapes(info["spec"]["anchors"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TrainerError(
            f"cannot resume from {model}: its record does not say which anchors it was built with ({exc}); "
            "set resume_mode=pretrain"
        ) from exc


def choose_anchors(config: TaoConfig, train: Sequence[Example], seed: int) -> Anchors:
    """The configured anchors: explicit pairs, the default set, or k-means on the labeled boxes."""
    if isinstance(config.anchors, tuple):
        return config.anchors
    if config.anchors == "default":
        return DEFAULT_ANCHORS
    sizes = [((b.x1 - b.x0) / e.annotation.width, (b.y1 - b.y0) / e.annotation.height)
             for e in train for b in e.annotation.boxes]
    try:
        return kmeans_anchors(np.array(sizes), output_width=config.output_width,
                              output_height=config.output_height, seed=seed)
    except ValueError as exc:
        log.warning("tao: %s; using the default anchors", exc)
        return DEFAULT_ANCHORS
