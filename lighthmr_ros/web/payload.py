"""JSON shapes of the web API: typed arrays as base64, humans, mesh topology.

Meshes dominate the answer (about 14 k vertices a person for Anny), so arrays travel as
little-endian base64 typed arrays, which the browser wraps in a Float32Array / Uint32Array
without parsing numbers; the faces are sent once per body model (``GET /api/topology``).
"""
from __future__ import annotations

import base64
import hashlib
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from lighthmr_ros.human import Human
from lighthmr_ros.ros.fov_estimate import DEFAULT_SETTLE_FRAMES  # plain Python: no ROS needed


class EncodedArray(BaseModel):
    """A typed array: ``data`` is base64 of the C-ordered little-endian bytes."""

    dtype: Literal["float32", "uint32"]
    shape: list[int]
    data: str = Field(description="base64 of the little-endian array bytes")


class HumanOut(BaseModel):
    """One person, in the original image's pixels and camera optical frame (x right, y down, z forward, m)."""

    id: int
    score: float
    center_2d: list[float]
    translation: list[float] = Field(description="pelvis position in metres, camera optical frame")
    joints: EncodedArray = Field(description="(K, 3) float32, metres")
    joints_2d: EncodedArray = Field(description="(K, 2) float32, image pixels")
    pose: EncodedArray = Field(description="(J, 3) float32 axis-angle, global orientation first")
    shape: EncodedArray
    vertices: EncodedArray | None = Field(default=None, description="(V, 3) float32, metres")


class Timing(BaseModel):
    queue_ms: float
    decode_ms: float
    inference_ms: float
    total_ms: float


class PredictResponse(BaseModel):
    width: int
    height: int
    K: list[list[float]] = Field(description="3x3 intrinsics used, original image pixels")
    K_source: Literal["fov", "estimated", "given"] = Field(
        "fov", description="where K came from: fov (fov_deg, or 60 degrees for models without a camera head) "
        "or estimated (the model's own field of view, with fov_deg auto)")
    fov_deg: float = Field(description="field of view of K across the larger image side (degrees)")
    fov_estimate_deg: float | None = Field(
        None, description="the model's own field-of-view estimate for this image (degrees across the larger side), "
        "also when K came from a given fov_deg (the camera head reads the image only); null for models without "
        "a camera head. The page's live mode keeps the median of the first fov_estimate_frames (GET /api/health) "
        "estimates of frames with people and then sends it as fov_deg")
    det_threshold: float
    body_model: str
    topology_etag: str = Field(description="ETag of GET /api/topology for this body model")
    humans: list[HumanOut]
    timing: Timing


class TopologyResponse(BaseModel):
    body_model: str
    etag: str
    num_vertices: int
    faces: EncodedArray = Field(description="(F, 3) uint32 vertex indices")
    joint_names: list[str]
    joint_parents: list[int]


class HealthResponse(BaseModel):
    status: Literal["ok", "loading", "error"]
    version: str
    message: str | None = None
    body_model: str | None = None
    device: str | None = None
    precision: str | None = Field(None, description="the precision the network runs in (fp32, fp16, bf16, int8)")
    precision_reason: str | None = Field(None, description="what was picked and why, in one line "
                                         "(e.g. 'auto -> fp32: this CPU has no native bf16 (CPU AVX2), ...')")
    notice: str | None = Field(None, description="what the model is, when users must know before trusting it "
                               "(the bundled synthetic-only demo model: not trained on real people; "
                               "the page shows it as a banner)")
    busy: bool = Field(description="a prediction is running now")
    pending: int = Field(description="predictions running or waiting")
    max_upload_bytes: int
    max_pixels: int
    det_threshold: float = Field(description="default detection threshold of this server")
    fov_deg: float = Field(description="default field of view of this server (degrees; the fallback when "
                           "fov_auto)")
    fov_auto: bool = Field(False, description="requests without fov_deg (or with fov_deg=auto) get K from the "
                           "model's own field-of-view estimate")
    fov_estimate_frames: int = Field(DEFAULT_SETTLE_FRAMES, description="frames with people whose median estimate "
                                     "becomes a live stream's fixed field of view (the ROS node's fov_estimate_frames "
                                     "rule; the page applies it to its webcam stream)")


def encode_array(array: np.ndarray, dtype: str = "float32") -> EncodedArray:
    """Base64 of a C-ordered little-endian array."""
    arr = np.ascontiguousarray(np.asarray(array), dtype=np.dtype(dtype).newbyteorder("<"))
    return EncodedArray(dtype=dtype, shape=list(arr.shape), data=base64.b64encode(arr.tobytes()).decode("ascii"))


def decode_array(encoded: dict | EncodedArray) -> np.ndarray:
    """Inverse of encode_array (used by clients and tests)."""
    enc = encoded if isinstance(encoded, EncodedArray) else EncodedArray(**encoded)
    flat = np.frombuffer(base64.b64decode(enc.data), dtype=np.dtype(enc.dtype).newbyteorder("<"))
    return flat.reshape(enc.shape)


def human_out(human: Human, with_vertices: bool = True) -> HumanOut:
    return HumanOut(
        id=int(human.id),
        score=float(human.score),
        center_2d=[float(v) for v in np.asarray(human.center_2d).reshape(-1)[:2]],
        translation=[float(v) for v in np.asarray(human.translation).reshape(-1)[:3]],
        joints=encode_array(human.joints),
        joints_2d=encode_array(human.joints_2d),
        pose=encode_array(human.pose),
        shape=encode_array(np.asarray(human.shape).reshape(-1)),
        vertices=encode_array(human.vertices) if with_vertices and human.vertices is not None else None,
    )


def topology_etag(body_model: str, faces: np.ndarray) -> str:
    """A strong ETag that changes whenever the faces (or the body model) change."""
    digest = hashlib.sha256(body_model.encode() + np.ascontiguousarray(faces, dtype="<u4").tobytes())
    return f'"{body_model}-{digest.hexdigest()[:16]}"'


def topology_out(body_model: str, faces: np.ndarray, num_vertices: int, joint_names, joint_parents) -> TopologyResponse:
    return TopologyResponse(
        body_model=body_model,
        etag=topology_etag(body_model, faces),
        num_vertices=int(num_vertices),
        faces=encode_array(faces, "uint32"),
        joint_names=[str(n) for n in joint_names],
        joint_parents=[int(p) for p in joint_parents],
    )
