"""Predictor: inputs of every kind, batches, devices, precisions, checkpoints, the default model."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from lighthmr_ros.errors import ConfigError, ImageError
from lighthmr_ros.human import Human
from lighthmr_ros.inference import Predictor, as_rgb, resolve_device
from lighthmr_ros.model.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def predictor(student_small):
    return Predictor(student_small, device="cpu")


def _img(h=200, w=320, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_predict_records(predictor):
    humans = predictor.predict(_img(), det_threshold=0.0, max_humans=3)
    assert len(humans) == 3 and all(isinstance(h, Human) for h in humans)
    h = humans[0]
    J = predictor.model.body.spec.num_pose_joints
    assert h.pose.shape == (J, 3) and h.joints.shape == (len(predictor.joint_names), 3)
    assert h.vertices.shape == (predictor.num_vertices, 3) and h.body_model == "smplx"
    assert predictor.faces.shape[1] == 3 and predictor.faces.max() < predictor.num_vertices
    assert len(predictor.joint_parents) == len(predictor.joint_names)
    json.dumps(h.to_dict())
    assert predictor.predict(_img(), det_threshold=0.0, max_humans=2, with_vertices=False)[0].vertices is None
    assert predictor.predict(_img(), det_threshold=1.01) == []


def test_image_kinds_and_batches(predictor):
    rgb = _img(seed=1)
    gray = rgb[..., 0]
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert np.array_equal(as_rgb(rgba), rgb) and as_rgb(gray).shape == rgb.shape
    assert np.array_equal(as_rgb(rgb.astype(np.float32) / 255.0), rgb)
    batch = predictor.predict([rgb, gray, rgba], det_threshold=0.0, max_humans=2)
    assert [len(b) for b in batch] == [2, 2, 2]
    single = predictor.predict(rgb, det_threshold=0.0, max_humans=2)
    for a, b in zip(single, batch[0], strict=False):
        assert np.allclose(a.vertices, b.vertices, atol=1e-4)
    for a, b in zip(batch[0], batch[2], strict=False):  # alpha is dropped
        assert np.allclose(a.joints, b.joints, atol=1e-5)
    with pytest.raises(ImageError):
        predictor.predict(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(ImageError):
        predictor.predict(np.zeros((10, 10, 3), np.int32) + 1000)
    with pytest.raises(ImageError, match="intrinsic"):
        predictor.predict([rgb, rgb], K=[np.eye(3)])
    with pytest.raises(ImageError, match="focal"):
        predictor.predict(rgb, K=np.zeros((3, 3)))


def test_devices(caplog):
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with caplog.at_level(logging.WARNING):
            assert resolve_device("cuda:0").type == "cpu"
        assert "CUDA is not available" in caplog.text
        assert resolve_device("auto").type == "cpu"


def test_precisions(student_small):
    with pytest.raises(ConfigError, match="precision"):
        Predictor(student_small, device="cpu", precision="int8")
    img = _img(seed=2)
    ref = Predictor(student_small, device="cpu").predict(img, det_threshold=0.0, max_humans=2)
    low = Predictor(student_small, device="cpu", precision="bf16").predict(img, det_threshold=0.0, max_humans=2)
    assert len(low) == 2 and low[0].joints.dtype == np.float32
    assert np.isfinite(low[0].vertices).all()
    assert np.abs(low[0].translation - ref[0].translation).max() < 0.5 * np.abs(ref[0].translation).max()


@pytest.mark.slow
def test_checkpoint_file(tmp_path, student_small, model_smplx_dir):
    path = save_checkpoint(tmp_path / "s.pt", student_small, provenance={"test": True}, half=True)
    a = Predictor(path, device="cpu", smplx_model_dir=model_smplx_dir).predict(
        _img(seed=3), det_threshold=0.0, max_humans=2
    )
    b = Predictor(student_small, device="cpu").predict(_img(seed=3), det_threshold=0.0, max_humans=2)
    assert np.allclose(a[0].joints, b[0].joints, atol=0.05)  # fp16 weights
    with pytest.raises(ConfigError, match="runs at 256"):
        Predictor(path, device="cpu", smplx_model_dir=model_smplx_dir, image_size=640)


def test_untrained_default_warns(caplog, model_smplx_dir, monkeypatch, tmp_path):
    import lighthmr_ros.inference as inference

    monkeypatch.setattr(inference, "DEFAULT_CHECKPOINT", tmp_path / "absent.pt")
    with caplog.at_level(logging.WARNING):
        p = Predictor(device="cpu", body_model="smplx", smplx_model_dir=model_smplx_dir, image_size=256)
    assert "NO TRAINED WEIGHTS" in caplog.text
    assert p.model.config.name == "lighthmr_tinyvit5m" and p.image_size == 256
    assert len(p.predict(_img(seed=4), det_threshold=0.0, max_humans=1)) == 1


@pytest.mark.slow
def test_default_student_uses_anny(monkeypatch, tmp_path):
    import lighthmr_ros.inference as inference

    monkeypatch.setattr(inference, "DEFAULT_CHECKPOINT", tmp_path / "absent.pt")
    p = Predictor(device="cpu")
    assert p.body_model_name == "anny" and p.model.body.spec.name == "anny"
    humans = p.predict(_img(seed=5), det_threshold=0.0, max_humans=2)
    assert len(humans) == 2 and humans[0].body_model == "anny"
    assert humans[0].vertices.shape == (p.num_vertices, 3) and humans[0].expression.shape == (0,)


@pytest.mark.slow
def test_teacher_predictor_matches_reference(reference_teacher, reference_cases):
    """Through the Predictor (uint8 image in, original frame out) the teacher still gives upstream's outputs."""
    c = reference_cases["B"]
    p = Predictor(reference_teacher, device="cpu")
    humans = p.predict(c["input_image_uint8"], K=c["K"][0], det_threshold=0.65, nms_kernel=3)
    assert len(humans) == int(c["n_persons"])
    verts = np.stack([h.vertices for h in humans])
    assert np.abs(verts - c["out_v3d"]).max() / np.abs(c["out_v3d"]).max() < 1e-4
    assert np.allclose(np.stack([h.translation for h in humans]), c["out_transl_pelvis"][:, 0], atol=1e-4)
    assert np.allclose(np.stack([h.extras["primary_keypoint"] for h in humans]), c["out_transl"], atol=1e-4)
    assert np.allclose(np.stack([h.center_2d for h in humans]), c["out_loc"], atol=1e-3)
    assert np.allclose(np.stack([h.pose for h in humans]), c["out_rotvec"], atol=2e-4)
