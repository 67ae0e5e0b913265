"""TAO's own export of a trained model to ONNX: ``<network> export``, run like train and inference.

What the container does, read in ``NVIDIA/tao_tensorflow1_backend`` (TAO 5, commit 2ec95cb):
``nvidia_tao_tf1/cv/yolo_v4/scripts/export.py`` calls ``launch_export(YOLOv4Exporter, None, "onnx")``
of ``nvidia_tao_tf1/cv/common/export/app.py``, whose parser takes ``-m MODEL`` (required), ``-k KEY``
(default ""), ``-e SPEC``, ``-o OUTPUT`` (".onnx" is appended to a name without "onnx"; an existing
output is an AssertionError), ``--target_opset`` (default 12), ``--gen_ds_config`` (``labels.txt``
and ``nvinfer_config.txt`` beside the output) and ``--results_dir`` (its status.json); the
entrypoint adds ``--gpu_index``. ``yolo_v4/utils/model_io.py`` loads a ``.hdf5`` as it is and
decodes a ``.tlt`` with the key. ``yolo_v4/export/yolov4_exporter.py`` builds the input ``Input``
(N, 3, output_height, output_width) from ``augmentation_config`` and ends the graph in TensorRT's
``BatchedNMSDynamic_TRT`` plugin (outputs ``BatchedNMS`` … ``BatchedNMS_3``) with the spec's
``nms_config``; the classes are the sorted lower-cased ``target_class_mapping`` values. The image
pre-processing stays outside the model (``common/inferencer/inferencer.py``: resize keeping the
aspect ratio, paste at the top-left of a black canvas, RGB→BGR, subtract the mean, CHW).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alloop.errors import TrainerError

EXPORT_OPSET = 12  # TAO's --target_opset default (common/export/app.py)
BGR_MEAN = (103.939, 116.779, 123.68)  # yolov4_exporter.py's default when the spec sets no image_mean
NMS_PLUGIN = "BatchedNMSDynamic_TRT"
OUTPUTS = {
    "BatchedNMS": "int32 (N, 1): number of detections kept per image",
    "BatchedNMS_1": "float32 (N, keep_top_k, 4): x0, y0, x1, y1 normalised to the network input (0..1)",
    "BatchedNMS_2": "float32 (N, keep_top_k): score",
    "BatchedNMS_3": "float32 (N, keep_top_k): class index into classes",
}


def export_dir(checkpoint: Path) -> Path:
    """``<run>/export`` for a model in TAO's ``<run>/results/weights/``, else beside the model."""
    if checkpoint.parent.name == "weights" and checkpoint.parent.parent.name == "results":
        return checkpoint.parent.parent.parent / "export"
    return checkpoint.parent / "alloop_export"


def export_args(checkpoint: Path, spec_file: Path, onnx_file: Path, results: Path, *, key: str, opset: int,
                gpu_index: Sequence[int] | None) -> list[str]:
    """The arguments of ``<network> export`` (TAO 5, common/export/app.py)."""
    args = ["-m", str(checkpoint), "-e", str(spec_file), "-o", str(onnx_file), "--target_opset", str(opset),
            "--gen_ds_config", "--results_dir", str(results)]
    if key:
        args += ["-k", key]
    if gpu_index is not None:
        args += ["--gpu_index", str(gpu_index[0])]
    return args


def read_exported(path: Path, log_file: Path) -> dict[str, Any]:
    """The ONNX file TAO wrote, as its graph declares it: opset, inputs, outputs, the NMS settings.

    Not ``onnx.checker``: TAO's graph ends in a TensorRT plugin op the checker does not know.
    """
    import onnx

    if not path.is_file() or path.stat().st_size == 0:
        raise TrainerError(f"TAO export wrote no model at {path}; the launcher exits 0 also when it fails "
                           f"before the task; its error is in {log_file}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends: the file is not ONNX
        raise TrainerError(f"TAO export wrote {path}, which is not an ONNX model ({exc}); see {log_file}") from exc
    graph = model.graph

    def shape(value: Any) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    initialisers = {t.name for t in graph.initializer}
    inputs = {v.name: shape(v) for v in graph.input if v.name not in initialisers}
    if not inputs or not graph.output:
        raise TrainerError(f"TAO export wrote {path} without inputs or outputs; see {log_file}")
    nms = next((n for n in graph.node if n.op_type == NMS_PLUGIN), None)
    return {
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "inputs": inputs,
        "outputs": {v.name: shape(v) for v in graph.output},
        "nms": {a.name: onnx.helper.get_attribute_value(a) for a in nms.attribute} if nms is not None else None,
    }


def preprocessing(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What the caller does to an image before the model (TAO's Inferencer), from the spec's values."""
    return {
        "resize": {"width": spec["output_width"], "height": spec["output_height"],
                   "rule": "scale by min(width / image width, height / image height) keeping the aspect ratio, "
                           "paste at the top-left of a black width x height canvas"},
        "channel_order": "BGR",
        "layout": "NCHW float32",
        "mean": {"b": BGR_MEAN[0], "g": BGR_MEAN[1], "r": BGR_MEAN[2]},
        "scale": 1.0,
        "formula": "(pixel - mean) * scale, pixels 0..255",
    }


__all__ = ["BGR_MEAN", "EXPORT_OPSET", "NMS_PLUGIN", "OUTPUTS", "export_args", "export_dir", "preprocessing",
           "read_exported"]
