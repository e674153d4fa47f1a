"""`lighthmr serve` as users run it: a live uvicorn server, real HTTP, and a real headless Chromium."""
from __future__ import annotations

import json
import subprocess
import threading
import time

import httpx
import numpy as np
import pytest
from fixtures_web import ARTIFACTS, BROWSER_SCRIPT, REPO, browser_prerequisites

from lighthmr_ros.web import STATIC_DIR
from lighthmr_ros.web.payload import decode_array

pytestmark = pytest.mark.slow


def _post_photo(url: str, data: bytes, **fields) -> httpx.Response:
    return httpx.post(
        f"{url}/api/predict",
        files={"image": ("astronaut.png", data, "image/png")},
        data={k: str(v) for k, v in fields.items()},
        timeout=300,
    )


def test_serve_answers_predict_with_a_photo(live_server, astronaut_png):
    health = httpx.get(f"{live_server}/api/health").json()
    assert health["status"] == "ok"
    response = _post_photo(live_server, astronaut_png, det_threshold=0.0, max_humans=2, fov_deg=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (512, 512)
    assert len(body["humans"]) == 2
    topology = httpx.get(f"{live_server}/api/topology").json()
    assert topology["etag"] == body["topology_etag"]
    faces = decode_array(topology["faces"])
    for human in body["humans"]:
        vertices = decode_array(human["vertices"])
        assert vertices.shape == (topology["num_vertices"], 3)
        assert np.isfinite(vertices).all()
        assert faces.max() < len(vertices)
    assert "<div id=" in httpx.get(f"{live_server}/").text or not (STATIC_DIR / "index.html").exists()


def test_serve_health_answers_during_a_prediction(live_server, astronaut_png):
    done = threading.Event()
    result = {}

    def run():
        result["response"] = _post_photo(live_server, astronaut_png, det_threshold=0.0, max_humans=20)
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    answered_busy = 0
    with httpx.Client(base_url=live_server, timeout=10) as client:
        while not done.is_set():
            if client.get("/api/health").json()["busy"]:
                answered_busy += 1
            time.sleep(0.005)
    thread.join()
    assert result["response"].status_code == 200
    assert answered_busy > 0


@pytest.mark.browser
def test_browser_renders_meshes_for_upload_and_webcam(live_server, astronaut_file):
    chromium, node = browser_prerequisites()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "browser_astronaut.png"
    screenshot.unlink(missing_ok=True)
    run = subprocess.run(
        [node, str(BROWSER_SCRIPT), "--url", f"{live_server}/", "--image", str(astronaut_file),
         "--screenshot", str(screenshot), "--threshold", "0.01", "--timeout", "240", "--chromium", chromium,
         "--webcam"],
        capture_output=True, text=True, timeout=400, cwd=REPO,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report from the browser script (rc {run.returncode}):\n{run.stdout}\n{run.stderr}"
    report = json.loads(lines[-1])
    (ARTIFACTS / "browser_report.json").write_text(json.dumps(report, indent=2))
    assert run.returncode == 0 and report["ok"], report
    assert not [m for m in report["console"] if m.startswith("pageerror")], report["console"]
    assert int(report["count"]) >= 1, report  # the people count is shown
    assert "ms" in report["latency"]
    assert report["scene"]["webgl"] and report["overlay"]["webgl"]
    # The 3D view drew something; the overlay canvas is transparent except where a mesh is drawn.
    assert report["scene"]["drawn"] > 1000, report["scene"]
    assert report["overlay"]["drawn"] > 100 and report["overlay"]["colored"] > 100, report["overlay"]
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
    # Streaming: Chromium's fake camera through getUserMedia, frames sent and answered in turn.
    assert report["webcamFrames"] >= 2 and report["webcamStatus"] != "", report
    # "auto FOV" (the model's own estimate) is on by default where the server's model estimates one
    # (fov_auto); the bundled student does not, so the page uses the server's angle.
    health = httpx.get(f"{live_server}/api/health").json()
    assert report["fovAuto"] is health["fov_auto"] is False, report
    assert (ARTIFACTS / "browser_astronaut-webcam.png").is_file()


@pytest.mark.browser
def test_browser_shows_the_demo_model_banner(live_server):
    """The bundled synthetic-only model says what it is: a visible banner with the notice from /api/health."""
    from lighthmr_ros.model.checkpoint import DEMO_MODEL_NOTICE

    chromium, node = browser_prerequisites()
    assert httpx.get(f"{live_server}/api/health").json()["notice"] == DEMO_MODEL_NOTICE
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "browser_demo_notice.png"
    run = subprocess.run(
        [node, str(BROWSER_SCRIPT), "--url", f"{live_server}/", "--page-only", "--screenshot", str(screenshot),
         "--timeout", "120", "--chromium", chromium],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report from the browser script (rc {run.returncode}):\n{run.stdout}\n{run.stderr}"
    report = json.loads(lines[-1])
    assert run.returncode == 0 and report["ok"], report
    assert not [m for m in report["console"] if m.startswith("pageerror")], report["console"]
    # The page shows the sentence (its `command` as code, so without the backticks).
    assert report["notice"] == DEMO_MODEL_NOTICE.replace("`", ""), report
    assert "not trained on real people" in report["notice"] and " on " in report["health"]
