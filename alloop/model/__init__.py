"""The detector a project paid for: choose an iteration's model, run it on new images, export it.

- :mod:`.registry`: the models the iterations trained, their checkpoints and held-out mAP; the best.
- :mod:`.predict`: ``alloop predict`` — the chosen model on new images, written as COCO, Label
  Studio or YOLO, optionally drawn.
- :mod:`.deploy` and :mod:`.export`: ``alloop export-model`` — the whole detector (pre- and
  post-processing included) as ONNX or TorchScript, with its metadata beside it.

The model card of each iteration lives with the report (:mod:`alloop.report.model_card`).
"""

from __future__ import annotations

from alloop.model.export import EXPORT_FORMATS, ExportResult, export_model
from alloop.model.predict import (
    PREDICT_FORMATS,
    Predictions,
    PredictResult,
    collect_images,
    predict,
    run_detector,
)
from alloop.model.registry import (
    ChosenModel,
    ModelInfo,
    best_iteration,
    choose_model,
    list_models,
    project_models,
)

__all__ = [
    "EXPORT_FORMATS",
    "PREDICT_FORMATS",
    "ChosenModel",
    "ExportResult",
    "ModelInfo",
    "PredictResult",
    "Predictions",
    "best_iteration",
    "choose_model",
    "collect_images",
    "export_model",
    "list_models",
    "predict",
    "project_models",
    "run_detector",
]
