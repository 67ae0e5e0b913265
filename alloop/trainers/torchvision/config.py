"""Settings of the torchvision trainer: alloop.toml's ``[trainer.options]`` when ``[trainer] name = "torchvision"``.

Each option is declared once, with its default, its check and the line of help `alloop trainers`
shows (:mod:`alloop.trainers.options`); rules between options follow in ``__post_init__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alloop.errors import ConfigError
from alloop.trainers.options import Bool, Float, Int, NameOrPath, Range, one_of, option, validate
from alloop.trainers.torchvision.models import MODELS
from alloop.weights import is_weights_file, weights_enum_member

OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("cosine", "step", "constant")
DEFAULT_LR = {"sgd": 0.01, "adamw": 1e-4}
# Config fields that do not change what a run computes, so a run may resume under new values.
RUNTIME_FIELDS = ("epochs", "max_steps", "early_stopping_patience", "num_workers", "amp")

_WEIGHTS = NameOrPath()
_INT_OR_NONE = Int(1, optional=True)


@dataclass(frozen=True)
class TorchvisionConfig:
    """Settings of the torchvision Faster R-CNN trainer (alloop.toml ``[trainer.options]``, ``-T key=value``)."""

    # fasterrcnn_mobilenet_v2_fpn is alloop's own: MobileNetV2 + FPN, for the offline ImageNet MobileNetV2 file.
    model: str = option(
        "fasterrcnn_mobilenet_v3_large_320_fpn", "detector architecture: " + ", ".join(MODELS), one_of(MODELS)
    )
    # A torchvision or alloop detector checkpoint file has its box predictor replaced for the classes.
    weights: str | None = option(
        None, "whole-detector start: none, a torchvision weights name (DEFAULT, COCO_V1; from the torch "
        "hub cache, never downloaded) or a local .pth file", _WEIGHTS,
    )
    # A local file: a classification state dict, plain or {"arch": "<torchvision arch>", "state_dict": ...}.
    backbone_weights: str | None = option(
        None, "backbone-only start (not with weights): none, a classification weights name "
        "(DEFAULT, IMAGENET1K_V1) or a local .pth file", _WEIGHTS,
    )
    trainable_backbone_layers: int | None = option(
        None, "backbone stages trained on pretrained weights (none: 3; 0 freezes it; from scratch all train)",
        Int(0, optional=True),
    )
    min_size: int | None = option(
        None, "shorter image side fed to the network (none: 320 for the mobile models, 800 otherwise)", _INT_OR_NONE
    )
    max_size: int | None = option(
        None, "cap on the longer image side (none: 640 for the mobile models, 1333 otherwise)", _INT_OR_NONE
    )
    epochs: int = option(20, "passes over the training images (fewer if early stopping or max_steps stop it)", Int(1))
    batch_size: int = option(4, "images per step, also for inference", Int(1))
    optimizer: str = option("sgd", "sgd (momentum, the torchvision recipe) or adamw", one_of(OPTIMIZERS))
    lr: float | None = option(
        None, "peak learning rate (none: 0.01 for sgd at batch 4, 1e-4 for adamw)",
        Float(0.0, open_low=True, optional=True),
    )
    momentum: float = option(0.9, "sgd momentum", Float(0.0, 1.0, open_high=True))
    weight_decay: float = option(1e-4, "weight decay (L2 for sgd, decoupled for adamw)", Float(0.0))
    lr_schedule: str = option(
        "cosine", "after warmup: cosine to 0, step (x0.1 at 2/3 and 8/9 of the run) or constant",
        one_of(LR_SCHEDULES),
    )
    warmup_steps: int = option(100, "linear warmup steps (at most a fifth of the run)", Int(0))
    grad_clip_norm: float | None = option(
        10.0, "clip the gradient norm to this (none: no clipping)", Float(0.0, open_low=True, optional=True)
    )
    augment: bool = option(True, "random horizontal flip and scale jitter while training", Bool())
    scale_jitter: tuple[float, float] = option(
        (0.8, 1.2), "min_size is scaled by a random factor in this range while training", Range()
    )
    score_threshold: float = option(
        0.05, "predict and validation keep boxes scoring above this (low: scoring needs uncertain boxes)",
        Float(0.0, 1.0, open_high=True),
    )
    nms_threshold: float = option(0.5, "IoU of the class-aware NMS on the final boxes", Float(0.0, 1.0, open_low=True))
    detections_per_img: int = option(100, "at most this many boxes per image", Int(1))
    box_features: bool = option(
        False, "record each predicted box's 256-number FPN descriptor for the ppal selection (about 512 bytes "
        "a box in the predictions file, ~15x its size; a step with --method ppal turns it on by itself)", Bool(),
    )
    early_stopping_patience: int | None = option(
        5, "stop after this many epochs without a better validation mAP@[.5:.95] (none: never)",
        Int(1, optional=True),
    )
    # On an H100 AMP gave the mobile models no speed-up at 320 px and cost 5-14 s in the first
    # epoch (cuDNN choosing fp16 kernels per image size); the resnet50 models trained ~15% faster.
    amp: bool = option(False, "mixed precision on CUDA (helps the resnet50 models, not the mobile ones)", Bool())
    # On CUDA decoding in the training process would starve the GPU; on CPU the model dominates.
    num_workers: int | None = option(
        None, "image-loading processes (none: 4 on CUDA, 0 on CPU)", Int(0, optional=True)
    )
    # torchvision's defaults are 2000/2000/512; these train ~3x faster on CPU.
    rpn_pre_nms_top_n_train: int = option(500, "RPN proposals kept before NMS while training", Int(1))
    rpn_post_nms_top_n_train: int = option(500, "RPN proposals kept after NMS while training", Int(1))
    box_batch_size_per_image: int = option(128, "proposals sampled per image for the box head loss", Int(1))
    rpn_pre_nms_top_n_test: int | None = option(
        None, "RPN proposals kept before NMS at inference (none: the model's, 150 for the mobile models)",
        _INT_OR_NONE,
    )
    rpn_post_nms_top_n_test: int | None = option(
        None, "RPN proposals kept after NMS at inference (none: the model's, 150 for the mobile models)",
        _INT_OR_NONE,
    )
    max_steps: int | None = option(None, "stop after this many optimizer steps in all (tests, demos)", _INT_OR_NONE)

    def __post_init__(self) -> None:
        validate(self)  # model first: the checks below depend on it
        spec = MODELS[self.model]
        if self.weights is not None and not is_weights_file(self.weights):
            if spec.detector_weights is None:
                raise ConfigError(
                    f"weights = '{self.weights}': {self.model} has no torchvision detector weights; "
                    "use backbone_weights, a local .pth file, or none"
                )
            weights_enum_member(spec.detector_weights, self.weights, option="weights", model=self.model)
        if self.backbone_weights is not None and not is_weights_file(self.backbone_weights):
            weights_enum_member(
                spec.backbone_weights, self.backbone_weights, option="backbone_weights", model=spec.backbone_arch
            )
        if self.weights is not None and self.backbone_weights is not None:
            raise ConfigError("set either weights (whole detector) or backbone_weights, not both")
        Int(0, spec.max_trainable_layers, optional=True)("trainable_backbone_layers", self.trainable_backbone_layers)
        if self.min_size is not None and self.max_size is not None and self.max_size < self.min_size:
            raise ConfigError(f"max_size ({self.max_size}) must be at least min_size ({self.min_size})")

    @property
    def effective_lr(self) -> float:
        """The peak learning rate: ``lr``, or the optimizer's default."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def frcnn_kwargs(self) -> dict[str, Any]:
        """FasterRCNN keyword arguments (None: the model's default)."""
        return {
            "min_size": self.min_size,
            "max_size": self.max_size,
            "rpn_pre_nms_top_n_train": self.rpn_pre_nms_top_n_train,
            "rpn_post_nms_top_n_train": self.rpn_post_nms_top_n_train,
            "rpn_pre_nms_top_n_test": self.rpn_pre_nms_top_n_test,
            "rpn_post_nms_top_n_test": self.rpn_post_nms_top_n_test,
            "box_batch_size_per_image": self.box_batch_size_per_image,
            "box_score_thresh": self.score_threshold,
            "box_nms_thresh": self.nms_threshold,
            "box_detections_per_img": self.detections_per_img,
        }


__all__ = ["DEFAULT_LR", "LR_SCHEDULES", "OPTIMIZERS", "RUNTIME_FIELDS", "TorchvisionConfig"]
