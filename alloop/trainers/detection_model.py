"""Faster R-CNN architectures for the torchvision trainer, their weights, and full-softmax inference.

The models are assembled here from torchvision's parts exactly as torchvision's builders do
(so torchvision's COCO checkpoint files load into them), but weights are only ever read from
files already on disk: a weights enum is looked up in the torch hub cache and a missing file is
an error that says where to put it. Nothing here downloads.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
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
from torchvision.models.detection.rpn import RPNHead, concat_box_prediction_layers
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import FrozenBatchNorm2d, batched_nms, clip_boxes_to_image, remove_small_boxes
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from alloop.errors import ConfigError, TrainerError

# A string names a local file (rather than a weights enum member) when it has one of these
# endings or a path separator.
WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".ckpt", ".tar", ".bin")


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
# Weight sources
# ---------------------------------------------------------------------------------------------


def is_weights_file(value: str) -> bool:
    """True when ``value`` names a local file rather than a torchvision weights enum member."""
    return (
        "/" in value or "\\" in value or value.startswith("~") or value.lower().endswith(WEIGHT_FILE_SUFFIXES)
    )


def weights_enum_member(enum_cls: type, name: str, *, option: str) -> Any:
    """``DEFAULT`` / ``COCO_V1`` / ``EnumName.MEMBER`` → the enum member, or ConfigError listing them."""
    member = name
    if "." in name:
        prefix, _, member = name.partition(".")
        if prefix != enum_cls.__name__:
            raise ConfigError(f"{option} = '{name}': expected a member of {enum_cls.__name__}, not {prefix}")
    members = enum_cls.__members__
    key = member if member in members else member.upper()
    if key not in members:
        raise ConfigError(
            f"{option} = '{name}' is neither a weights name ({', '.join(members)}) nor a file path "
            f"(a path contains '/' or ends in {'/'.join(WEIGHT_FILE_SUFFIXES)})"
        )
    return members[key]


def hub_cache_path(weights: Any) -> Path:
    """Where torch hub keeps the file of a torchvision weights enum member."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def read_enum_state_dict(weights: Any, *, option: str) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision weights enum member, from the torch hub cache only."""
    path = hub_cache_path(weights)
    if not path.is_file():
        raise TrainerError(
            f"{option} {type(weights).__name__}.{weights.name} is not in the torch hub cache: "
            f"expected {path}. "
            f"alloop never downloads; set {option} to none (--{option.replace('_', '-')} none), "
            f"pass a local .pth file, or copy {path.name} (from {weights.url}) into {path.parent}"
        )
    state, _ = read_state_dict(path, what=option)
    return state


def read_state_dict(path: Path, *, what: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """A state dict from a file: plain, ``{"model": ...}`` (alloop checkpoints), or
    ``{"arch": ..., "state_dict": ...}`` (alloop backbone files). Returns it and the arch, if named."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TrainerError(f"{what} file {path} does not exist; fix the path or set {what} to none")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types
        raise TrainerError(f"{what} file {path} is not a readable PyTorch weights file: {exc}") from exc
    arch = None
    if isinstance(obj, Mapping):
        arch = obj.get("arch") if isinstance(obj.get("arch"), str) else None
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TrainerError(
            f"{what} file {path} holds no state dict "
            "(expected a dict of tensors, or one under 'model' or 'state_dict')"
        )
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    return state, arch


def _is_bn_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def _load_backbone_state(
    classifier: nn.Module, state: dict[str, torch.Tensor], *, arch: str, file_arch: str | None, source: str
) -> None:
    """Load classification weights into the classifier whose features become the backbone."""
    if file_arch is not None and file_arch != arch:
        raise TrainerError(
            f"backbone_weights {source} are for '{file_arch}', but this model's backbone is '{arch}'"
        )
    head = ("classifier.", "fc.")  # the classification head is dropped by the detector anyway
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    try:
        missing, unexpected = classifier.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise TrainerError(f"backbone_weights {source} do not fit {arch}: {_first_line(exc)}") from exc
    missing = [k for k in missing if not k.startswith(head) and not _is_bn_counter(k)]
    unexpected = [k for k in unexpected if not _is_bn_counter(k)]
    if missing or unexpected:
        raise TrainerError(
            f"backbone_weights {source} do not fit {arch}: "
            f"missing {_few(missing)}, unexpected {_few(unexpected)}"
        )


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
        raise TrainerError(f"weights {source} do not fit this model: {_first_line(exc)}") from exc
    missing = [
        k for k in missing if not _is_bn_counter(k) and not (other_classes and k.startswith(predictor))
    ]
    unexpected = [k for k in unexpected if not _is_bn_counter(k)]
    if missing or unexpected:
        raise TrainerError(
            f"weights {source} do not fit this model (another architecture?): "
            f"missing {_few(missing)}, unexpected {_few(unexpected)}"
        )
    return other_classes


def _few(keys: list[str]) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:2])[:400]


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
            member = weights_enum_member(spec.backbone_weights, backbone_weights, option="backbone_weights")
            state = read_enum_state_dict(member, option="backbone_weights")
            classifier_state = (state, None, f"{type(member).__name__}.{member.name}")

    # Frozen batch norm on top of pretrained weights (torchvision's choice for small batches);
    # resnet50_fpn_v2 trains its batch norm, as in torchvision.
    frozen_bn = pretrained and model_name != "fasterrcnn_resnet50_fpn_v2"
    norm_layer = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    classifier = getattr(models, spec.backbone_arch)(weights=None, norm_layer=norm_layer)
    if classifier_state is not None:
        state, file_arch, source = classifier_state
        _load_backbone_state(classifier, state, arch=spec.backbone_arch, file_arch=file_arch, source=source)

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
        member = weights_enum_member(spec.detector_weights, weights, option="weights")
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
# Inference with the full class distribution
# ---------------------------------------------------------------------------------------------


def rpn_proposals(rpn: nn.Module, images: Any, features: dict[str, torch.Tensor]) -> tuple[list, list]:
    """The RPN's proposals and their objectness probabilities (torchvision's forward drops them)."""
    feats = list(features.values())
    objectness, deltas = rpn.head(feats)
    anchors = rpn.anchor_generator(images, feats)
    num_anchors_per_level = [o[0].numel() for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
    return rpn.filter_proposals(proposals, objectness, images.image_sizes, num_anchors_per_level)


# Candidate regions recorded per image for the scores that must see missed objects: the RPN's top
# proposals by objectness (after its NMS), whether or not a box was kept from them.
PROPOSALS_RECORDED = 64


def detect(
    model: FasterRCNN,
    images: list[torch.Tensor],
    *,
    score_threshold: float,
    nms_threshold: float,
    detections_per_img: int,
) -> list[dict[str, torch.Tensor]]:
    """Run ``model`` (eval mode) on float CHW images in [0, 1]; keep each box's full softmax.

    Per proposal: the class is the argmax over foreground classes and the box is that class's
    regression; boxes with score > ``score_threshold`` go through class-aware NMS and the top
    ``detections_per_img`` are kept. torchvision's own postprocess instead treats every
    (proposal, class) pair as a detection and keeps one score each. Returns per image: ``boxes``
    (original pixels), ``labels`` (1..C), ``scores``, ``probs`` (C+1, column 0 background),
    ``objectness`` (sigmoid of the RPN logit of the proposal), and for the top
    :data:`PROPOSALS_RECORDED` proposals by objectness, kept or not, ``proposal_objectness`` and
    ``proposal_foreground`` (1 − p(background) from the box head).
    """
    original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    image_list, _ = model.transform(images)
    features = model.backbone(image_list.tensors)
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    proposals, objectness = rpn_proposals(model.rpn, image_list, features)
    heads = model.roi_heads
    box_features = heads.box_head(heads.box_roi_pool(features, proposals, image_list.image_sizes))
    class_logits, box_regression = heads.box_predictor(box_features)
    probs = F.softmax(class_logits.float(), -1)
    decoded = heads.box_coder.decode(box_regression.float(), proposals)  # (P, C+1, 4)

    counts = [len(p) for p in proposals]
    results = []
    for probs_i, boxes_i, obj_i, size, original in zip(
        probs.split(counts), decoded.split(counts), objectness, image_list.image_sizes, original_sizes
    ):
        scores, labels = probs_i[:, 1:].max(dim=1)
        labels = labels + 1
        boxes = boxes_i[torch.arange(len(labels), device=labels.device), labels]
        boxes = clip_boxes_to_image(boxes, size)
        keep = torch.where(scores > score_threshold)[0]
        keep = keep[remove_small_boxes(boxes[keep], min_size=1e-2)]
        keep = keep[batched_nms(boxes[keep], scores[keep], labels[keep], nms_threshold)][:detections_per_img]
        top = torch.argsort(obj_i, descending=True, stable=True)[:PROPOSALS_RECORDED]
        results.append(
            {
                "boxes": resize_boxes(boxes[keep], list(size), list(original)),
                "labels": labels[keep],
                "scores": scores[keep],
                "probs": probs_i[keep],
                "objectness": obj_i[keep].float(),
                "proposal_objectness": obj_i[top].float(),
                "proposal_foreground": (1.0 - probs_i[top, 0]).float(),
            }
        )
    return results


def hflip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """Mirror xyxy boxes in an image of ``width``: x0' = W - x1, x1' = W - x0."""
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


__all__ = [
    "MODELS",
    "PROPOSALS_RECORDED",
    "ModelSpec",
    "build_detector",
    "detect",
    "hflip_boxes",
    "hub_cache_path",
    "is_weights_file",
    "load_detector_state",
    "mobilenet_v2_fpn_backbone",
    "read_state_dict",
    "rpn_proposals",
    "weights_enum_member",
]
