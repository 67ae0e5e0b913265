"""The torchvision detector as one self-contained module to export: image in, boxes out.

:class:`DeployableDetector` wraps the trainer's own Faster R-CNN (rebuilt by
:func:`alloop.trainers.torchvision.load_detector`, never a second copy of the model code) so the
exported file holds every step between a decoded image and the final boxes: uint8 HWC RGB →
float CHW in [0, 1] → resize and normalisation (torchvision's ``GeneralizedRCNNTransform``) →
backbone, RPN, box head → post-processing → boxes in the input image's pixels.

The post-processing is alloop's rule, the same function (:func:`alloop.trainers.torchvision.detect.argmax_boxes`): one box per
proposal, of its most probable foreground class, then the score threshold, class-aware NMS and the
top ``detections_per_img``. torchvision's own ``RoIHeads.postprocess_detections`` instead keeps every
(proposal, class) pair; the deployed model must give the boxes ``alloop predict`` gives, so the box
head's post-processing is swapped for :class:`ArgmaxRoIHeads` (tests check both agree).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.models.detection.roi_heads import RoIHeads

from alloop.trainers.torchvision.detect import argmax_boxes


class ArgmaxRoIHeads(RoIHeads):
    """torchvision's RoIHeads whose inference keeps one box per proposal (its argmax class)."""

    def postprocess_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        boxes_per_image = [p.shape[0] for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals)  # (P, C+1, 4)
        pred_probs = F.softmax(class_logits, -1)
        all_boxes: list[Tensor] = []
        all_scores: list[Tensor] = []
        all_labels: list[Tensor] = []
        for boxes, probs, image_shape in zip(
            pred_boxes.split(boxes_per_image, 0), pred_probs.split(boxes_per_image, 0), image_shapes
        ):
            keep, boxes, scores, labels = argmax_boxes(probs, boxes, image_shape, self.score_thresh,
                                                       self.nms_thresh, self.detections_per_img)
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels


class DeployableDetector(nn.Module):
    """``forward(image)``: uint8 (H, W, 3) RGB → boxes (N, 4) float32 xyxy pixels, labels (N,)
    int64 index into the class list (0-based, no background), scores (N,) float32."""

    def __init__(self, detector: FasterRCNN) -> None:
        super().__init__()
        if type(detector.roi_heads) is not RoIHeads:
            raise TypeError(f"expected torchvision's RoIHeads, got {type(detector.roi_heads).__name__}")
        detector.roi_heads.__class__ = ArgmaxRoIHeads
        self.detector = detector.eval().requires_grad_(False)  # inference only: outputs need no graph

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = image.permute(2, 0, 1).to(torch.float32) / 255.0
        if torch.jit.is_scripting():
            _, detections = self.detector([x])  # scripted torchvision detectors return (losses, detections)
        else:
            detections = self.detector([x])
        det = detections[0]
        return det["boxes"], det["labels"] - 1, det["scores"]


__all__ = ["ArgmaxRoIHeads", "DeployableDetector"]
