"""The web demo with a model that estimates its camera: /api/predict without fov_deg (or with fov_deg=auto)
returns the model's own K and says so (K_source "estimated"); a given fov_deg wins; students keep 60 degrees."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow

W, H = 320, 240
FRAME = np.random.default_rng(1).integers(0, 255, size=(H, W, 3), dtype=np.uint8)
PNG = cv2.imencode(".png", FRAME[..., ::-1])[1].tobytes()


@pytest.fixture(scope="module")
def teacher():
    """A real Predictor around an untrained, small Anny teacher (ViT-S/14, 224 px, one decoder layer)."""
    import torch

    from lighthmr_ros.inference import Predictor
    from lighthmr_ros.model import create_model

    torch.manual_seed(0)
    return Predictor(create_model("multihmr_anny_vits14", image_size=224, hph_depth=1).eval(), device="cpu")


def _predict(client, **fields):
    return client.post("/api/predict", files={"image": ("frame.png", PNG, "image/png")},
                       data={"det_threshold": "0", "max_humans": "1", "with_vertices": "false",
                             **{k: str(v) for k, v in fields.items()}})


def test_predict_returns_the_models_own_K_and_its_source(tmp_path, teacher):
    from lighthmr_ros.web import WebSettings, create_app

    _, camera = teacher.predict_with_camera(FRAME, det_threshold=0.0, max_humans=1, with_vertices=False)
    assert camera.source == "estimated"
    with TestClient(create_app(teacher, WebSettings(static_dir=str(tmp_path)))) as client:
        health = client.get("/api/health").json()
        assert health["fov_auto"] is True and health["fov_deg"] == 60.0
        for fields in ({}, {"fov_deg": "auto"}):
            response = _predict(client, **fields)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["K_source"] == "estimated"
            np.testing.assert_allclose(body["K"], camera.K, rtol=1e-5)
            assert body["fov_deg"] == pytest.approx(camera.fov_deg, rel=1e-6)
            assert not np.allclose(body["K"], teacher.default_K(W, H, 60.0), rtol=1e-3)
        body = _predict(client, fov_deg=55).json()
        assert body["K_source"] == "fov" and body["fov_deg"] == pytest.approx(55.0)
        np.testing.assert_allclose(body["K"], teacher.default_K(W, H, 55.0), rtol=1e-6)
        assert _predict(client, fov_deg="wide").status_code == 422
    with TestClient(create_app(teacher, WebSettings(static_dir=str(tmp_path), fov_deg=70.0))) as client:
        assert client.get("/api/health").json()["fov_auto"] is False
        body = _predict(client).json()  # the server's number is the default now
        assert body["K_source"] == "fov" and body["fov_deg"] == pytest.approx(70.0)


def test_student_answers_auto_with_the_60_degree_fallback(tmp_path):
    from lighthmr_ros.inference import Predictor
    from lighthmr_ros.web import WebSettings, create_app

    student = Predictor(config="lighthmr_tinyvit5m", device="cpu", image_size=224)
    with TestClient(create_app(student, WebSettings(static_dir=str(tmp_path)))) as client:
        assert client.get("/api/health").json()["fov_auto"] is False
        body = _predict(client).json()
        assert body["K_source"] == "fov" and body["fov_deg"] == pytest.approx(60.0)
        np.testing.assert_allclose(body["K"], student.default_K(W, H, 60.0), rtol=1e-6)
