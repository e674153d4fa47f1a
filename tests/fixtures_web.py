"""Fixtures of the web demo: sample uploads, a real Predictor, a live ``lighthmr serve``, an app served
from a thread, and the headless-Chromium check (web/tests/browser.mjs)."""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from lighthmr_ros.procs import stop_process

REPO = Path(__file__).resolve().parent.parent
WEB_IMAGE_SIZE = 224  # small network input: the HTTP layer is under test, not accuracy
ARTIFACTS = Path(os.environ.get("LIGHTHMR_TEST_ARTIFACTS", REPO / "test-artifacts")) / "web"
BROWSER_SCRIPT = REPO / "web" / "tests" / "browser.mjs"


def encode_image(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A small valid PNG whose header is rewritten to declare width x height (a decompression bomb's header)."""
    data = bytearray(encode_image(np.zeros((8, 8, 3), np.uint8)))
    # signature (8) + length (4) + b"IHDR" (4) + width, height ...; the CRC follows the 13 data bytes
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    """A real photo of a person shipped with scikit-image (512 x 512 RGB)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def astronaut_png(astronaut_rgb) -> bytes:
    return encode_image(astronaut_rgb)


@pytest.fixture(scope="session")
def astronaut_file(astronaut_png, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("web") / "astronaut.png"
    path.write_bytes(astronaut_png)
    return path


@pytest.fixture(scope="session")
def web_predictor():
    """The real Predictor: the default student (untrained, Anny body) on CPU with a small input."""
    from lighthmr_ros.inference import DEFAULT_CONFIG, Predictor

    return Predictor(config=DEFAULT_CONFIG, device="cpu", image_size=WEB_IMAGE_SIZE)


@pytest.fixture
def web_app_factory(web_predictor, tmp_path):
    """Build the app around the shared predictor; settings override WebSettings fields."""
    from lighthmr_ros.web import WebSettings, create_app

    def make(predictor=web_predictor, **settings):
        settings.setdefault("static_dir", str(tmp_path / "no-static"))
        return create_app(predictor, WebSettings(**settings))

    return make


@pytest.fixture
def web_client(web_app_factory):
    from fastapi.testclient import TestClient

    with TestClient(web_app_factory()) as client:
        yield client


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """``lighthmr serve`` as a user runs it (default model, CPU) on a free localhost port; yields its URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "lighthmr_ros.cli", "serve", "--port", str(port), "--device", "cpu"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                pytest.fail(f"lighthmr serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/api/health", timeout=2).json()["status"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"lighthmr serve did not answer within 600 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process(process)


@contextmanager
def serve_app(app) -> Iterator[str]:
    """Serve a FastAPI app with uvicorn from a thread of this process (real HTTP); yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start within 60 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def browser_prerequisites() -> tuple[str, str]:
    """Chromium and node for web/tests/browser.mjs, or skip saying what is missing."""
    from lighthmr_ros.web import STATIC_DIR

    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    node = shutil.which("node")
    if not chromium:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; make test installs it)")
    if not node:
        pytest.skip("Node.js is not installed (needed to drive Chromium with playwright-core)")
    if not (STATIC_DIR / "index.html").is_file():
        pytest.skip("the front end is not built (run scripts/build_web.sh; make test builds it)")
    if not (REPO / "web" / "node_modules" / "playwright-core").is_dir():
        pytest.skip("web/node_modules is missing (run scripts/build_web.sh; make test runs it)")
    return chromium, node


def run_browser(*args: str, timeout: float = 400) -> dict:
    """Run web/tests/browser.mjs with these arguments (Chromium found here); its JSON report."""
    chromium, node = browser_prerequisites()
    run = subprocess.run([node, str(BROWSER_SCRIPT), *args, "--chromium", chromium],
                         capture_output=True, text=True, timeout=timeout, cwd=REPO)
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report from the browser script (rc {run.returncode}):\n{run.stdout}\n{run.stderr}"
    report = json.loads(lines[-1])
    report["returncode"] = run.returncode
    return report
