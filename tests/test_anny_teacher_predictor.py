"""The Predictor runs the Anny teacher; with no K and fov_deg "auto" the teacher's own field of view
builds K (students keep the 60-degree fallback); the demo model carries its notice."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lighthmr_ros.errors import ConfigError, ImageError
from lighthmr_ros.inference import DEFAULT_CHECKPOINT, Predictor
from lighthmr_ros.model.camera import focal_from_fov
from lighthmr_ros.model.checkpoint import DEMO_MODEL_NOTICE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def teacher_predictor(anny_reference_teacher):
    return Predictor(anny_reference_teacher, device="cpu")


def test_estimated_camera_reproduces_reference_case_b(teacher_predictor, anny_reference_cases):
    c = anny_reference_cases["B"]
    image = c["input_image_uint8"]  # 448 x 448: the letterbox is the identity
    humans, camera = teacher_predictor.predict_with_camera(image, det_threshold=float(c["det_thresh"]))
    assert camera.source == "estimated" and camera.estimated
    assert np.allclose(camera.K, c["enc_K_regressed"][0], rtol=1e-4)
    assert camera.fov_deg == pytest.approx(np.degrees(float(c["enc_fov"][0, 0])), abs=1e-3)
    assert teacher_predictor.estimates_camera and teacher_predictor.notice is None
    assert teacher_predictor.body_model_name == "anny_fullbody"
    assert teacher_predictor.faces.shape == (27420, 3)
    # Same persons as upstream (our normalisation is float32, upstream's float64: tiny differences).
    assert len(humans) == int(c["n_persons"])
    got = np.stack([h.extras["primary_keypoint"] for h in humans])
    assert np.abs(got - c["transl"]).max() / np.abs(c["transl"]).max() < 1e-3
    assert np.abs(np.stack([h.joints_2d for h in humans]) - c["j2d"]).max() < 0.05


def test_given_fov_and_given_K_win_over_the_estimate(teacher_predictor, anny_reference_cases):
    c = anny_reference_cases["A"]
    image = c["input_image_uint8"]
    _, camera = teacher_predictor.predict_with_camera(image, fov_deg=60.0, det_threshold=0.99)
    assert camera.source == "fov" and camera.K[0, 0] == pytest.approx(focal_from_fov(60.0, 448))
    humans, camera = teacher_predictor.predict_with_camera(image, K=c["K_given"][0],
                                                           det_threshold=float(c["det_thresh"]))
    assert camera.source == "given" and len(humans) == int(c["n_persons"])
    got = np.stack([h.extras["primary_keypoint"] for h in humans])
    assert np.abs(got - c["transl"]).max() / np.abs(c["transl"]).max() < 1e-3
    with pytest.raises(ImageError, match="'auto' or between 1 and 179"):
        teacher_predictor.predict(image, fov_deg="wide")


def test_estimated_K_is_mapped_to_the_original_pixels(teacher_predictor):
    rng = np.random.default_rng(3)
    wide = rng.integers(0, 255, (300, 600, 3), dtype=np.uint8)
    _, c_wide = teacher_predictor.predict_with_camera(wide, det_threshold=0.99)
    K_given = np.diag([500.0, 500.0, 1.0])
    _, c_batch = teacher_predictor.predict_with_camera([wide, wide], K=[None, K_given], det_threshold=0.99)
    # The square's centre is the image centre; focal lengths scale by 600 / 448 (long side -> S).
    assert c_wide.K[0, 2] == pytest.approx(300.0, abs=1.0) and c_wide.K[1, 2] == pytest.approx(150.0, abs=1.0)
    with torch.inference_mode():
        fov = float(teacher_predictor.model.encode(teacher_predictor.prepare([wide], [None])[0])["fov"][0])
    assert c_wide.K[0, 0] == pytest.approx(224.0 / np.tan(fov / 2) * 600 / 448, rel=1e-4)
    assert [c.source for c in c_batch] == ["estimated", "given"] and np.allclose(c_batch[0].K, c_wide.K)


def test_student_keeps_the_60_degree_fallback():
    pred = Predictor(config="lighthmr_tinyvit5m", device="cpu")
    image = np.zeros((240, 320, 3), dtype=np.uint8)
    _, camera = pred.predict_with_camera(image, det_threshold=0.99)
    assert not pred.estimates_camera and camera.source == "fov"
    assert np.allclose(camera.K, Predictor.default_K(320, 240, 60.0))


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="no bundled default checkpoint")
def test_bundled_model_carries_the_demo_notice():
    assert Predictor(device="cpu").notice == DEMO_MODEL_NOTICE


def test_anny_teacher_refuses_onnxruntime(anny_reference_teacher):
    with pytest.raises(ConfigError, match="torch backend only"):
        Predictor(anny_reference_teacher, device="cpu", backend="onnxruntime")


def test_cli_predict_records_the_estimated_camera(tmp_path, anny_official_file, anny_reference_cases):
    import json

    from PIL import Image

    from lighthmr_ros import cli

    ckpt = anny_official_file
    c = anny_reference_cases["B"]
    Image.fromarray(c["input_image_uint8"]).save(tmp_path / "b.png")
    common = ["predict", str(tmp_path / "b.png"), "--checkpoint", str(ckpt), "--no-overlay", "--mesh-format",
              "none", "--device", "cpu", "--threshold", str(float(c["det_thresh"]))]
    assert cli.main([*common, "--out", str(tmp_path / "auto")]) == 0
    doc = json.loads((tmp_path / "auto" / "b.json").read_text())
    assert doc["K_source"] == "estimated" and len(doc["humans"]) == int(c["n_persons"])
    assert np.allclose(doc["K"], c["enc_K_regressed"][0], rtol=1e-4)
    assert cli.main([*common, "--out", str(tmp_path / "fixed"), "--fov", "60"]) == 0
    doc = json.loads((tmp_path / "fixed" / "b.json").read_text())
    assert doc["K_source"] == "fov" and doc["K"][0][0] == pytest.approx(focal_from_fov(60.0, 448))
