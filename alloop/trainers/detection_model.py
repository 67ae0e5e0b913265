"""Where the torchvision trainer's detector code used to live; kept so existing imports work.

The code is in :mod:`alloop.trainers.torchvision.models` (architectures, detector weights),
:mod:`alloop.trainers.torchvision.detect` (full-softmax inference) and :mod:`alloop.weights`
(weights names and files).
"""

from __future__ import annotations

from alloop.trainers.torchvision.detect import PROPOSALS_RECORDED, detect, hflip_boxes, rpn_proposals
from alloop.trainers.torchvision.models import (
    MODELS,
    ModelSpec,
    build_detector,
    load_detector_state,
    mobilenet_v2_fpn_backbone,
)
from alloop.weights import hub_cache_path, is_weights_file, read_state_dict, weights_enum_member

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
