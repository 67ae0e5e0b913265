#!/usr/bin/env python3
"""A stand-in for NVIDIA's TAO launcher and for ``docker run <TAO image>``, for alloop's tests.

Called as the launcher::

    fake_tao.py model yolo_v4 train -e SPEC -r RESULTS [-k KEY] [--gpus N] [--gpu_index I...]
    fake_tao.py model yolo_v4 inference -m MODEL -e SPEC -i IMAGES -r RESULTS [-k KEY] [-t T]
    fake_tao.py model yolo_v4 export -m MODEL -e SPEC [-o OUT] [-k KEY] [--target_opset N] [--gen_ds_config]

or as docker (``fake_tao.py run --rm --gpus all -v /x:/x ... IMAGE yolo_v4 train ...``).

It checks what the real tools would reject, strictly: the argument layout of TAO's entrypoint
(the task first after the network), the spec against the field names and types of TAO's yolo_v4
protos and the asserts of its spec_loader, that every path it is given is mounted at the same path
(``-v`` for docker, the ``LAUNCHER_MOUNTS`` file for the launcher, whose keys it checks as the
launcher's docker_handler.py does and which must also turn the tty off), and that no argument holds
a character the ``bash -c`` layers of the launcher and of TAO's entrypoint would reinterpret.

Then it behaves like TAO (tao_tensorflow1_backend, TAO 5), including where TAO is lenient or silent:

- training data is read as ``detection_data_sequence.py`` reads it: label lines with fewer than 9
  fields and classes missing from the lower-cased ``target_class_mapping`` are skipped silently;
- ``train`` prints Keras-like epoch lines, validates every epoch (label folders, metric_interval 1),
  writes ``RESULTS/weights/yolov4_<arch><n>_epoch_NNN.hdf5`` every checkpoint_interval epochs and the
  last, continuing from the epoch in a resume_model_path name, plus the per-epoch CSV log;
- the anchors are part of the "model": a fresh or pretrain run takes the spec's, a resumed run keeps
  the model's and only its label encoder uses the spec's; a model whose training targets were encoded
  with other anchors than it decodes with predicts shifted boxes (silently, as TAO would);
- ``inference`` writes ``RESULTS/labels/<stem>.txt`` per .jpg/.jpeg/.png image in TAO's 16-field
  format, one line per class that passes the threshold (TAO's NMS is per class: the same box comes
  out once per class), with boxes that may stick out of the image (TAO clips to its letterboxed
  canvas, not to the image). Its "detector" finds colours: the bounding box of strongly red pixels
  is class 0 (confidence 0.9, and 0.08 for class 1), green class 1 (0.6, and 0.15 for class 0),
  blue class 2 (0.3, and 0.06 for class 0); a box touching the image border sticks out 3 px.
- ``export`` (common/export/app.py + yolo_v4/export/yolov4_exporter.py) parses its arguments leniently
  (``parse_known_args``), appends ".onnx" to an output name without "onnx", refuses an existing output,
  loads a ``.hdf5`` as it is and decodes a ``.tlt`` with ``-k`` (a wrong key gives bytes h5py cannot
  open: "file signature not found"), and writes a small ONNX model shaped like TAO's: input ``Input``
  (N, 3, output_height, output_width), a ``BatchedNMSDynamic_TRT`` node with the spec's nms_config,
  outputs ``BatchedNMS`` … ``BatchedNMS_3``; with ``--gen_ds_config`` also ``labels.txt`` and
  ``nvinfer_config.txt`` beside it. :func:`encode_tlt` makes a ``.tlt`` of a fake model.
- failures: a failing task prints TAO's traceback and ``Execution status: FAIL``; through the
  launcher the process still exits 0 (docker_handler.py swallows the failed ``docker exec``), through
  ``docker run`` it exits 255. A failure of the launcher itself before the task (no tty, a command
  bash cannot parse) prints bash's or docker's error, no status line, and exits 0 too.

Environment: FAKE_TAO_FAIL=train|inference|export|all makes the task fail (out of memory);
FAKE_TAO_STOP_AT=N stops training after epoch N as TerminateOnNaN does (still "PASS");
FAKE_TAO_SKIP=1 exits 0 having written nothing; FAKE_TAO_RECORD=FILE appends one JSON line per call
(argv, mounts).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

# -- protobuf text format, checked against TAO's yolo_v4 protos ------------------------------------

F, I, S, B = "float", "int", "string", "bool"
SCHEMA: dict[str, dict[str, tuple]] = {
    # message: field -> (type or message name, repeated?)
    "Experiment": {"dataset_config": ("DatasetConfig", False), "augmentation_config": ("AugmentationConfig", False),
                   "training_config": ("TrainingConfig", False), "eval_config": ("EvalConfig", False),
                   "nms_config": ("NMSConfig", False), "yolov4_config": ("YOLOv4Config", False),
                   "class_weighting_config": ("Any", False), "random_seed": (I, False)},
    "YOLOv4Config": {"big_anchor_shape": (S, False), "mid_anchor_shape": (S, False), "small_anchor_shape": (S, False),
                     "matching_neutral_box_iou": (F, False), "box_matching_iou": (F, False), "arch": (S, False),
                     "nlayers": (I, False), "arch_conv_blocks": (I, False), "loss_loc_weight": (F, False),
                     "loss_neg_obj_weights": (F, False), "loss_class_weights": (F, False),
                     "freeze_blocks": (F, True), "freeze_bn": (B, False), "force_relu": (B, False),
                     "activation": (S, False), "focal_loss_alpha": (F, False), "focal_loss_gamma": (F, False),
                     "label_smoothing": (F, False), "big_grid_xy_extend": (F, False),
                     "mid_grid_xy_extend": (F, False), "small_grid_xy_extend": (F, False)},
    "TrainingConfig": {"batch_size_per_gpu": (I, False), "num_epochs": (I, False),
                       "learning_rate": ("LearningRateConfig", False), "regularizer": ("RegularizerConfig", False),
                       "optimizer": ("OptimizerConfig", False), "cost_scaling": ("Any", False),
                       "checkpoint_interval": (I, False), "enable_qat": (B, False),
                       "resume_model_path": (S, False), "pretrain_model_path": (S, False),
                       "pruned_model_path": (S, False), "max_queue_size": (I, False), "n_workers": (I, False),
                       "use_multiprocessing": (B, False), "early_stopping": ("Any", False),
                       "visualizer": ("Any", False), "model_ema": (B, False)},
    "LearningRateConfig": {"soft_start_annealing_schedule": ("Any", False),
                           "soft_start_cosine_annealing_schedule": ("SoftStartCosine", False)},
    "SoftStartCosine": {"max_learning_rate": (F, False), "soft_start": (F, False), "min_learning_rate": (F, False)},
    "RegularizerConfig": {"type": (("NO_REG", "L1", "L2"), False), "weight": (F, False)},
    "OptimizerConfig": {"adam": ("Adam", False), "sgd": ("Any", False), "rmsprop": ("Any", False)},
    "Adam": {"epsilon": (F, False), "beta1": (F, False), "beta2": (F, False), "amsgrad": (B, False)},
    "EvalConfig": {"average_precision_mode": (("SAMPLE", "INTEGRATE"), False), "batch_size": (I, False),
                   "matching_iou_threshold": (F, False), "visualize_pr_curve": (B, False)},
    "NMSConfig": {"confidence_threshold": (F, False), "clustering_iou_threshold": (F, False), "top_k": (I, False),
                  "infer_nms_score_bits": (I, False), "force_on_cpu": (B, False)},
    "AugmentationConfig": {"hue": (F, False), "saturation": (F, False), "exposure": (F, False),
                           "vertical_flip": (F, False), "horizontal_flip": (F, False), "jitter": (F, False),
                           "output_width": (I, False), "output_height": (I, False), "output_channel": (I, False),
                           "output_depth": (I, False), "randomize_input_shape_period": (I, False),
                           "mosaic_prob": (F, False), "mosaic_min_ratio": (F, False), "image_mean": ("MapF", True)},
    "MapF": {"key": (S, False), "value": (F, False)},
    "DatasetConfig": {"data_sources": ("DataSource", True), "target_class_mapping": ("MapS", True),
                      "validation_fold": (I, False), "validation_data_sources": ("DataSource", True),
                      "include_difficult_in_training": (B, False), "type": (S, False),
                      "image_extension": (S, False), "is_monochrome": (B, False)},
    "MapS": {"key": (S, False), "value": (S, False)},
    "DataSource": {"label_directory_path": (S, False), "tfrecords_path": (S, False),
                   "image_directory_path": (S, False), "root_path": (S, False), "source_weight": (F, False)},
}
ONEOFS = {"TrainingConfig": ("resume_model_path", "pretrain_model_path", "pruned_model_path"),
          "DataSource": ("label_directory_path", "tfrecords_path")}
TOKEN = re.compile(r'\s*(?:#[^\n]*|("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|([{}:])|([A-Za-z0-9_.+\-]+))')


class SpecError(Exception):
    pass


def tokenize(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip():
                raise SpecError(f"cannot parse spec near {text[pos:pos + 30]!r}")
            break
        pos = m.end()
        if m.group(1):
            out.append(("str", m.group(1)[1:-1]))
        elif m.group(2):
            out.append((m.group(2), m.group(2)))
        elif m.group(3):
            out.append(("word", m.group(3)))
    return out


def parse_message(tokens: list, pos: int, msg: str, closing: bool) -> tuple[dict, int]:
    fields: dict[str, list] = {}
    schema = SCHEMA.get(msg)
    while pos < len(tokens):
        kind, value = tokens[pos]
        if kind == "}":
            if not closing:
                raise SpecError("unbalanced '}'")
            return fields, pos + 1
        if kind != "word":
            raise SpecError(f"expected a field name in {msg}, got {value!r}")
        name = value
        pos += 1
        if schema is not None and name not in schema:
            raise SpecError(f"{msg} has no field named \"{name}\"")
        ftype, repeated = schema[name] if schema is not None else ("Any", True)
        if pos < len(tokens) and tokens[pos][0] == ":":
            pos += 1
        if pos < len(tokens) and tokens[pos][0] == "{":
            sub = ftype if isinstance(ftype, str) and ftype in SCHEMA else None
            if ftype in (F, I, S, B) or isinstance(ftype, tuple):
                raise SpecError(f"{msg}.{name} is a scalar, got a message")
            val, pos = parse_message(tokens, pos + 1, sub or "Any", True)
        else:
            if pos >= len(tokens):
                raise SpecError(f"{msg}.{name}: missing value")
            tkind, raw = tokens[pos]
            pos += 1
            val = scalar(msg, name, ftype, tkind, raw)
        if name in fields and not repeated:
            raise SpecError(f"{msg}.{name} given twice")
        fields.setdefault(name, []).append(val)
    if closing:
        raise SpecError(f"missing '}}' at the end of {msg}")
    return fields, pos


def scalar(msg: str, name: str, ftype, kind: str, raw: str):
    where = f"{msg}.{name}"
    if ftype == S:
        if kind != "str":
            raise SpecError(f"{where} must be a quoted string, got {raw}")
        return raw
    if kind == "str":
        raise SpecError(f"{where} must not be quoted, got \"{raw}\"")
    if ftype == F:
        try:
            return float(raw)
        except ValueError:
            raise SpecError(f"{where} must be a number, got {raw}") from None
    if ftype == I:
        if not re.fullmatch(r"[+-]?\d+", raw):
            raise SpecError(f"{where} must be an integer, got {raw}")
        return int(raw)
    if ftype == B:
        if raw not in ("true", "false", "True", "False", "t", "f", "1", "0"):
            raise SpecError(f"{where} must be true or false, got {raw}")
        return raw in ("true", "True", "t", "1")
    if isinstance(ftype, tuple):
        if raw not in ftype:
            raise SpecError(f"{where} must be one of {', '.join(ftype)}, got {raw}")
        return raw
    raise SpecError(f"{where} is a message, got a value")


def one(d: dict, name: str, default=None):
    return d.get(name, [default])[0]


def load_spec(path: str) -> dict:
    """Parse and check like TAO's yolo_v4 spec_loader.load_experiment_spec."""
    spec, _ = parse_message(tokenize(Path(path).read_text()), 0, "Experiment", False)
    for msg, names in ONEOFS.items():
        for sub in _all_messages(spec, msg):
            set_ = [n for n in names if n in sub]
            if len(set_) > 1:
                raise SpecError(f"{msg}: only one of {', '.join(set_)} may be set")
    ds = one(spec, "dataset_config", {})
    aug = one(spec, "augmentation_config", {})
    tr = one(spec, "training_config", {})
    ev = one(spec, "eval_config", {})
    nms = one(spec, "nms_config", {})
    y = one(spec, "yolov4_config", {})
    check = [
        (len(ds.get("target_class_mapping", [])) > 0, "Please specify target_class_mapping"),
        (len(ds.get("data_sources", [])) > 0, "Please specify training data sources"),
        (len(ds.get("validation_data_sources", [])) > 0,
         "Validation dataset specified by `validation_fold` requires the training label format to be TFRecords."),
        (one(aug, "output_channel", 0) in (1, 3), "output_channel must be either 1 or 3."),
        (0 <= one(aug, "hue", 0.0) <= 1, "hue must be within [0, 1]"),
        (one(aug, "saturation", 0.0) >= 1, "saturation must be at least 1.0"),
        (one(aug, "exposure", 0.0) >= 1, "exposure must be at least 1.0"),
        (0 <= one(aug, "horizontal_flip", 0.0) <= 1, "horizontal_flip must be within [0, 1]"),
        (0 <= one(aug, "jitter", 0.0) <= 1, "jitter must be within [0, 1]"),
        (one(aug, "output_width", 0) >= 32 and one(aug, "output_width", 0) % 32 == 0, "width must be multiple of 32"),
        (one(aug, "output_height", 0) >= 32 and one(aug, "output_height", 0) % 32 == 0, "height must be multiple of 32"),
        (0 <= one(aug, "mosaic_prob", 0.0) <= 1, "mosaic_prob must be within [0, 1]"),
        (0 < one(aug, "mosaic_min_ratio", 0.0) < 0.5, "mosaic_min_ratio must be within (0, 0.5)"),
        (one(tr, "batch_size_per_gpu", 0) > 0, "batch size must be positive"),
        (one(tr, "num_epochs", 0) > 0, "number of training batchs must be positive"),
        (one(tr, "checkpoint_interval", 0) > 0, "checkpoint interval must be positive"),
        (one(ev, "batch_size", 0) > 0, "batch size must be positive"),
        (0 < one(ev, "matching_iou_threshold", 0.0) <= 1, "matching_iou_threshold must be within (0, 1]"),
        (0 < one(nms, "clustering_iou_threshold", 0.0) <= 1, "clustering_iou_threshold must be within (0, 1]"),
        (0 < one(y, "box_matching_iou", 0.0) <= 1, "box_matching_iou must be within (0, 1]"),
        (0.25 < one(y, "matching_neutral_box_iou", 0.0) <= 1, "matching_neutral_box_iou must be within (0.25, 1]"),
        (0 <= one(y, "label_smoothing", 0.0) <= 0.3, "label_smoothing must be within [0, 0.3]"),
        (len(one(y, "big_anchor_shape", "")) > 0, "`big_anchor_shape` is not provided in spec file."),
        (len(one(y, "mid_anchor_shape", "")) > 0, "`mid_anchor_shape` is not provided in spec file."),
        (len(one(y, "small_anchor_shape", "")) > 0, "`small_anchor_shape` is not provided in spec file."),
        (one(y, "arch") is not None, "yolov4_config.arch is required"),
    ]
    for ok, message in check:
        if not ok:
            raise SpecError(message)
    for name in ("big_anchor_shape", "mid_anchor_shape", "small_anchor_shape"):
        anchors = one(y, name)
        if not re.fullmatch(r"\[\(\d+(\.\d+)?, \d+(\.\d+)?\)(, \(\d+(\.\d+)?, \d+(\.\d+)?\)){2}\]", anchors):
            raise SpecError(f"{name} must be a list of 3 (w, h) tuples, got {anchors!r}")
    return spec


def _all_messages(node, msg_name, current="Experiment"):
    if current == msg_name:
        yield node
    schema = SCHEMA.get(current, {})
    for name, values in node.items():
        sub = schema.get(name, (None,))[0]
        if isinstance(sub, str) and sub in SCHEMA:
            for v in values:
                yield from _all_messages(v, msg_name, sub)


def classes_of(spec: dict) -> list[str]:
    ds = one(spec, "dataset_config")
    return sorted({one(m, "value").lower() for m in ds["target_class_mapping"]})


# -- mounts and the shell layers ------------------------------------------------------------------

# docker_handler.py: the keys a mounts file may hold, and those of its DockerOptions.
MOUNTS_KEYS = ("Mounts", "Envs", "DockerOptions")
DOCKER_OPTIONS = ("user", "ports", "shm_size", "ulimits", "privileged", "network", "tty")
# Characters bash gives a meaning to (the launcher's `bash -c '<docker exec ...>'` with shell=True,
# then the entrypoint's `bash -c '... <args>'`): an argument holding one is split or changed.
BASH_SPECIAL = set(" \t\n'\"\\$`;&|<>()#~*?[]{}!^")


def launcher_mounts() -> list[str]:
    path = os.environ.get("LAUNCHER_MOUNTS", os.path.expanduser("~/.tao_mounts.json"))
    # docker_handler.py: asserts and KeyError/ValueError end the launcher with a traceback (exit 1).
    doc = json.loads(Path(path).read_text())
    assert "Mounts" in doc, "Invalid json file. Requires Mounts key."
    mounts = []
    for key, value in doc.items():
        if key == "Mounts":
            for m in value:
                assert "source" in m and "destination" in m, "Mounts are not formatted correctly."
                if not os.path.exists(os.path.realpath(os.path.expanduser(m["source"]))):
                    raise ValueError(f"Mount point source path doesn't exist. {m['source']}")
                if os.path.realpath(m["source"]) != os.path.realpath(m["destination"]):
                    raise SystemExit(f"fake TAO only supports same-path mounts, got {m}")
                mounts.append(os.path.realpath(m["source"]))
        elif key == "Envs":
            for env in value:
                assert "variable" in env and "value" in env, "Env variables aren't formatter correctly."
        elif key == "DockerOptions":
            for opt in value:
                assert opt in DOCKER_OPTIONS, (
                    f'The parameter "{opt}" mentioned in the config file isn\'t a valid option.'
                    f"\nPlease choose one of the following: {list(DOCKER_OPTIONS)}")
        else:
            raise KeyError(f"Invalid field {key} found in {path} file.")
    if doc.get("DockerOptions", {}).get("tty", True) and not sys.stdout.isatty():
        launcher_failed("the input device is not a TTY")  # `docker exec -it` with the output piped
    return mounts


def launcher_failed(message: str) -> None:
    """A failure before the task runs: the launcher prints it, swallows it and exits 0."""
    print(message, flush=True)
    sys.exit(0)


def check_shell(argv: list[str], mode: str) -> None:
    for arg in argv:
        bad = sorted(set(arg) & BASH_SPECIAL)
        if bad:
            message = f"bash: -c: line 1: syntax error near unexpected token `{bad[0]}' in {arg!r}"
            if mode == "launcher":
                launcher_failed(message)
            task_failed(message)


def require_mounted(path: str, mounts: list[str], what: str) -> None:
    real = os.path.realpath(path)
    if not any(real == m or real.startswith(m.rstrip("/") + "/") for m in mounts):
        task_failed(f"FileNotFoundError: {what} {path}: No such file or directory (not mounted in the container)")


# -- the tasks -------------------------------------------------------------------------------------

IMAGE_TRAIN = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
IMAGE_INFER = {".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG"}
MODE = "launcher"


def task_failed(message: str) -> None:
    """The task fails inside the container: TAO's entrypoint prints the status line and exits -1;
    the launcher swallows that exit code (exit 0), ``docker run`` passes it on (255)."""
    print(f"Traceback (most recent call last):\n  ...\n{message}", flush=True)
    print("Execution status: FAIL", flush=True)
    sys.exit(0 if MODE == "launcher" else 255)


def read_kitti_dir(images: str, labels: str, mapping: dict[str, str]) -> tuple[int, dict[str, int]]:
    """(image/label pairs, boxes per class) as detection_data_sequence.py reads them: lines with fewer
    than 9 fields and classes not in the lower-cased mapping are skipped without a word."""
    pairs, boxes = 0, {}
    label_files = set(os.listdir(labels))
    for name in sorted(os.listdir(images)):
        stem, ext = os.path.splitext(name)
        if ext not in IMAGE_TRAIN or stem + ".txt" not in label_files:
            continue
        pairs += 1
        for line in Path(labels, stem + ".txt").read_text().strip().split("\n"):
            fields = line.strip().split()
            if len(fields) < 9 or fields[0].lower() not in mapping:
                continue
            x0, y0, x1, y1 = map(float, fields[4:8])
            if x1 - x0 > 1e-3 and y1 - y0 > 1e-3:  # _filter_invalid_labels drops degenerate boxes
                target = mapping[fields[0].lower()]
                boxes[target] = boxes.get(target, 0) + 1
    return pairs, boxes


def anchors_of(spec: dict) -> list[str]:
    y = one(spec, "yolov4_config")
    return [one(y, n) for n in ("small_anchor_shape", "mid_anchor_shape", "big_anchor_shape")]


def train(args, spec: dict, mounts: list[str]) -> None:
    ds, tr, y = one(spec, "dataset_config"), one(spec, "training_config"), one(spec, "yolov4_config")
    mapping = {one(m, "key").lower(): one(m, "value").lower() for m in ds["target_class_mapping"]}
    n_train, boxes = 0, {}
    sources = [(src, True) for src in ds["data_sources"]] + [(src, False) for src in ds["validation_data_sources"]]
    for src, is_training in sources:
        images, labels = one(src, "image_directory_path"), one(src, "label_directory_path")
        require_mounted(images, mounts, "image_directory_path")
        require_mounted(labels, mounts, "label_directory_path")
        if not (os.path.isdir(images) and os.path.isdir(labels)):
            task_failed(f"FileNotFoundError: data source {images} / {labels} does not exist")
        n, found = read_kitti_dir(images, labels, mapping)
        if is_training:
            n_train += n
            for c, k in found.items():
                boxes[c] = boxes.get(c, 0) + k
    if n_train == 0:
        task_failed("ZeroDivisionError: no training images with label files")
    init_epoch = 0
    anchors = anchors_of(spec)  # the model is built from the spec...
    encoders = []
    if "resume_model_path" in tr:
        path = one(tr, "resume_model_path")
        require_mounted(path, mounts, "resume_model_path")
        if not os.path.isfile(path):
            task_failed(f"OSError: resume_model_path {path} does not exist")
        try:
            init_epoch = int(path.split(".")[-2].split("_")[-1])
        except ValueError:
            task_failed("ValueError: Cannot parse the checkpoint path. Did you rename it?")
        try:
            resumed = json.loads(Path(path).read_text())
            anchors, encoders = resumed["anchors"], resumed["encoder_anchors"]  # ...or loaded as it is
        except (ValueError, KeyError, TypeError):
            task_failed(f"OSError: Unable to open file (file signature not found): {path}")
    if "pretrain_model_path" in tr:
        path = one(tr, "pretrain_model_path")
        require_mounted(path, mounts, "pretrain_model_path")
        if not os.path.isfile(path):
            task_failed(f"OSError: pretrain_model_path {path} does not exist")
    encoders = [*encoders, anchors_of(spec)]  # targets are always encoded with the spec's anchors
    arch = one(y, "arch") + (str(one(y, "nlayers")) if one(y, "arch") in ("resnet", "darknet", "cspdarknet", "vgg") else "")
    results = Path(args.results_dir)
    (results / "weights").mkdir(parents=True, exist_ok=True)
    classes = classes_of(spec)
    (results / "model_output_labels.txt").write_text("\n".join(classes))
    num_epochs, interval = one(tr, "num_epochs"), one(tr, "checkpoint_interval")
    stop_at = int(os.environ.get("FAKE_TAO_STOP_AT", "0")) or None
    rows = []
    print(f"INFO: {n_train} training images, boxes per class {boxes}", flush=True)
    for epoch in range(init_epoch + 1, num_epochs + 1):
        print(f"Epoch {epoch}/{num_epochs}", flush=True)
        if stop_at is not None and epoch > stop_at:
            print("Batch 1: Invalid loss, terminating training", flush=True)  # keras TerminateOnNaN
            break
        sys.stdout.write(f"  1/2 [=====>.....] - loss: {10 / epoch:.4f}\r  2/2 [==========] - loss: {9 / epoch:.4f}\n")
        m_ap = round(0.3 + 0.2 * ((epoch * 3) % 5) / 4, 4)  # validated every epoch (label folders)
        rows.append((epoch, 9 / epoch, 1e-4, m_ap))
        if epoch % interval == 0 or epoch == num_epochs:
            name = results / "weights" / f"yolov4_{arch}_epoch_{epoch:03d}.hdf5"
            name.write_text(json.dumps({"classes": classes, "epoch": epoch, "arch": arch, "anchors": anchors,
                                        "encoder_anchors": encoders, "boxes_per_class": boxes}))
            print(f"\nEpoch {epoch:05d}: saving model to {name}", flush=True)
    with open(results / f"yolov4_training_log_{arch}.csv", "w") as fh:
        fh.write("epoch," + ",".join(f"AP_{c}" for c in classes) + ",loss,lr,mAP,validation_loss\n")
        for epoch, loss, lr, m_ap in rows:
            fh.write(f"{epoch}," + ",".join(str(m_ap) for _ in classes) + f",{loss},{lr},{m_ap},{loss}\n")


# (class, confidence) per colour: the predicted class first, then the weaker per-class duplicates.
COLOURS = {0: ((0, 0.9), (1, 0.08)), 1: ((1, 0.6), (0, 0.15)), 2: ((2, 0.3), (0, 0.06))}
EDGE_OVERHANG = 3.0


def detect(path: Path) -> list[tuple[list[tuple[int, float]], list[float]]]:
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    h, w = rgb.shape[:2]
    out = []
    for c in range(3):
        others = [o for o in range(3) if o != c]
        mask = (rgb[..., c] > 150) & (rgb[..., others[0]] < 100) & (rgb[..., others[1]] < 100)
        ys, xs = np.nonzero(mask)
        if len(xs):
            x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
            # TAO clips to its letterboxed canvas, not to the image: boxes at the border stick out.
            x0, y0 = (x0 - EDGE_OVERHANG if x0 == 0 else x0), (y0 - EDGE_OVERHANG if y0 == 0 else y0)
            x1, y1 = (x1 + EDGE_OVERHANG if x1 == w else x1), (y1 + EDGE_OVERHANG if y1 == h else y1)
            out.append((list(COLOURS[c]), [x0, y0, x1, y1]))
    return out


def inference(args, spec: dict, mounts: list[str]) -> None:
    for name in ("model_path", "image_dir", "results_dir"):
        require_mounted(getattr(args, name), mounts, name)
    if not os.path.isfile(args.model_path):
        task_failed(f"OSError: model {args.model_path} does not exist")
    model = json.loads(Path(args.model_path).read_text())
    classes = classes_of(spec)
    if model["classes"] != classes:
        task_failed(f"ValueError: model classes {model['classes']} do not match the spec's {classes}")
    if not 0 < args.threshold < 1:
        task_failed("AssertionError: Confidence threshold must be bigger than 0.0 and smaller than 1.0")
    # Targets encoded with other anchors than the model decodes with: every box comes out shifted.
    shift = 5.0 if any(e != model["anchors"] for e in model["encoder_anchors"]) else 0.0
    labels = Path(args.results_dir) / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    (Path(args.results_dir) / "images_annotated").mkdir(exist_ok=True)
    for name in sorted(os.listdir(args.image_dir)):
        stem, ext = os.path.splitext(name)
        if ext not in IMAGE_INFER:
            continue
        text = ""
        for per_class, box in detect(Path(args.image_dir, name)):
            box = [v + shift for v in box]
            for c, conf in per_class:  # per-class NMS: one line per class above the threshold
                if c < len(classes) and conf >= args.threshold:
                    # TAO's Inferencer: class + ' 0 0 0 ' + box + ' 0 0 0 0 0 0 0 ' + confidence
                    text += (classes[c] + " 0 0 0 " + " ".join(str(v) for v in box) + " 0 0 0 0 0 0 0 "
                             + str(conf) + "\n")
        (labels / f"{stem}.txt").write_text(text)
    print(f"Inference done on {args.image_dir}", flush=True)


TLT_MAGIC = b"FAKETLT1"


def _keystream(key: str, n: int) -> bytes:
    import hashlib

    out, block = b"", 0
    while len(out) < n:
        out += hashlib.sha256(f"{key}:{block}".encode()).digest()
        block += 1
    return out[:n]


def encode_tlt(model: bytes, key: str) -> bytes:
    """A fake model file as TAO < 5 stored it: encrypted with the key (``nvidia_tao_tf1/encoding``)."""
    return TLT_MAGIC + bytes(a ^ b for a, b in zip(model, _keystream(key, len(model))))


def load_model(path: str, key: str) -> dict:
    """yolo_v4/utils/model_io.py: .hdf5 as it is, .tlt decoded with the key, anything else refused."""
    ext = os.path.splitext(path)[1]
    if ext not in (".hdf5", ".tlt"):
        task_failed(f"NotImplementedError: {ext} file is not supported!")
    if not os.path.isfile(path):
        task_failed(f"OSError: Unable to open file (unable to open file: name = '{path}', errno = 2, "
                    "error message = 'No such file or directory', flags = 0, o_flags = 0)")
    data = Path(path).read_bytes()
    if ext == ".tlt":
        body = data[len(TLT_MAGIC):]
        data = bytes(a ^ b for a, b in zip(body, _keystream(key, len(body))))
    try:
        return json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        task_failed("OSError: Unable to open file (file signature not found)")


def export_parser() -> argparse.ArgumentParser:
    """common/export/app.py's build_command_line_parser (the options alloop may pass), plus the entrypoint's."""
    p = argparse.ArgumentParser(prog="yolo_v4 export")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("-k", "--key", default="")
    p.add_argument("-o", "--output_file", default=None)
    p.add_argument("-e", "--experiment_spec", default=None)
    p.add_argument("--target_opset", type=int, default=12)
    p.add_argument("--gen_ds_config", action="store_true")
    p.add_argument("--results_dir", default=None)
    p.add_argument("--static_batch_size", type=int, default=-1)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--gpu_index", type=int, nargs="+")
    p.add_argument("--log_file")
    return p


def export(args, mounts: list[str]) -> None:
    import onnx
    from onnx import TensorProto, helper

    output = args.output_file or os.path.splitext(args.model)[0] + ".onnx"
    if "onnx" not in output:
        output += ".onnx"
    for path, what in ((args.model, "model"), (output, "output_file")):
        require_mounted(path, mounts, what)
    if args.results_dir:
        require_mounted(args.results_dir, mounts, "results_dir")
        os.makedirs(args.results_dir, exist_ok=True)
        Path(args.results_dir, "status.json").write_text(json.dumps({"message": "Starting export."}) + "\n")
    if os.path.exists(output):
        task_failed(f"AssertionError: Default output file {output} already exists")
    if args.experiment_spec is None or not os.path.isfile(args.experiment_spec):
        task_failed(f"AssertionError: Experiment spec file not found at {args.experiment_spec}.")
    require_mounted(args.experiment_spec, mounts, "experiment_spec")
    try:
        spec = load_spec(args.experiment_spec)
    except SpecError as e:
        task_failed(f"AssertionError: spec {args.experiment_spec}: {e}")
    model = load_model(args.model, args.key)
    classes = classes_of(spec)
    if model.get("classes") != classes:
        task_failed(f"ValueError: model classes {model.get('classes')} do not match the spec's {classes}")
    aug, nms = one(spec, "augmentation_config"), one(spec, "nms_config")
    height, width, top_k = one(aug, "output_height"), one(aug, "output_width"), one(nms, "top_k", 200)
    batch = args.static_batch_size if args.static_batch_size > 0 else "N"
    node = helper.make_node(
        "BatchedNMSDynamic_TRT", ["pooled", "pooled"], ["BatchedNMS", "BatchedNMS_1", "BatchedNMS_2", "BatchedNMS_3"],
        name="BatchedNMS_N", shareLocation=1, backgroundLabelId=-1,
        scoreThreshold=float(one(nms, "confidence_threshold", 0.0)),
        iouThreshold=float(one(nms, "clustering_iou_threshold", 0.5)), topK=2 * top_k, keepTopK=top_k,
        numClasses=len(classes), clipBoxes=1, isNormalized=1, scoreBits=one(nms, "infer_nms_score_bits", 0))
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["Input"], ["pooled"], name="pool"), node], "yolov4",
        [helper.make_tensor_value_info("Input", TensorProto.FLOAT, [batch, 3, height, width])],
        [helper.make_tensor_value_info("BatchedNMS", TensorProto.INT32, [batch, 1]),
         helper.make_tensor_value_info("BatchedNMS_1", TensorProto.FLOAT, [batch, top_k, 4]),
         helper.make_tensor_value_info("BatchedNMS_2", TensorProto.FLOAT, [batch, top_k]),
         helper.make_tensor_value_info("BatchedNMS_3", TensorProto.FLOAT, [batch, top_k])])
    os.makedirs(os.path.dirname(os.path.realpath(output)), exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", args.target_opset)],
                                producer_name="keras2onnx"), output)
    print(f"INFO: Saving exported model to {output}", flush=True)
    if args.gen_ds_config:
        root = os.path.dirname(output)
        Path(root, "labels.txt").write_text("".join(f"{c}\n" for c in classes))
        Path(root, "nvinfer_config.txt").write_text(
            f"net-scale-factor=1.0\noffsets=103.939;116.779;123.68\ninfer-dims=3;{height};{width}\n"
            f"tlt-model-key={args.key}\nnetwork-type=0\nnum-detected-classes={len(classes)}\n"
            "model-color-format=1\nmaintain-aspect-ratio=1\noutput-tensor-meta=0\n")


def parse_docker(argv: list[str]) -> tuple[list[str], list[str]]:
    """`run [opts] IMAGE network task args...` -> (mounts, [network, task, args...])."""
    with_value = {"--gpus", "--user", "-u", "-v", "--volume", "-e", "--env", "--shm-size", "--name", "--ipc",
                  "--network", "-w", "--workdir", "--ulimit", "--entrypoint"}
    mounts, i = [], 1
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] in ("-v", "--volume"):
            parts = argv[i + 1].split(":")
            if len(parts) not in (2, 3) or parts[0] != parts[1]:
                print(f"docker: Error response from daemon: invalid volume specification: '{argv[i + 1]}'.")
                sys.exit(125)
            mounts.append(os.path.realpath(parts[0]))
        i += 2 if argv[i] in with_value else 1
    if i >= len(argv):
        print('"docker run" requires at least 1 argument.')
        sys.exit(125)
    return mounts, argv[i + 1:]


def main(argv: list[str]) -> None:
    global MODE
    record = os.environ.get("FAKE_TAO_RECORD")
    if argv and argv[0] == "run":
        mounts, rest = parse_docker(argv)
        MODE = "docker"
    else:
        if not argv or argv[0] != "model":
            print(f"tao: error: invalid choice: {argv[:1]}", flush=True)
            sys.exit(2)
        mounts, rest, MODE = launcher_mounts(), argv[1:], "launcher"
    if record:
        with open(record, "a") as fh:
            fh.write(json.dumps({"argv": argv, "mode": MODE, "mounts": mounts}) + "\n")
    check_shell(rest, MODE)
    if len(rest) < 2 or rest[0] != "yolo_v4":
        task_failed(f"unsupported network {rest[:1]}")
    task = rest[1]  # TAO's entrypoint takes the first argument after the network as the task
    if task not in ("train", "inference", "export"):
        task_failed(f"unsupported task {task!r} (the task must come right after yolo_v4)")
    if task == "export":
        run_export(rest[2:], mounts)
    p = argparse.ArgumentParser(prog=f"yolo_v4 {task}")
    p.add_argument("-e", "--experiment_spec", required=True)
    p.add_argument("-r", "--results_dir", required=True)
    p.add_argument("-k", "--key", default="")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--gpu_index", type=int, nargs="+")
    p.add_argument("--use_amp", action="store_true")
    p.add_argument("--log_file")
    if task == "inference":
        p.add_argument("-m", "--model_path", required=True)
        p.add_argument("-i", "--image_dir", required=True)
        p.add_argument("-t", "--threshold", type=float, default=0.3)
    args = p.parse_args(rest[2:])
    if args.gpus > 1 and task != "train":
        task_failed(f"AssertionError: Please use only 1 GPU for the task {task}.")
    require_mounted(args.experiment_spec, mounts, "experiment_spec")
    require_mounted(args.results_dir, mounts, "results_dir")
    try:
        spec = load_spec(args.experiment_spec)
    except SpecError as e:
        task_failed(f"AssertionError: spec {args.experiment_spec}: {e}")
    failing = os.environ.get("FAKE_TAO_FAIL", "")
    if failing in (task, "all"):
        print("2024-01-01 00:00:00 [TAO Toolkit] [INFO] Starting...", flush=True)
        task_failed("tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when allocating tensor")
    if os.environ.get("FAKE_TAO_SKIP"):
        print("Execution status: PASS", flush=True)  # "succeeds" without doing anything
        sys.exit(0)
    (train if task == "train" else inference)(args, spec, mounts)
    print("Execution status: PASS", flush=True)


def run_export(argv: list[str], mounts: list[str]) -> None:
    """``export`` parses with parse_known_args (unknown options are ignored, as TAO's app.py does)."""
    try:
        args, _unknown = export_parser().parse_known_args(argv)
    except SystemExit:  # argparse's usage error ends the task inside the container
        task_failed("SystemExit: 2 (yolo_v4 export: the following arguments are required: -m/--model)")
    if args.gpus > 1:
        task_failed("AssertionError: Please use only 1 GPU for the task export.")
    if os.environ.get("FAKE_TAO_FAIL", "") in ("export", "all"):
        print("2024-01-01 00:00:00 [TAO Toolkit] [INFO] Starting...", flush=True)
        task_failed("tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when allocating tensor")
    if os.environ.get("FAKE_TAO_SKIP"):
        print("Execution status: PASS", flush=True)
        sys.exit(0)
    export(args, mounts)
    print("Execution status: PASS", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
