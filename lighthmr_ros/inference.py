"""Predictor: RGB images (any size) + intrinsics -> Human records in the original image's frame.

Each image is resized keeping its aspect ratio and padded to the network's S x S square; its K
is mapped by the same affine pixel transform, so the camera frame is unchanged: 3D outputs need
no correction and 2D outputs are the projections with the original K (equivalently, the network
pixels mapped back through the inverse transform).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lighthmr_ros.device import PrecisionChoice, cpu_has_native, resolve_device, resolve_precision
from lighthmr_ros.errors import ConfigError, ImageError
from lighthmr_ros.human import Human
from lighthmr_ros.model import HMRModel, create_model
from lighthmr_ros.model.camera import default_K as _default_K
from lighthmr_ros.model.camera import focal_from_fov, fov_from_K, project
from lighthmr_ros.model.checkpoint import load_checkpoint, model_notice
from lighthmr_ros.model.hmr import Detections
from lighthmr_ros.perf import keep_freed_memory, optimize_for_inference, torch_threads
from lighthmr_ros.preprocess import IMAGENET_MEAN, IMAGENET_STD, Letterbox, as_rgb, letterbox, letterbox_geometry

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "lighthmr_default.pt"
DEFAULT_CONFIG = "lighthmr_tinyvit5m"
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class CameraUsed:
    """The intrinsics one image was processed with, in its original pixels, and where they came from:
    "given" (the caller's K), "fov" (``fov_deg`` across the larger side, or 60 degrees for models
    without a camera head) or "estimated" (the Anny teacher's own field-of-view estimate).

    ``fov_estimate_deg``: what the model's camera head regressed from this image (degrees across the
    larger side), whichever K was used: the head reads the image only, never K, so a caller that runs
    the network with a K of its own still gets the estimate (lighthmr_ros.ros.fov_estimate). None for
    models without a camera head."""

    K: np.ndarray  # (3, 3)
    source: str
    width: int
    height: int
    fov_estimate_deg: float | None = None

    @property
    def estimated(self) -> bool:
        return self.source == "estimated"

    @property
    def fov_deg(self) -> float:
        """Field of view across the larger image side (as ``fov_deg`` is meant everywhere)."""
        return fov_from_K(self.K, self.width, self.height)


def _per_image_K(K, count: int) -> list:
    """One K (or None) per image from None, a 3x3 matrix, a (B, 3, 3) stack or a list."""
    if K is None:
        return [None] * count
    if torch.is_tensor(K):
        K = K.detach().cpu().numpy()
    try:
        arr = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):  # a list holding None entries
        arr = None
    if arr is not None and arr.ndim == 2:
        return [arr] * count
    Ks = (
        list(arr)
        if arr is not None and arr.ndim == 3
        else [None if k is None else np.asarray(k, dtype=np.float64) for k in K]
    )
    if len(Ks) != count:
        raise ImageError(f"got {count} images but {len(Ks)} intrinsic matrices")
    return Ks


class Predictor:
    """Run a student or teacher on images; outputs in each original image's pixels and camera frame.

    Args:
        checkpoint: a lighthmr or official Multi-HMR(-Anny) checkpoint file, the name of a downloaded
            official one (``lighthmr download``), or a model instance (HMRModel, MultiHMRAnny).
        config: a model name to build untrained (ignored when a checkpoint is given).
        device: "auto", "cpu", "cuda" or "cuda:N". precision: "fp32", "fp16" or "bf16" (torch), "auto"
            (bf16 where the CPU multiplies bf16 natively, fp16 on CUDA, fp32 otherwise: see
            lighthmr_ros.device), or "int8" (onnxruntime backend only: int8 weights in the network's
            matrix products, ~1.4x faster on CPU). ``precision_reason`` says what was picked and why.
        body_model: body model name (or instance) for an untrained student.
        smplx_model_dir: folder with SMPLX_NEUTRAL.npz (SMPL-X models, teachers).
        image_size: network input side for an untrained model (default: the config's).
        backend: "torch" or "onnxruntime" (network in onnxruntime on the CPU, body model in torch;
            see lighthmr_ros.onnx_backend). onnx_dir: a `lighthmr export --onnx` folder for it
            (default: export the model to a temporary folder at start-up).
    With neither checkpoint nor config: the bundled default checkpoint if installed, otherwise an
    untrained student with a loud warning (its outputs are meaningless).
    """

    def __init__(
        self,
        checkpoint: str | Path | HMRModel | None = None,
        config: str | None = None,
        device: str = "auto",
        precision: str = "fp32",
        body_model=None,
        smplx_model_dir: str | Path | None = None,
        image_size: int | None = None,
        backend: str = "torch",
        onnx_dir: str | Path | None = None,
    ):
        if precision == "int8" and backend != "onnxruntime":
            raise ConfigError(
                "int8 runs in the onnxruntime backend only: use backend='onnxruntime' with precision='int8'"
            )
        if precision not in PRECISIONS and precision not in ("int8", "auto"):
            raise ConfigError(
                f"unknown precision {precision!r}; use auto, {', '.join(PRECISIONS)} or int8 (onnxruntime)"
            )
        self.device = resolve_device(device)
        if backend == "onnxruntime" and precision == "auto":  # onnxruntime graphs run fp32 or int8 only
            choice = PrecisionChoice("fp32", "auto -> fp32: the onnxruntime backend runs fp32 (int8 is explicit)")
        else:
            choice = resolve_precision(precision, self.device)
        self.precision = choice.name
        self.precision_reason = choice.reason  # one line: what runs and why (node log, /api/health)
        if (
            self.device.type == "cpu"
            and backend == "torch"
            and self.precision in ("fp16", "bf16")
            and not cpu_has_native(self.precision)
        ):
            log.warning(
                "%s on this CPU is emulated (no %s instructions): expect it slower than fp32; "
                "precision='auto' picks fp32 here",
                self.precision,
                "AVX512-BF16 / AMX" if self.precision == "bf16" else "AMX-FP16",
            )
        if checkpoint is None and config is None and DEFAULT_CHECKPOINT.is_file():
            checkpoint = DEFAULT_CHECKPOINT
        if isinstance(checkpoint, torch.nn.Module):
            model = checkpoint
        elif checkpoint is not None:
            model = load_checkpoint(
                checkpoint,
                smplx_model_dir=smplx_model_dir,
                body_model=body_model if isinstance(body_model, torch.nn.Module) else None,
            )
        else:
            name = config or DEFAULT_CONFIG
            log.warning(
                "NO TRAINED WEIGHTS: building an untrained %s model (random weights, meaningless outputs); "
                "pass a checkpoint (lighthmr train/distill, or an official Multi-HMR file) for real predictions",
                name,
            )
            sized: dict[str, Any] = {"image_size": image_size} if image_size else {}
            model = create_model(name, body_model=body_model, smplx_model_dir=smplx_model_dir, **sized)
        if image_size and image_size != model.config.image_size:
            raise ConfigError(
                f"this checkpoint runs at {model.config.image_size} px, not {image_size}; "
                "drop image_size or use a matching checkpoint"
            )
        self.model = model.to(self.device).eval()
        if not isinstance(checkpoint, torch.nn.Module):  # our own copy: fold BatchNorms, ... (perf)
            optimize_for_inference(self.model, self.device)
        if self.device.type == "cpu":  # process-wide: reuse freed activations instead of page-faulting them in again
            keep_freed_memory()
        self.image_size = model.config.image_size
        self.backend = backend
        # The Anny teacher regresses its camera: with neither K nor a set fov_deg it builds K itself.
        self.estimates_camera = model.config.family == "multihmr_anny"
        if backend == "onnxruntime" and self.estimates_camera:
            raise ConfigError("the Anny teacher runs in the torch backend only; drop backend='onnxruntime'")
        self._net = self.model  # what predict() calls: the torch model, or its onnxruntime stand-in
        if backend == "onnxruntime":  # OnnxHMR refuses precisions it does not run (fp16, bf16)
            from lighthmr_ros.onnx_backend import OnnxHMR

            self._net = OnnxHMR(self.model, onnx_dir, precision=self.precision)
        elif backend != "torch":
            raise ConfigError(f"unknown backend {backend!r}; use 'torch' or 'onnxruntime'")
        spec = model.body.spec
        self.body_model_name = spec.name
        self.faces = model.body.faces.detach().cpu().numpy().astype(np.int64)
        self.joint_names = list(spec.joint_names)
        self.joint_parents = list(spec.joint_parents)
        self.num_vertices = spec.num_vertices
        # What every front end says about this model (a synthetic-only demo checkpoint), or None.
        self.notice = model_notice(model)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def default_K(width: int, height: int, fov_deg: float = 60.0) -> np.ndarray:
        """K with ``fov_deg`` across the larger image side, principal point at the image centre."""
        return _default_K(width, height, fov_deg).numpy().astype(np.float64)

    def estimated_K(self, width: int, height: int, fov_deg: float) -> np.ndarray:
        """The K the model's camera head builds from a field of view of ``fov_deg`` (across the larger side),
        in the original image's pixels: ``predict_with_camera``'s estimated K for an image of this size
        whose estimate is ``fov_deg``. (Its principal point is the network square's centre mapped back,
        a fraction of a pixel from ``default_K``'s.)"""
        if not (math.isfinite(fov_deg) and 0.0 < fov_deg < 180.0):
            raise ImageError(f"a field of view must lie between 0 and 180 degrees, got {fov_deg!r}")
        size = self.image_size
        focal = focal_from_fov(fov_deg, size)
        K_net = np.array([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
        return letterbox_geometry(width, height, size).unmap_K(K_net)

    def autocast(self):
        """The autocast context of this Predictor's precision (a no-op for fp32 and int8)."""
        if self.precision not in ("fp16", "bf16"):  # fp32; int8 (onnxruntime) has its own graphs
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=PRECISIONS[self.precision])

    def prepare(
        self, images: list, Ks: list, fov_deg: float = 60.0
    ) -> tuple[torch.Tensor, torch.Tensor, list[Letterbox], np.ndarray]:
        """(B,3,S,S) normalised batch, (B,3,3) network K, the letterboxes and the original Ks (B,3,3)."""
        squares, boxes, K_net, K_orig = [], [], [], []
        for img, K in zip(images, Ks, strict=False):
            rgb = as_rgb(img)
            h, w = rgb.shape[:2]
            K = self.default_K(w, h, fov_deg) if K is None else np.asarray(K, dtype=np.float64)
            if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
                raise ImageError(
                    f"K must be a finite 3x3 intrinsic matrix with positive focal lengths, got {K.tolist()}"
                )
            square, box = letterbox(rgb, self.image_size)
            squares.append(square)
            boxes.append(box)
            K_net.append(box.map_K(K))
            K_orig.append(K)
        batch = torch.from_numpy(np.stack(squares)).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        batch = (batch - self._mean) / self._std
        return batch, torch.tensor(np.stack(K_net), dtype=torch.float32, device=self.device), boxes, np.stack(K_orig)

    def to_humans(
        self, det: Detections, boxes: list[Letterbox], K_orig: np.ndarray, with_vertices: bool = True
    ) -> list[list[Human]]:
        """Split stacked detections per image, mapping 2D outputs to original pixels."""
        per_image: list[list[Human]] = [[] for _ in boxes]
        if len(det) == 0:
            return per_image
        b = det.batch_index.cpu().numpy()
        K = torch.as_tensor(K_orig, dtype=torch.float64)[det.batch_index.cpu()]
        joints = det.joints.detach().cpu().double()
        joints_2d = project(joints, K).numpy()  # same as un-letterboxing det.joints_2d, without rounding
        A = np.array([[bx.sx, bx.sy, bx.tx, bx.ty] for bx in boxes])[b]
        centre = (det.loc.detach().cpu().double().numpy() - A[:, 2:]) / A[:, :2]
        arrays = {
            "score": det.score.detach().float().cpu().numpy(),
            "translation": det.transl_pelvis.detach().float().cpu().numpy(),
            "primary": det.transl.detach().float().cpu().numpy(),
            "dist": det.dist.detach().float().cpu().numpy(),
            "pose": det.rotvec.detach().float().cpu().numpy(),
            "shape": det.shape.detach().float().cpu().numpy(),
            "expression": det.expression.detach().float().cpu().numpy(),
            "joints": joints.float().numpy(),
        }
        verts = det.vertices.detach().float().cpu().numpy() if with_vertices and det.vertices is not None else None
        for p in range(len(b)):
            img = int(b[p])
            per_image[img].append(
                Human(
                    id=len(per_image[img]),
                    score=float(arrays["score"][p]),
                    center_2d=centre[p].astype(np.float32),
                    translation=arrays["translation"][p],
                    pose=arrays["pose"][p],
                    shape=arrays["shape"][p],
                    expression=arrays["expression"][p],
                    joints=arrays["joints"][p],
                    joints_2d=joints_2d[p].astype(np.float32),
                    vertices=None if verts is None else verts[p],
                    body_model=self.body_model_name,
                    extras={"primary_keypoint": arrays["primary"][p], "distance": float(arrays["dist"][p])},
                )
            )
        return per_image

    # ------------------------------------------------------------------ main entry
    def predict(
        self,
        image,
        K=None,
        fov_deg: float | str | None = "auto",
        det_threshold: float = 0.5,
        nms_kernel: int | None = None,
        max_humans: int = 20,
        with_vertices: bool = True,
    ):
        """Humans of one image (list[Human]) or of a list of images (list of lists), in one forward.

        ``K``: 3x3 intrinsics of the original image (one, or one per image). Where K is None:
        ``fov_deg`` (degrees across the larger side, principal point at the centre), or with
        ``fov_deg="auto"`` (or None) the model's own estimate when it has one (the Anny teacher),
        60 degrees otherwise. ``predict_with_camera`` also returns the K each image used.
        """
        humans, _ = self.predict_with_camera(image, K, fov_deg, det_threshold, nms_kernel, max_humans, with_vertices)
        return humans

    def predict_with_camera(
        self,
        image,
        K=None,
        fov_deg: float | str | None = "auto",
        det_threshold: float = 0.5,
        nms_kernel: int | None = None,
        max_humans: int = 20,
        with_vertices: bool = True,
    ):
        """``predict``'s humans and the CameraUsed of each image (one, or a list for a list of images)."""
        single = not isinstance(image, (list, tuple))
        images = [image] if single else list(image)
        if not images:
            return [], []
        Ks = _per_image_K(K, len(images))
        auto = fov_deg is None or (isinstance(fov_deg, str) and fov_deg.lower() == "auto")
        fov = 60.0 if auto else fov_deg
        if not isinstance(fov, (int, float)) or not (math.isfinite(fov) and 1.0 < fov < 179.0):
            raise ImageError(f"fov_deg must be 'auto' or between 1 and 179 degrees, got {fov_deg!r}")
        estimate = [auto and self.estimates_camera and k is None for k in Ks]
        # onnxruntime: no torch OpenMP workers left spinning when its encoder starts (lighthmr_ros.perf.torch_threads)
        with torch_threads(1) if self.backend == "onnxruntime" else contextlib.nullcontext():
            batch, K_net, boxes, K_orig = self.prepare(images, Ks, float(fov))
        extra = {"estimate_K": torch.tensor(estimate, device=self.device)} if any(estimate) else {}
        with torch.inference_mode(), self.autocast():
            det = self._net(
                batch,
                K_net,
                det_threshold=det_threshold,
                nms_kernel=nms_kernel,
                max_humans=max_humans,
                with_vertices=with_vertices,
                **extra,
            )
        # The camera head's K per image (whichever K the decoder used), in the original image's pixels.
        regressed = getattr(det, "K_regressed", None)
        fovs: list[float | None] = [None] * len(images)
        for i, box in enumerate(boxes):
            if regressed is None and not estimate[i]:
                continue
            K_est = box.unmap_K((det.K if regressed is None else regressed)[i].detach().double().cpu().numpy())
            fovs[i] = fov_from_K(K_est, box.width, box.height)
            if estimate[i]:
                K_orig[i] = K_est
        sources = [
            "estimated" if e else ("given" if k is not None else "fov") for e, k in zip(estimate, Ks, strict=True)
        ]
        cameras = [
            CameraUsed(K_orig[i].copy(), src, boxes[i].width, boxes[i].height, fovs[i]) for i, src in enumerate(sources)
        ]
        humans = self.to_humans(det, boxes, K_orig, with_vertices)
        return (humans[0], cameras[0]) if single else (humans, cameras)

    __call__ = predict
