"""Faster R-CNN architectures for the torchvision trainer, and loading weights into them.

The models are assembled here from torchvision's parts exactly as torchvision's builders do
(so torchvision's COCO checkpoint files load into them), but weights are only ever read from
files already on disk (:mod:`alloop.weights`): a weights enum is looked up in the torch hub cache
and a missing file is an error that says where to put it. Nothing here downloads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models
from torchvision.models import detection as tv_detection
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    _mobilenet_extractor,
    _resnet_fpn_extractor,
)
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNConvFCHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from alloop.errors import ConfigError, TrainerError
from alloop.weights import (
    few,
    first_line,
    is_weights_file,
    load_classifier_state,
    read_enum_state_dict,
    read_state_dict,
    weights_enum_member,
)


@dataclass(frozen=True)
class ModelSpec:
    """What differs between the supported detectors."""

    backbone_arch: str  # torchvision classification model whose weights fit the backbone
    backbone_weights: type  # its torchvision weights enum
    detector_weights: type | None  # torchvision's detection weights enum; None: local files only
    max_trainable_layers: int  # trainable_backbone_layers ranges over 0..this
    defaults: Mapping[str, Any] = field(default_factory=dict)  # FasterRCNN keyword defaults


_MOBILE_DEFAULTS = {
    "min_size": 320,
    "max_size": 640,
    "rpn_pre_nms_top_n_test": 150,
    "rpn_post_nms_top_n_test": 150,
    "rpn_score_thresh": 0.05,
}

MODELS: dict[str, ModelSpec] = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": ModelSpec(
        "mobilenet_v3_large",
        models.MobileNet_V3_Large_Weights,
        tv_detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
        6,
        _MOBILE_DEFAULTS,
    ),
    "fasterrcnn_mobilenet_v3_large_fpn": ModelSpec(
        "mobilenet_v3_large",
        models.MobileNet_V3_Large_Weights,
        tv_detection.FasterRCNN_MobileNet_V3_Large_FPN_Weights,
        6,
        {"min_size": 800, "max_size": 1333, "rpn_pre_nms_top_n_test": 1000,
         "rpn_post_nms_top_n_test": 1000, "rpn_score_thresh": 0.05},
    ),
    "fasterrcnn_resnet50_fpn": ModelSpec(
        "resnet50",
        models.ResNet50_Weights,
        tv_detection.FasterRCNN_ResNet50_FPN_Weights,
        5,
        {"min_size": 800, "max_size": 1333, "rpn_pre_nms_top_n_test": 1000,
         "rpn_post_nms_top_n_test": 1000, "rpn_score_thresh": 0.0},
    ),
    "fasterrcnn_resnet50_fpn_v2": ModelSpec(
        "resnet50",
        models.ResNet50_Weights,
        tv_detection.FasterRCNN_ResNet50_FPN_V2_Weights,
        5,
        {"min_size": 800, "max_size": 1333, "rpn_pre_nms_top_n_test": 1000,
         "rpn_post_nms_top_n_test": 1000, "rpn_score_thresh": 0.0},
    ),
    # alloop's own: torchvision's MobileNetV2 features + FPN, so the ImageNet MobileNetV2 file
    # (which ships offline) can seed a detector. Settings as the mobile 320 model.
    "fasterrcnn_mobilenet_v2_fpn": ModelSpec(
        "mobilenet_v2", models.MobileNet_V2_Weights, None, 6, _MOBILE_DEFAULTS
    ),
}


# ---------------------------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------------------------


def build_detector(
    model_name: str,
    num_classes: int,
    *,
    weights: str | None,
    backbone_weights: str | None,
    trainable_backbone_layers: int | None,
    load_weights: bool,
    **frcnn_kwargs: Any,
) -> FasterRCNN:
    """A Faster R-CNN with ``num_classes`` outputs (background included).

    ``load_weights=False`` builds the same architecture (frozen batch norm when weights were asked
    for) without reading any weights file: for rebuilding from an alloop checkpoint.
    """
    spec = MODELS[model_name]
    pretrained = weights is not None or backbone_weights is not None
    # torchvision's rule: from scratch every stage trains; on pretrained weights 3 by default.
    if not pretrained:
        trainable = spec.max_trainable_layers
    else:
        trainable = 3 if trainable_backbone_layers is None else trainable_backbone_layers
    kwargs = {**spec.defaults, **{k: v for k, v in frcnn_kwargs.items() if v is not None}}

    classifier_state: tuple[dict[str, torch.Tensor], str | None, str] | None = None
    if load_weights and backbone_weights is not None:
        if is_weights_file(backbone_weights):
            state, file_arch = read_state_dict(Path(backbone_weights), what="backbone_weights")
            classifier_state = (state, file_arch, backbone_weights)
        else:
            member = weights_enum_member(
                spec.backbone_weights, backbone_weights, option="backbone_weights", model=spec.backbone_arch
            )
            state = read_enum_state_dict(member, option="backbone_weights")
            classifier_state = (state, None, f"{type(member).__name__}.{member.name}")

    # Frozen batch norm on top of pretrained weights (torchvision's choice for small batches);
    # resnet50_fpn_v2 trains its batch norm, as in torchvision.
    frozen_bn = pretrained and model_name != "fasterrcnn_resnet50_fpn_v2"
    norm_layer = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    classifier = getattr(models, spec.backbone_arch)(weights=None, norm_layer=norm_layer)
    if classifier_state is not None:
        state, file_arch, source = classifier_state
        load_classifier_state(
            classifier, state, arch=spec.backbone_arch, source=source, option="backbone_weights", file_arch=file_arch
        )

    if model_name in ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn"):
        backbone = _mobilenet_extractor(classifier, True, trainable)
        anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
        model = FasterRCNN(backbone, num_classes, rpn_anchor_generator=anchors, **kwargs)
    elif model_name == "fasterrcnn_resnet50_fpn":
        backbone = _resnet_fpn_extractor(classifier, trainable)
        model = FasterRCNN(backbone, num_classes, **kwargs)
    elif model_name == "fasterrcnn_resnet50_fpn_v2":
        backbone = _resnet_fpn_extractor(classifier, trainable, norm_layer=nn.BatchNorm2d)
        anchors = tv_detection.faster_rcnn._default_anchorgen()
        rpn_head = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], conv_depth=2)
        box_head = FastRCNNConvFCHead(
            (backbone.out_channels, 7, 7), [256, 256, 256, 256], [1024], norm_layer=nn.BatchNorm2d
        )
        model = FasterRCNN(
            backbone, num_classes, rpn_anchor_generator=anchors, rpn_head=rpn_head, box_head=box_head,
            **kwargs,
        )
    elif model_name == "fasterrcnn_mobilenet_v2_fpn":
        backbone = mobilenet_v2_fpn_backbone(classifier, trainable)
        # Stride-16 and stride-32 maps (+ pooled): anchors start at 16 px for small objects.
        anchors = AnchorGenerator(((16, 32, 64, 128, 256),) * 3, ((0.5, 1.0, 2.0),) * 3)
        model = FasterRCNN(backbone, num_classes, rpn_anchor_generator=anchors, **kwargs)
    else:  # MODELS and this function must list the same names
        raise AssertionError(model_name)

    if weights is not None and is_weights_file(weights):
        if load_weights:
            state, _ = read_state_dict(Path(weights), what="weights")
            load_detector_state(model, state, source=weights)
    elif weights is not None:
        if spec.detector_weights is None:
            raise ConfigError(f"model {model_name} has no torchvision weights; use a local .pth file or none")
        member = weights_enum_member(spec.detector_weights, weights, option="weights", model=model_name)
        if load_weights:
            state = read_enum_state_dict(member, option="weights")
            load_detector_state(model, state, source=f"{type(member).__name__}.{member.name}")
        if member.name == "COCO_V1" and model_name == "fasterrcnn_resnet50_fpn":
            # As torchvision does for these legacy weights; also when rebuilding from a checkpoint,
            # since eps is not part of the state dict.
            overwrite_eps(model, 0.0)
    return model


def mobilenet_v2_fpn_backbone(classifier: nn.Module, trainable_layers: int) -> BackboneWithFPN:
    """torchvision's MobileNetV2 features with an FPN over the ends of the stride-16 and -32 stages.

    Freezing follows torchvision's ``_mobilenet_extractor``: stages are cut at the strided blocks
    (6 of them for MobileNetV2) and the last ``trainable_layers`` stay trainable.
    """
    features = classifier.features
    strided = [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
    stage_indices = [0, *strided, len(features) - 1]
    num_stages = len(stage_indices)
    if not 0 <= trainable_layers <= num_stages:
        raise ConfigError(f"trainable_backbone_layers must be in 0..{num_stages}, got {trainable_layers}")
    freeze_before = len(features) if trainable_layers == 0 else stage_indices[num_stages - trainable_layers]
    for block in features[:freeze_before]:
        for p in block.parameters():
            p.requires_grad_(False)
    # features[13]: last block at stride 16 (96 channels); features[18]: 1x1 conv to 1280 at stride 32.
    return_layers = {"13": "0", str(len(features) - 1): "1"}
    in_channels = [features[13].out_channels, features[-1].out_channels]
    return BackboneWithFPN(features, return_layers, in_channels, 256, extra_blocks=LastLevelMaxPool())


# ---------------------------------------------------------------------------------------------
# Detector weights
# ---------------------------------------------------------------------------------------------


def load_detector_state(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: str, same_classes: bool = True
) -> bool:
    """Load detector weights; the box predictor is skipped when it is for other classes (another
    shape, or ``same_classes`` False). Returns True if it was skipped (left newly initialised)."""
    own = model.state_dict()
    predictor = "roi_heads.box_predictor."
    other_classes = not same_classes or any(
        k.startswith(predictor) and (k not in own or own[k].shape != v.shape) for k, v in state.items()
    )
    if other_classes:
        state = {k: v for k, v in state.items() if not k.startswith(predictor)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise TrainerError(f"weights {source} do not fit this model: {first_line(exc)}") from exc
    missing = [
        k for k in missing if not k.endswith("num_batches_tracked") and not (other_classes and k.startswith(predictor))
    ]
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise TrainerError(
            f"weights {source} do not fit this model (another architecture?): "
            f"missing {few(missing)}, unexpected {few(unexpected)}"
        )
    return other_classes


__all__ = ["MODELS", "ModelSpec", "build_detector", "load_detector_state", "mobilenet_v2_fpn_backbone"]
