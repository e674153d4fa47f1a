"""The browser demo's FastAPI application.

``create_app(predictor=None, settings=WebSettings())`` builds the app; without a predictor one is
loaded in the background at start-up (``/api/health`` says "loading" meanwhile), so
``uvicorn --factory lighthmr_ros.web:create_app`` works too. Inference and image decoding run
in worker threads under one lock: the event loop stays free, so health checks and the front end
answer while a prediction runs, and a bounded number of requests may wait (then 503).
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from lighthmr_ros import __version__
from lighthmr_ros.ros.fov_estimate import DEFAULT_SETTLE_FRAMES  # plain Python: no ROS needed
from lighthmr_ros.web.payload import (
    HealthResponse,
    PredictResponse,
    Timing,
    TopologyResponse,
    human_out,
    topology_out,
)
from lighthmr_ros.web.uploads import UploadError, decode_image, parse_multipart, read_body

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, headers and small fields beside the image


@dataclass(frozen=True)
class WebSettings:
    """What the demo loads and the limits it enforces on uploads."""

    checkpoint: str | None = None
    config: str | None = None
    body_model: str | None = None
    device: str = "auto"
    smplx_model_dir: str | None = None
    image_size: int | None = None
    backend: str = "torch"
    precision: str = "fp32"
    onnx_dir: str | None = None
    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_waiting: int = 4
    max_humans: int = 20
    cors_origins: tuple[str, ...] = ()
    static_dir: str | None = None
    det_threshold: float = 0.5
    fov_deg: float | str = "auto"  # degrees, or "auto": the model's own estimate where it has one, else 60
    # The page's live (webcam) mode: the median of the estimates of this many frames with people, then fixed
    # (the rule of the ROS node's fov_estimate stable, lighthmr_ros.ros.fov_estimate; the same default).
    fov_estimate_frames: int = DEFAULT_SETTLE_FRAMES


@dataclass(frozen=True)
class PredictParams:
    det_threshold: float
    fov_deg: float | str  # degrees or "auto"
    max_humans: int
    with_vertices: bool


class InferenceWorker:
    """Runs one prediction at a time in a worker thread; counts what is running or waiting."""

    def __init__(self, predictor: Any, max_waiting: int = 4):
        self.predictor = predictor
        self.max_waiting = max_waiting
        self.pending = 0  # changed on the event loop only
        self._lock = threading.Lock()
        self.body_model = str(predictor.body_model_name)
        faces = np.asarray(predictor.faces)
        self.topology = topology_out(
            self.body_model,
            faces,
            int(getattr(predictor, "num_vertices", int(faces.max()) + 1)),
            getattr(predictor, "joint_names", []),
            getattr(predictor, "joint_parents", []),
        )
        self.topology_json = self.topology.model_dump_json().encode()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def predict(self, data: bytes, params: PredictParams, max_pixels: int) -> PredictResponse:
        if self.pending > self.max_waiting:
            raise BusyError()
        self.pending += 1
        try:
            return await run_in_threadpool(self._predict, data, params, max_pixels)
        finally:
            self.pending -= 1

    def _predict(self, data: bytes, params: PredictParams, max_pixels: int) -> PredictResponse:
        t0 = time.perf_counter()
        image = decode_image(data, max_pixels)
        height, width = image.shape[:2]
        t1 = time.perf_counter()
        with self._lock:
            t2 = time.perf_counter()
            # K from fov_deg, or with "auto" from the model's own field of view (60 degrees for models without)
            humans, camera = self.predictor.predict_with_camera(
                image,
                fov_deg=params.fov_deg,
                det_threshold=params.det_threshold,
                max_humans=params.max_humans,
                with_vertices=params.with_vertices,
            )
            t3 = time.perf_counter()
        out = [human_out(h, params.with_vertices) for h in humans]
        t4 = time.perf_counter()
        return PredictResponse(
            width=width,
            height=height,
            K=np.asarray(camera.K, dtype=float).tolist(),
            K_source=camera.source,
            fov_deg=camera.fov_deg,
            fov_estimate_deg=camera.fov_estimate_deg,  # this image's own, whichever K was used
            det_threshold=params.det_threshold,
            body_model=self.body_model,
            topology_etag=self.topology.etag,
            humans=out,
            timing=Timing(
                queue_ms=1e3 * (t2 - t1),
                decode_ms=1e3 * (t1 - t0),
                inference_ms=1e3 * (t3 - t2),
                total_ms=1e3 * (t4 - t0),
            ),
        )


class BusyError(Exception):
    """Too many predictions running or waiting."""


def build_predictor(settings: WebSettings):
    """The Predictor the settings describe (imported here: it pulls in torch and the model)."""
    from lighthmr_ros.inference import Predictor

    return Predictor(
        checkpoint=settings.checkpoint,
        config=settings.config,
        body_model=settings.body_model,
        device=settings.device,
        smplx_model_dir=settings.smplx_model_dir,
        image_size=settings.image_size,
        backend=settings.backend,
        precision=settings.precision,
        onnx_dir=settings.onnx_dir,
    )


def _float_field(fields: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = fields.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UploadError(f"The field '{name}' must be a number, got {raw[:40]!r}.", 422) from None
    if not (math.isfinite(value) and low <= value <= high):
        raise UploadError(f"The field '{name}' must lie in [{low:g}, {high:g}], got {value:g}.", 422)
    return value


def _fov_field(fields: dict[str, str], default: float | str) -> float | str:
    """The form's fov_deg: "auto" (the model's own estimate) or degrees in [10, 170]; ``default`` if absent."""
    raw = fields.get("fov_deg")
    if raw is not None and raw.strip().lower() == "auto":
        return "auto"
    if raw is None or raw.strip() == "":
        return default
    return _float_field(fields, "fov_deg", 60.0, 10.0, 170.0)


def parse_params(fields: dict[str, str], settings: WebSettings) -> PredictParams:
    """Validate the form fields beside the image."""
    with_vertices = fields.get("with_vertices", "true").strip().lower()
    if with_vertices not in ("true", "false", "1", "0"):
        raise UploadError("The field 'with_vertices' must be true or false.", 422)
    return PredictParams(
        det_threshold=_float_field(fields, "det_threshold", settings.det_threshold, 0.0, 1.0),
        fov_deg=_fov_field(fields, settings.fov_deg),
        max_humans=int(_float_field(fields, "max_humans", settings.max_humans, 1, settings.max_humans)),
        with_vertices=with_vertices in ("true", "1"),
    )


PREDICT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "format": "binary", "description": "JPEG, PNG, WebP or BMP"},
                    "det_threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
                    "fov_deg": {"oneOf": [{"type": "number", "minimum": 10, "maximum": 170},
                                          {"type": "string", "enum": ["auto"]}], "default": "auto",
                                "description": "field of view across the larger image side, used to build K; "
                                               "auto: the model's own estimate where it has one (the "
                                               "Multi-HMR-Anny teacher), 60 degrees otherwise"},
                    "max_humans": {"type": "integer", "minimum": 1},
                    "with_vertices": {"type": "boolean", "default": True},
                },
            }
        }
    },
}


class ModelState:
    """The app's model: "loading" (built in the background at start-up), "ok" with its worker, or "error"."""

    def __init__(self, worker: InferenceWorker | None = None):
        self.worker = worker
        self.status = "ok" if worker is not None else "loading"
        self.message: str | None = None

    async def load(self, settings: WebSettings) -> None:
        """Build the Predictor in a thread; a failure is kept for /api/health and /api/predict to report."""
        try:
            built = await asyncio.to_thread(build_predictor, settings)
            self.worker, self.status = InferenceWorker(built, settings.max_waiting), "ok"
            log.info("model ready: %s on %s", self.worker.body_model, getattr(built, "device", "?"))
        except Exception as exc:  # reported by /api/health and /api/predict
            log.error("cannot load the model: %s", exc)
            self.status, self.message = "error", str(exc)

    def ready_worker(self) -> InferenceWorker:
        if self.worker is None:
            raise _Unavailable(self.message or "The model is still loading; retry in a few seconds.")
        return self.worker


def create_app(predictor: Any = None, settings: WebSettings | None = None) -> FastAPI:
    """The demo app; ``predictor`` (a lighthmr_ros.inference.Predictor) is loaded from settings if None."""
    settings = settings or WebSettings()
    model = ModelState(InferenceWorker(predictor, settings.max_waiting) if predictor is not None else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(model.load(settings)) if model.worker is None else None
        yield
        if task is not None and not task.done():
            task.cancel()

    app = FastAPI(
        title="lighthmr_ros demo",
        version=__version__,
        description="Multi-person 3D human mesh recovery from one image. Arrays are base64 typed arrays.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.model = model
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "If-None-Match"],
        )
    _add_error_handlers(app)
    _add_model_routes(app, model, settings)
    _add_predict_route(app, model, settings)
    _add_front_end(app, settings)  # last: it serves "/" and everything the API does not
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Our exceptions -> JSON ``{"detail": ...}`` with the status (and Retry-After) a client can act on."""

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(BusyError)
    async def busy_error(request: Request, exc: BusyError) -> JSONResponse:
        return JSONResponse(
            {"detail": "The server is busy with other predictions; retry in a moment."},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(_Unavailable)
    async def unavailable(request: Request, exc: _Unavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


def _add_model_routes(app: FastAPI, model: ModelState, settings: WebSettings) -> None:
    """/api/health (answers while predictions run) and /api/topology (cached by ETag)."""

    @app.get("/api/health", response_model=HealthResponse, tags=["api"])
    async def health() -> HealthResponse:
        """Liveness and model state; answers while predictions run."""
        worker = model.worker
        return HealthResponse(
            status=model.status,
            version=__version__,
            message=model.message,
            body_model=worker.body_model if worker else None,
            device=str(getattr(worker.predictor, "device", "")) if worker else None,
            precision=getattr(worker.predictor, "precision", None) if worker else None,
            precision_reason=getattr(worker.predictor, "precision_reason", None) if worker else None,
            notice=getattr(worker.predictor, "notice", None) if worker else None,
            busy=worker.busy if worker else False,
            pending=worker.pending if worker else 0,
            max_upload_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
            det_threshold=settings.det_threshold,
            fov_deg=60.0 if _auto(settings.fov_deg) else float(settings.fov_deg),
            fov_auto=_auto(settings.fov_deg) and bool(getattr(worker.predictor, "estimates_camera", False))
            if worker else _auto(settings.fov_deg),
            fov_estimate_frames=settings.fov_estimate_frames,
        )

    @app.get("/api/topology", response_model=TopologyResponse, tags=["api"],
             responses={304: {"description": "unchanged since the ETag sent in If-None-Match"}})
    async def topology(request: Request) -> Response:
        """Mesh faces and skeleton of the body model; fetch once, revalidate with If-None-Match."""
        worker = model.ready_worker()
        etag = worker.topology.etag
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(worker.topology_json, media_type="application/json", headers=headers)


def _add_predict_route(app: FastAPI, model: ModelState, settings: WebSettings) -> None:
    """/api/predict: one multipart upload in, the people found in it out; limits from ``settings``."""

    responses: dict[int | str, dict[str, Any]] = {
        413: {"description": "upload or image too large"},
        415: {"description": "not an image"},
        503: {"description": "model loading or server busy"},
    }

    @app.post("/api/predict", response_model=PredictResponse, tags=["api"],
              openapi_extra={"requestBody": PREDICT_BODY}, responses=responses)
    async def predict(request: Request) -> PredictResponse:
        """Detect people in one uploaded image and recover their meshes (camera optical frame, metres)."""
        worker = model.ready_worker()
        body = await read_body(
            request.headers.get("content-length"), request.stream(), settings.max_upload_bytes + FORM_OVERHEAD
        )
        form = parse_multipart(request.headers.get("content-type"), body)
        part = form.files.get("image")
        if part is None:
            raise UploadError("The form has no file part named 'image'.", 400)
        if len(part.data) > settings.max_upload_bytes:
            size, limit = len(part.data) / 2**20, settings.max_upload_bytes / 2**20
            raise UploadError(f"The image is {size:.1f} MiB; send one under {limit:.1f} MiB.", 413)
        params = parse_params(form.fields, settings)
        return await worker.predict(part.data, params, settings.max_pixels)


def _add_front_end(app: FastAPI, settings: WebSettings) -> None:
    """The built front end at "/", or a page saying how to build it."""
    static_dir = Path(settings.static_dir) if settings.static_dir else STATIC_DIR
    if (static_dir / "index.html").is_file():
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="static")
        return

    @app.get("/", include_in_schema=False)
    async def not_built() -> HTMLResponse:
        return HTMLResponse(
            "<h1>lighthmr demo</h1><p>The front end is not built: run <code>scripts/build_web.sh</code>"
            " (or <code>make demo</code>). The API works: see <a href='/docs'>/docs</a>.</p>",
            status_code=503,
        )


def _auto(fov_deg: float | str) -> bool:
    return isinstance(fov_deg, str) and fov_deg.strip().lower() == "auto"


class _Unavailable(Exception):
    """The model is not loaded (yet, or it failed)."""
