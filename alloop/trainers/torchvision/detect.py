"""Faster R-CNN inference that keeps each box's full class distribution and its RPN objectness.

torchvision's postprocess scores every (proposal, class) pair on its own and drops the rest of the
softmax; alloop's uncertainty scores need the whole distribution per box, and the proposals the
model saw but kept no box from (for objects it missed).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes


def rpn_proposals(rpn: nn.Module, images: Any, features: dict[str, torch.Tensor]) -> tuple[list, list]:
    """The RPN's proposals and their objectness probabilities (torchvision's forward drops them)."""
    feats = list(features.values())
    objectness, deltas = rpn.head(feats)
    anchors = rpn.anchor_generator(images, feats)
    num_anchors_per_level = [o[0].numel() for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
    return rpn.filter_proposals(proposals, objectness, images.image_sizes, num_anchors_per_level)


def argmax_boxes(
    probs: torch.Tensor,
    boxes: torch.Tensor,
    image_size: tuple[int, int],
    score_threshold: float,
    nms_threshold: float,
    detections_per_img: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """alloop's box rule for one image's P proposals: each proposal's class is its argmax foreground
    class and its box that class's regression (clipped); those scoring > ``score_threshold`` go
    through class-aware NMS and the top ``detections_per_img`` are kept.

    ``probs`` (P, C+1) softmax, ``boxes`` (P, C+1, 4) decoded. Returns (keep, boxes, scores, labels):
    ``keep`` indexes the P proposals; boxes (P, 4), scores (P,) and labels (P,, 1..C) are per proposal.
    The one rule for ``detect`` and the exported model (:mod:`alloop.model.deploy`).
    """
    scores, labels = probs[:, 1:].max(dim=1)
    labels = labels + 1
    # gather, not boxes[arange(P), labels]: an exported graph keeps a dynamic number of proposals
    boxes = boxes.gather(1, labels.view(-1, 1, 1).expand(-1, 1, 4)).squeeze(1)
    boxes = clip_boxes_to_image(boxes, image_size)
    keep = torch.where(scores > score_threshold)[0]
    keep = keep[remove_small_boxes(boxes[keep], min_size=1e-2)]
    keep = keep[batched_nms(boxes[keep], scores[keep], labels[keep], nms_threshold)][:detections_per_img]
    return keep, boxes, scores, labels


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
    ``proposal_foreground`` (1 − p(background) from the box head); ``features`` (N, 256): each kept
    box's proposal RoIAlign-pooled from the FPN and averaged over its grid (the ``ppal`` selection's
    box descriptor).
    """
    original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    image_list, _ = model.transform(images)
    features = model.backbone(image_list.tensors)
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    proposals, objectness = rpn_proposals(model.rpn, image_list, features)
    heads = model.roi_heads
    pooled = heads.box_roi_pool(features, proposals, image_list.image_sizes)  # (P, 256, 7, 7)
    box_features = heads.box_head(pooled)
    # Each box's descriptor for category-conditioned similarity (PPAL samples the FPN at the box; the
    # RoIAlign of its proposal over the same FPN, averaged over the 7x7 grid, is that feature here).
    descriptors = pooled.flatten(2).mean(-1) if pooled.dim() == 4 else pooled.flatten(1)
    class_logits, box_regression = heads.box_predictor(box_features)
    probs = F.softmax(class_logits.float(), -1)
    decoded = heads.box_coder.decode(box_regression.float(), proposals)  # (P, C+1, 4)

    counts = [len(p) for p in proposals]
    results = []
    for probs_i, boxes_i, obj_i, desc_i, size, original in zip(
        probs.split(counts), decoded.split(counts), objectness, descriptors.split(counts), image_list.image_sizes,
        original_sizes,
    ):
        keep, boxes, scores, labels = argmax_boxes(probs_i, boxes_i, (int(size[0]), int(size[1])),
                                                   score_threshold, nms_threshold, detections_per_img)
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
                "features": desc_i[keep].float(),
            }
        )
    return results


def hflip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """Mirror xyxy boxes in an image of ``width``: x0' = W - x1, x1' = W - x0."""
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


__all__ = ["PROPOSALS_RECORDED", "argmax_boxes", "detect", "hflip_boxes", "rpn_proposals"]
