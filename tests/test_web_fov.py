"""The web demo with a model that estimates its camera: /api/predict without fov_deg (or with fov_deg=auto)
returns the model's own K and says so (K_source "estimated"); a given fov_deg wins; students keep 60 degrees.
Every answer carries the frame's own estimate (fov_estimate_deg); the page's webcam mode keeps one value per
stream from them by the ROS node's rule (web/src/fovEstimate.js) and then sends that number."""
from __future__ import annotations

import json

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


def test_predict_returns_the_frames_own_estimate_beside_the_K_used(tmp_path, teacher):
    """fov_estimate_deg: the camera head's estimate for this image, with fov_deg auto (then K is built from it)
    and with a number (K from the number, the estimate still this image's own: what the page's live mode
    collects while it sends its stream's fixed value)."""
    from lighthmr_ros.ros.fov_estimate import DEFAULT_SETTLE_FRAMES
    from lighthmr_ros.web import WebSettings, create_app

    _, camera = teacher.predict_with_camera(FRAME, det_threshold=0.0, max_humans=1, with_vertices=False)
    assert camera.fov_estimate_deg == pytest.approx(camera.fov_deg, rel=1e-9)
    with TestClient(create_app(teacher, WebSettings(static_dir=str(tmp_path)))) as client:
        assert client.get("/api/health").json()["fov_estimate_frames"] == DEFAULT_SETTLE_FRAMES  # the node's N
        auto = _predict(client, fov_deg="auto").json()
        assert auto["K_source"] == "estimated"
        assert auto["fov_estimate_deg"] == pytest.approx(camera.fov_estimate_deg, rel=1e-5)
        assert auto["fov_estimate_deg"] == pytest.approx(auto["fov_deg"], rel=1e-6)  # K built from it
        for fov in (55, 54.321):
            response = _predict(client, fov_deg=fov)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["K_source"] == "fov" and body["fov_deg"] == pytest.approx(fov, rel=1e-6)
            np.testing.assert_allclose(body["K"], teacher.default_K(W, H, fov), rtol=1e-6)
            assert body["fov_estimate_deg"] == pytest.approx(camera.fov_estimate_deg, rel=1e-5)
            assert abs(body["fov_estimate_deg"] - fov) > 1.0
    with TestClient(create_app(teacher, WebSettings(static_dir=str(tmp_path), fov_estimate_frames=5))) as client:
        assert client.get("/api/health").json()["fov_estimate_frames"] == 5


def test_student_reports_no_estimate(tmp_path, web_predictor):
    from lighthmr_ros.web import WebSettings, create_app

    with TestClient(create_app(web_predictor, WebSettings(static_dir=str(tmp_path)))) as client:
        for fields in ({}, {"fov_deg": 70}):
            body = _predict(client, **fields).json()
            assert body["K_source"] == "fov" and body["fov_estimate_deg"] is None


def test_page_rule_is_the_nodes(tmp_path):
    """web/src/fovEstimate.js gives the values the ROS node's FovStabiliser gives, frame by frame: settling
    medians, frozen after N frames with people, frames without people and invalid angles skipped, a new size
    starting again."""
    import shutil
    import subprocess

    from fixtures_web import REPO

    from lighthmr_ros.ros.fov_estimate import FovStabiliser

    node = shutil.which("node")
    if not node:
        pytest.skip("Node.js is not installed")
    rng = np.random.default_rng(3)
    frames = [(640, 480, float(v), int(p)) for v, p in zip(rng.normal(55, 4, 40), rng.integers(0, 3, 40), strict=True)]
    frames[5] = (640, 480, None, 1)
    frames[6] = (640, 480, 200.0, 1)
    frames += [(1280, 720, float(v), 1) for v in rng.normal(70, 3, 8)]  # another size: starts again
    expected = []
    stabiliser = FovStabiliser(7)
    for width, height, fov, people in frames:
        value = stabiliser.current(width, height)
        expected.append(None if value is None else [value.fov_deg, value.frames, value.settled])
        stabiliser.update(width, height, fov, people)
    script = tmp_path / "rule.mjs"
    script.write_text(
        f"import {{ FovStabiliser }} from {json.dumps((REPO / 'web/src/fovEstimate.js').as_uri())};\n"
        f"const s = new FovStabiliser(7); const out = [];\n"
        f"for (const [w, h, fov, people] of {json.dumps(frames)}) {{\n"
        "  const v = s.current(w, h); out.push(v.fovDeg === null ? null : [v.fovDeg, v.frames, v.settled]);\n"
        "  s.update(w, h, fov, people);\n}\nconsole.log(JSON.stringify(out));\n")
    run = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert (g is None) == (e is None)
        if e is not None:
            assert g[0] == pytest.approx(e[0], rel=1e-12) and g[1:] == e[1:]
    assert expected[-1] is not None and expected[-1][1] == 7 and expected[-1][2]  # the new size settled again


class _Recording:
    """A Predictor that notes what each /api/predict call asked for and what the model estimated.

    The untrained teacher's estimate hardly moves between frames; a real one jitters by degrees. So the
    reported estimate (``fov_estimate_deg``, what the page collects) gets a known jitter of several degrees
    per call, which makes the median, and the page ignoring later frames' own estimates, visible."""

    JITTER = (0.0, 6.0, -4.0, 9.0, -7.0, 3.0, -2.5, 5.0)

    def __init__(self, predictor):
        self._predictor = predictor
        self.calls: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._predictor, name)

    def predict_with_camera(self, image, fov_deg="auto", **kwargs):
        import dataclasses

        humans, camera = self._predictor.predict_with_camera(image, fov_deg=fov_deg, **kwargs)
        if camera.fov_estimate_deg is not None:
            jitter = self.JITTER[len(self.calls) % len(self.JITTER)]
            camera = dataclasses.replace(camera, fov_estimate_deg=camera.fov_estimate_deg + jitter)
        self.calls.append(dict(size=(image.shape[1], image.shape[0]), fov_deg=fov_deg, people=len(humans),
                               estimate=camera.fov_estimate_deg, K_fov=camera.fov_deg))
        return humans, camera


@pytest.mark.browser
def test_browser_webcam_fixes_the_estimated_fov_after_settling(teacher, astronaut_file):
    """The page's webcam mode with auto FOV: each frame is sent with the median of its stream's estimates
    so far ("auto" before the first), after N frames with people with that frozen number on every frame,
    and the status says "settling k/N" then "stable". An upload stays per frame."""
    from fixtures_web import ARTIFACTS, browser_prerequisites, run_browser, serve_app

    from lighthmr_ros.ros.fov_estimate import FovStabiliser
    from lighthmr_ros.web import WebSettings, create_app

    browser_prerequisites()
    settle = 4  # a short window (lighthmr serve --fov-estimate-frames): a CPU teacher frame takes seconds
    recording = _Recording(teacher)
    app = create_app(recording, WebSettings(fov_estimate_frames=settle, max_humans=1))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serve_app(app) as url:
        report = run_browser("--url", f"{url}/", "--image", str(astronaut_file), "--threshold", "0.5",
                             "--timeout", "300", "--webcam", "--fov-stable",
                             "--screenshot", str(ARTIFACTS / "browser_fov_stable.png"), timeout=500)
    (ARTIFACTS / "browser_fov_stable_report.json").write_text(json.dumps(report, indent=2))
    assert report["returncode"] == 0 and report["ok"], report
    assert not [m for m in report["console"] if m.startswith("pageerror")], report["console"]
    assert report["fovAuto"] is True, report  # on by default: this model estimates its camera
    assert report["fovState"].endswith("(estimated, this frame)"), report  # the upload: per frame
    assert report["webcamFovState"].endswith("(estimated, stable)"), report
    states = report["webcamFovStates"]
    assert f"settling {settle - 1}/{settle})" in " ".join(states) and states[-1].endswith("stable)"), states

    upload, webcam = recording.calls[0], recording.calls[1:]
    assert upload["size"] == (512, 512) and upload["fov_deg"] == "auto"
    assert len({c["size"] for c in webcam}) == 1, webcam  # one video size: no restart
    # The page sent what the node's rule gives for this sequence of answers, frame by frame.
    rule = FovStabiliser(settle)
    sent_numbers, own_estimates = [], []  # of the frames sent after settling
    for call in webcam:
        value = rule.current(*call["size"])
        if value is None:
            assert call["fov_deg"] == "auto", (call, webcam)
        else:
            assert call["fov_deg"] == pytest.approx(value.fov_deg, rel=1e-9), (call, webcam)
            assert call["K_fov"] == pytest.approx(value.fov_deg, rel=1e-6)  # the server built K from it
            if value.settled:
                sent_numbers.append(call["fov_deg"])
                own_estimates.append(call["estimate"])
        rule.update(*call["size"], call["estimate"], call["people"])
    # After the settling frames: one fixed number on every request (at least the 2 frames waited for).
    assert len(sent_numbers) >= 2 and len(set(sent_numbers)) == 1, webcam
    frozen = rule.current(*webcam[0]["size"])
    assert frozen.settled and sent_numbers[0] == pytest.approx(frozen.fov_deg, rel=1e-9)
    # ... while those frames' own estimates still jitter: the page no longer follows them.
    assert max(abs(e - frozen.fov_deg) for e in own_estimates) > 1.0, webcam
    assert report["webcamFovState"].startswith(f"FOV {frozen.fov_deg:.1f}")
