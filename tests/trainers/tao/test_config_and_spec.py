"""The TAO trainer's options, its experiment spec (checked by the fake against TAO's protos and
spec-loader asserts), anchors and templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alloop.errors import ConfigError, TrainerError
from alloop.trainers import config_from_mapping, load_trainer
from alloop.trainers.base import Trainer
from alloop.trainers.tao import (
    DEFAULT_ANCHORS,
    TaoConfig,
    TaoTrainer,
    anchor_shapes,
    kmeans_anchors,
    render_spec,
    spec_context,
)

CLASSES = ("Apple", "Pear")


# -- config ----------------------------------------------------------------------------------------

def test_defaults_are_the_tutorial_spec_values():
    c = TaoConfig()
    assert (c.runner, c.launcher, c.task_group, c.network, c.arch, c.nlayers) == (
        "launcher", ("tao",), "model", "yolo_v4", "resnet", 18)
    assert (c.batch_size, c.epochs, c.output_width, c.output_height) == (8, 50, 704, 1280)
    assert (c.min_learning_rate, c.max_learning_rate) == (1e-7, 1e-4)
    assert (c.nms_confidence, c.nms_iou, c.top_k) == (0.001, 0.5, 200)
    assert (c.mosaic_prob, c.horizontal_flip, c.key, c.anchors) == (0.5, 0.5, "nvidia_tlt", "default")


def test_the_trainer_is_registered_and_fits_the_protocol():
    assert load_trainer("tao") is TaoTrainer
    assert isinstance(TaoTrainer(TaoConfig(), CLASSES), Trainer)


def test_toml_values_are_normalised():
    c = config_from_mapping(TaoConfig, {
        "launcher": ["python3", "/x/fake.py"], "anchors": [[1, 2]] * 9, "pretrained_model": "none",
        "gpus": 2, "gpu_index": [0, 1], "docker_args": "--shm-size 16g",
    }, where="test")
    assert c.launcher == ("python3", "/x/fake.py")
    assert c.anchors == ((1.0, 2.0),) * 9 and c.pretrained_model is None
    assert c.gpu_index == (0, 1) and c.docker_args == ("--shm-size", "16g")


@pytest.mark.parametrize("values, message", [
    ({"output_width": 700}, "output_width must be a multiple of 32"),
    ({"runner": "k8s"}, "unknown runner 'k8s'; use one of launcher, docker"),
    ({"nlayers": 19}, "resnet in yolo_v4 comes in 10, 18, 34, 50, 101 layers"),
    ({"arch": "cspdarknet_tiny"}, "is not a yolo_v4 backbone"),
    ({"nms_confidence": 0}, r"nms_confidence must be a number in \(0.0, 1.0\)"),
    ({"gpus": 2, "gpu_index": [0]}, "gpu_index names 1 GPU"),
    ({"anchors": [[1, 2]] * 3}, "anchors needs 9"),
    ({"anchors": "auto"}, "anchors must be"),
    ({"launcher": []}, "launcher must be"),
    ({"min_learning_rate": 1e-3}, "must be below max_learning_rate"),
    ({"epoch": 3}, "unknown option.*epoch.*known options are.*epochs"),
])
def test_bad_config_values_name_the_fix(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(TaoConfig, values, where="[trainer] options (tao)")


def test_classes_tao_cannot_hold_are_refused():
    with pytest.raises(ConfigError, match="collide once lower-cased"):
        TaoTrainer(TaoConfig(), ["Red apple", "red_apple"])
    with pytest.raises(ConfigError, match="has a quote or backslash"):
        TaoTrainer(TaoConfig(), ['6" pipe'])


# -- spec ------------------------------------------------------------------------------------------

def _context(tmp_path, **kw):
    args = {"train_dir": tmp_path / "data" / "train", "val_dir": tmp_path / "data" / "val",
                "anchors": DEFAULT_ANCHORS, "num_epochs": 50, "seed": 7,
                "pretrain_model_path": tmp_path / "resnet_18.hdf5"}
    args.update(kw)
    return spec_context(TaoConfig(), ["apple", "pear"], **args)


def test_train_spec_has_every_documented_key(tmp_path, fake_tao):
    fake = fake_tao
    path = tmp_path / "train.txt"
    path.write_text(render_spec(_context(tmp_path)))
    spec = fake.load_spec(str(path))  # TAO's field names/types and spec_loader asserts
    one = fake.one
    assert set(spec) == {"random_seed", "yolov4_config", "training_config", "eval_config", "nms_config",
                         "augmentation_config", "dataset_config"}
    assert one(spec, "random_seed") == 7
    y = one(spec, "yolov4_config")
    assert one(y, "small_anchor_shape") == "[(15.64, 12.00), (12.71, 18.00), (17.60, 22.00)]"
    assert one(y, "big_anchor_shape") == "[(29.33, 27.00), (32.27, 35.00), (41.07, 42.00)]"
    assert (one(y, "box_matching_iou"), one(y, "arch"), one(y, "nlayers")) == (0.25, "resnet", 18)
    t = one(spec, "training_config")
    assert (one(t, "batch_size_per_gpu"), one(t, "num_epochs")) == (8, 50)
    assert one(t, "pretrain_model_path") == str(tmp_path / "resnet_18.hdf5") and "resume_model_path" not in t
    lr = one(one(t, "learning_rate"), "soft_start_cosine_annealing_schedule")
    assert (one(lr, "min_learning_rate"), one(lr, "max_learning_rate")) == (1e-7, 1e-4)
    assert "adam" in one(t, "optimizer")
    assert one(one(spec, "eval_config"), "matching_iou_threshold") == 0.5
    nms = one(spec, "nms_config")
    assert (one(nms, "confidence_threshold"), one(nms, "clustering_iou_threshold"), one(nms, "top_k")) == (
        0.001, 0.5, 200)
    aug = one(spec, "augmentation_config")
    assert (one(aug, "mosaic_prob"), one(aug, "horizontal_flip")) == (0.5, 0.5)
    assert (one(aug, "output_width"), one(aug, "output_height"), one(aug, "output_channel")) == (704, 1280, 3)
    ds = one(spec, "dataset_config")
    assert [(one(m, "key"), one(m, "value")) for m in ds["target_class_mapping"]] == [
        ("apple", "apple"), ("pear", "pear")]
    src, val = ds["data_sources"][0], ds["validation_data_sources"][0]
    assert one(src, "image_directory_path") == str(tmp_path / "data" / "train" / "images")
    assert one(src, "label_directory_path") == str(tmp_path / "data" / "train" / "labels")
    assert one(val, "label_directory_path") == str(tmp_path / "data" / "val" / "labels")


def test_resume_spec_sets_only_resume_model_path(tmp_path, fake_tao):
    fake = fake_tao
    path = tmp_path / "train.txt"
    ckpt = tmp_path / "w" / "yolov4_resnet18_epoch_050.hdf5"
    path.write_text(render_spec(_context(tmp_path, resume_model_path=ckpt, pretrain_model_path=None,
                                         num_epochs=100)))
    t = fake.one(fake.load_spec(str(path)), "training_config")
    assert fake.one(t, "resume_model_path") == str(ckpt) and "pretrain_model_path" not in t
    assert fake.one(t, "num_epochs") == 100


def test_the_fake_rejects_what_tao_rejects(tmp_path, fake_tao):
    fake = fake_tao
    good = render_spec(_context(tmp_path))
    for bad, message in [
        (good.replace("mosaic_min_ratio: 0.2", "mosaic_min_ratio: 0.7"), "mosaic_min_ratio"),
        (good.replace("nlayers: 18", "nlayers: 18.0"), "must be an integer"),
        (good.replace("top_k: 200", "topk: 200"), 'no field named "topk"'),
        (good.replace('arch: "resnet"', "arch: resnet"), "quoted string"),
    ]:
        path = tmp_path / "bad.txt"
        path.write_text(bad)
        with pytest.raises(fake.SpecError, match=message):
            fake.load_spec(str(path))


def test_paths_tao_cannot_pass_are_refused(tmp_path):
    with pytest.raises(TrainerError, match="contains ' '.*move or rename it"):
        _context(tmp_path, train_dir=tmp_path / "my data" / "train")


def test_anchor_strings_are_sorted_by_area():
    shapes = anchor_shapes([(9, 9), (1, 1), (5, 5), (2, 2), (8, 8), (3, 3), (7, 7), (4, 4), (6, 6)])
    assert shapes == {"small": "[(1.00, 1.00), (2.00, 2.00), (3.00, 3.00)]",
                      "mid": "[(4.00, 4.00), (5.00, 5.00), (6.00, 6.00)]",
                      "big": "[(7.00, 7.00), (8.00, 8.00), (9.00, 9.00)]"}


def test_custom_template(tmp_path):
    tpl = tmp_path / "mine.j2"
    tpl.write_text("num_epochs: {{ num_epochs }}\n")
    assert render_spec(_context(tmp_path), template=tpl) == "num_epochs: 50\n"
    tpl.write_text("{{ no_such_value }}")
    with pytest.raises(ConfigError, match="no_such_value.*fix the template"):
        render_spec(_context(tmp_path), template=tpl)
    with pytest.raises(ConfigError, match="no such file"):
        render_spec(_context(tmp_path), template=tmp_path / "missing.j2")


def test_kmeans_anchors_find_the_box_sizes():
    rng = np.random.default_rng(0)
    centres = np.array([[0.02, 0.03], [0.05, 0.05], [0.1, 0.08], [0.15, 0.2], [0.2, 0.1],
                        [0.3, 0.3], [0.4, 0.2], [0.5, 0.6], [0.8, 0.7]])
    sizes = np.concatenate([c * (1 + 0.02 * rng.standard_normal((30, 2))) for c in centres])
    anchors = kmeans_anchors(sizes, output_width=100, output_height=200, seed=1)
    assert len(anchors) == 9
    areas = [w * h for w, h in anchors]
    assert areas == sorted(areas)
    expected = sorted((c[0] * 100, c[1] * 200) for c in centres)
    got = sorted(anchors)
    assert np.allclose(got, expected, rtol=0.05)
    with pytest.raises(ValueError, match="more than 9 boxes"):
        kmeans_anchors(sizes[:9], output_width=100, output_height=200)




def test_the_shipped_template_is_the_one_in_specs_tao():
    """alloop/trainers/tao/specs links to specs/tao: the template read as package data is that file."""
    from alloop.trainers.tao.spec import SPEC_DIR

    repo = Path(__file__).resolve().parents[3]
    assert (SPEC_DIR / "yolo_v4.txt.j2").read_text() == (repo / "specs" / "tao" / "yolo_v4.txt.j2").read_text()
    assert not (repo / "alloop" / "trainers" / "tao_specs").exists()
