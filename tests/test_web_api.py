"""HTTP API of the web demo (FastAPI TestClient) around the real Predictor."""
from __future__ import annotations

import tempfile
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from fixtures_web import encode_image, png_declaring

from lighthmr_ros.web.payload import decode_array


def _predict(client, data: bytes, filename="photo.png", **fields):
    fields = {k: str(v) for k, v in fields.items()}
    return client.post("/api/predict", files={"image": (filename, data, "image/png")}, data=fields)


def test_health(web_client, web_predictor):
    body = web_client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["body_model"] == web_predictor.body_model_name
    assert body["busy"] is False and body["pending"] == 0
    assert body["max_upload_bytes"] > 0 and body["max_pixels"] > 0
    assert (body["det_threshold"], body["fov_deg"]) == (0.5, 60.0)
    assert body["precision"] == web_predictor.precision and body["precision_reason"] == web_predictor.precision_reason
    assert body["notice"] is None  # an untrained student: no synthetic-only provenance to warn about


def test_health_says_the_default_model_is_a_synthetic_demo(tmp_path):
    from lighthmr_ros.model.checkpoint import DEMO_MODEL_NOTICE
    from lighthmr_ros.web import WebSettings, create_app

    # No checkpoint and no config: the bundled default, loaded in the background as `lighthmr serve` does.
    app = create_app(None, WebSettings(device="cpu", static_dir=str(tmp_path)))
    with TestClient(app) as client:
        deadline = time.monotonic() + 300
        while (body := client.get("/api/health").json())["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert body["status"] == "ok", body
        assert body["notice"] == DEMO_MODEL_NOTICE
        assert "not trained on real people" in body["notice"] and "multiHMR_672_L_anny" in body["notice"]


def test_topology_sent_once_with_etag(web_client, web_predictor):
    response = web_client.get("/api/topology")
    assert response.status_code == 200
    body = response.json()
    etag = response.headers["etag"]
    assert body["etag"] == etag and body["body_model"] == web_predictor.body_model_name
    faces = decode_array(body["faces"])
    np.testing.assert_array_equal(faces, np.asarray(web_predictor.faces))
    assert body["num_vertices"] == web_predictor.num_vertices
    assert len(body["joint_names"]) == len(body["joint_parents"])
    again = web_client.get("/api/topology", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = web_client.get("/api/topology", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200


def test_predict_returns_what_the_predictor_finds(web_client, web_predictor, astronaut_rgb, astronaut_png):
    response = _predict(web_client, astronaut_png, det_threshold=0.0, fov_deg=55, max_humans=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (512, 512)
    K = np.asarray(web_predictor.default_K(512, 512, 55.0))
    np.testing.assert_allclose(body["K"], K, rtol=1e-6)
    assert body["topology_etag"] == web_client.get("/api/topology").headers["etag"]
    assert body["timing"]["inference_ms"] > 0 and body["timing"]["total_ms"] >= body["timing"]["inference_ms"]

    expected = web_predictor.predict(astronaut_rgb, K=K, det_threshold=0.0, max_humans=3)
    assert 1 <= len(body["humans"]) == len(expected) <= 3
    for got, want in zip(body["humans"], expected, strict=True):
        assert got["score"] == pytest.approx(want.score, abs=1e-5)
        np.testing.assert_allclose(got["translation"], want.translation, atol=1e-4)
        np.testing.assert_allclose(decode_array(got["joints"]), want.joints, atol=1e-4)
        np.testing.assert_allclose(decode_array(got["joints_2d"]), want.joints_2d, atol=1e-2)
        vertices = decode_array(got["vertices"])
        assert vertices.shape == (web_predictor.num_vertices, 3) and vertices.dtype == np.float32
        np.testing.assert_allclose(vertices, want.vertices, atol=1e-4)


def test_predict_without_vertices(web_client, astronaut_png):
    body = _predict(web_client, astronaut_png, det_threshold=0.0, max_humans=1, with_vertices="false").json()
    assert len(body["humans"]) == 1
    assert body["humans"][0]["vertices"] is None
    assert decode_array(body["humans"][0]["joints"]).shape[1] == 3


def test_predict_keeps_uploads_in_memory(web_client, monkeypatch):
    """A multi-megabyte upload is handled without any temporary file (Starlette would spool it to disk)."""
    import starlette.formparsers

    def refuse(*args, **kwargs):
        raise AssertionError("a temporary file was created")

    for name in ("SpooledTemporaryFile", "NamedTemporaryFile", "TemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", refuse)
    noise = np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)
    data = encode_image(noise)
    assert len(data) > 2 * 2**20
    response = _predict(web_client, data, det_threshold=0.0, max_humans=1)
    assert response.status_code == 200, response.text
    assert response.json()["width"] == 900


def _corrupt_png(astronaut_png: bytes) -> bytes:
    return astronaut_png[: len(astronaut_png) // 3]


@pytest.mark.parametrize(
    "case,status",
    [
        ("not_an_image", 415),
        ("corrupt_png", 400),
        ("empty_file", 400),
        ("bomb_header", 413),
        ("no_image_part", 400),
        ("json_body", 415),
        ("threshold_text", 422),
        ("threshold_above_one", 422),
        ("fov_too_small", 422),
        ("fov_nan", 422),
        ("with_vertices_odd", 422),
    ],
)
def test_predict_bad_inputs(web_client, astronaut_png, case, status):
    if case == "not_an_image":
        response = _predict(web_client, b"#!/bin/sh\necho not an image\n", filename="x.sh")
    elif case == "corrupt_png":
        response = _predict(web_client, _corrupt_png(astronaut_png))
    elif case == "empty_file":
        response = _predict(web_client, b"")
    elif case == "bomb_header":
        response = _predict(web_client, png_declaring(50_000, 50_000))
    elif case == "no_image_part":
        response = web_client.post("/api/predict", data={"det_threshold": "0.5"}, files={"other": ("a.txt", b"x")})
    elif case == "json_body":
        response = web_client.post("/api/predict", json={"image": "aGVsbG8="})
    else:
        field = {
            "threshold_text": {"det_threshold": "high"},
            "threshold_above_one": {"det_threshold": 1.5},
            "fov_too_small": {"fov_deg": 5},
            "fov_nan": {"fov_deg": "nan"},
            "with_vertices_odd": {"with_vertices": "maybe"},
        }[case]
        response = _predict(web_client, astronaut_png, **field)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 10


def test_predict_upload_size_limit(web_app_factory, astronaut_png):
    with TestClient(web_app_factory(max_upload_bytes=100_000)) as client:
        response = _predict(client, astronaut_png)  # ~470 kB
        assert response.status_code == 413
        assert "MiB" in response.json()["detail"]
        # refused from the declared length alone, before the body is read
        response = client.post(
            "/api/predict",
            content=b"x" * 300_000,
            headers={"Content-Type": "multipart/form-data; boundary=abc"},
        )
        assert response.status_code == 413


def test_predict_pixel_limit(web_app_factory, astronaut_png):
    with TestClient(web_app_factory(max_pixels=100_000)) as client:
        response = _predict(client, astronaut_png)  # 512 x 512 = 262,144 pixels
        assert response.status_code == 413
        assert "pixels" in response.json()["detail"]


def test_health_answers_while_predicting(web_client, astronaut_png):
    results = {}

    def run():
        results["predict"] = _predict(web_client, astronaut_png, det_threshold=0.0, max_humans=20)

    thread = threading.Thread(target=run)
    thread.start()
    seen_busy = []
    deadline = time.monotonic() + 120
    while thread.is_alive() and time.monotonic() < deadline:
        started = time.perf_counter()
        body = web_client.get("/api/health").json()
        if body["busy"]:
            seen_busy.append(time.perf_counter() - started)
        time.sleep(0.005)
    thread.join()
    assert results["predict"].status_code == 200
    assert seen_busy, "health never answered while the prediction ran"
    assert min(seen_busy) < 0.5


def test_concurrent_predictions_do_not_mix(web_client, astronaut_rgb):
    images = [encode_image(np.ascontiguousarray(astronaut_rgb[:, ::-1])), encode_image(astronaut_rgb[:400])]
    alone = [_predict(web_client, data, det_threshold=0.0, max_humans=2).json() for data in images]
    results: dict[int, dict] = {}

    def run(i):
        results[i] = _predict(web_client, images[i % 2], det_threshold=0.0, max_humans=2).json()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, body in results.items():
        expected = alone[i % 2]
        assert body["height"] == expected["height"]
        assert [h["score"] for h in body["humans"]] == pytest.approx([h["score"] for h in expected["humans"]], abs=1e-5)
        np.testing.assert_allclose(
            decode_array(body["humans"][0]["vertices"]), decode_array(expected["humans"][0]["vertices"]), atol=1e-4
        )


def test_busy_server_answers_503(web_app_factory, astronaut_png):
    with TestClient(web_app_factory(max_waiting=0)) as client:
        statuses = []
        for _ in range(3):  # the first request must still be running when the second arrives
            first = threading.Thread(target=_predict, args=(client, astronaut_png), kwargs={"det_threshold": 0.0})
            first.start()
            while not client.get("/api/health").json()["busy"] and first.is_alive():
                time.sleep(0.002)
            second = _predict(client, astronaut_png)
            first.join()
            statuses.append(second.status_code)
            if second.status_code == 503:
                assert second.headers["retry-after"] == "1"
                assert "busy" in second.json()["detail"]
                break
        assert 503 in statuses
        assert client.get("/api/health").json()["pending"] == 0


def test_cors_only_for_configured_origins(web_app_factory):
    allowed, other = "http://lab-dashboard.local:3000", "http://evil.example"
    preflight = {"Access-Control-Request-Method": "POST"}
    with TestClient(web_app_factory(cors_origins=(allowed,))) as client:
        ok = client.options("/api/predict", headers={"Origin": allowed, **preflight})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == allowed
        refused = client.options("/api/predict", headers={"Origin": other, **preflight})
        assert "access-control-allow-origin" not in refused.headers
        assert "access-control-allow-origin" not in client.get("/api/health", headers={"Origin": other}).headers
    with TestClient(web_app_factory()) as client:  # default: no cross-origin access at all
        response = client.get("/api/health", headers={"Origin": allowed})
        assert "access-control-allow-origin" not in response.headers


def test_front_end_served_at_root(web_app_factory, tmp_path):
    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html><title>demo</title><div id=root></div>")
    (static / "assets" / "app.js").write_text("console.log('demo')")
    with TestClient(web_app_factory(static_dir=str(static))) as client:
        page = client.get("/")
        assert page.status_code == 200 and "<div id=root>" in page.text
        assert client.get("/assets/app.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/api/health").json()["status"] == "ok"  # the API is not shadowed by the mount


def test_root_explains_a_missing_build(web_client):
    response = web_client.get("/")
    assert response.status_code == 503
    assert "build_web.sh" in response.text


def test_openapi_docs_on(web_client):
    schema = web_client.get("/openapi.json").json()
    assert {"/api/health", "/api/topology", "/api/predict"} <= set(schema["paths"])
    body = schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert "image" in body["required"]
    assert web_client.get("/docs").status_code == 200


def test_model_load_failure_is_reported(tmp_path):
    from lighthmr_ros.web import WebSettings, create_app

    missing = tmp_path / "nowhere.pt"
    app = create_app(None, WebSettings(checkpoint=str(missing), device="cpu", static_dir=str(tmp_path)))
    with TestClient(app) as client:
        deadline = time.monotonic() + 120
        while (body := client.get("/api/health").json())["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert body["status"] == "error"
        assert "nowhere.pt" in body["message"]
        response = _predict(client, b"anything")
        assert response.status_code == 503 and "nowhere.pt" in response.json()["detail"]


@pytest.mark.slow
def test_model_loads_in_the_background(tmp_path, astronaut_png):
    from fixtures_web import WEB_IMAGE_SIZE

    from lighthmr_ros.inference import DEFAULT_CONFIG
    from lighthmr_ros.web import WebSettings, create_app

    settings = WebSettings(config=DEFAULT_CONFIG, device="cpu", image_size=WEB_IMAGE_SIZE, static_dir=str(tmp_path))
    app = create_app(None, settings)
    with TestClient(app) as client:
        first = client.get("/api/health").json()
        assert first["status"] in ("loading", "ok")
        if first["status"] == "loading":
            assert _predict(client, astronaut_png).status_code == 503
        deadline = time.monotonic() + 600
        while client.get("/api/health").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get("/api/health").json()["status"] == "ok"
        assert _predict(client, astronaut_png, det_threshold=0.0, max_humans=1).status_code == 200
