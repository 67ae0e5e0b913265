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
  ``num_epochs``, so alloop sets ``num_epochs`` = that epoch + ``epochs``; the resumed model keeps
  its own anchors, so its spec gets them too (:mod:`.start`).
- The launcher exits 0 when the task fails (TAO's entrypoint prints ``Execution status: FAIL``),
  and a run ended early by a NaN loss or an interrupt says ``PASS``: alloop checks the status line,
  the files and the last epoch (:mod:`.runner`, :mod:`.results`).
- Every path passes through two ``bash -c`` layers: only plain paths are allowed (:mod:`.paths`).
- TAO silently skips label lines whose class its lower-cased mapping lacks: alloop checks the
  export as TAO will read it before training (:mod:`.labels`).

TAO's NMS is per class, so one box comes out once per class with s_k = σ(objectness)·σ(class k);
alloop merges those lines into one detection whose ``probs`` hold each s_k and background
1 − Σ s_k (:func:`.results.detections_from_boxes`). See docs/tao.md for what the scores see.

Modules: :mod:`.config` (options), :mod:`.anchors`, :mod:`.start` (resume or not, which anchors),
:mod:`.spec` (experiment spec), :mod:`.labels` (the export as TAO reads it), :mod:`.paths` (what
TAO's shell layers can pass), :mod:`.command` (launcher/docker command lines, mounts files),
:mod:`.runner` (running and streaming), :mod:`.results` (checkpoints, training log, inference
boxes), :mod:`.staging` (images), :mod:`.record` (alloop's sidecars), :mod:`.trainer`.
"""

from alloop.trainers.tao.anchors import DEFAULT_ANCHORS, anchor_shapes, kmeans_anchors
from alloop.trainers.tao.command import check_mounts_file, tao_command, write_mounts_file
from alloop.trainers.tao.config import NETWORKS, TaoConfig
from alloop.trainers.tao.results import detections_from_boxes, find_checkpoints, read_training_log
from alloop.trainers.tao.runner import run_tao
from alloop.trainers.tao.spec import render_spec, spec_context
from alloop.trainers.tao.trainer import TaoTrainer

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
