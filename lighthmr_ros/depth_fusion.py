"""RGB-D depth fusion: correct each person's distance with an aligned depth image.

Why: a single image fixes where a person is seen but only guesses how far (a child near the
camera and an adult farther away look alike), so the distance is the least certain part of a
monocular estimate. An RGB-D camera measures it.

How, per image: all predicted meshes are rendered into one z-buffer (lighthmr_ros.raster),
so each pixel belongs to the nearest person there: pixels where someone else is in front do not
count for the person behind (occlusion by other people). Each person's own pixels, shrunk by a
pixel at the silhouette (edges mix person and background in real sensors), are compared with the
measured depth where it is valid (missing depth: 0 or NaN, or out of the sensor's range). The
median of (measured - rendered) is how far the person must move along the optical axis; it is
used only when enough pixels agree with it (other occluders, such as furniture, or a wrong mesh
disagree) and when it is not implausibly large. The person then moves rigidly along the camera
ray through its root, so that it stays where it is seen in the image and the body model
parameters stay valid: translation, joints and vertices shift by the same vector, 2D joints are
projected again.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lighthmr_ros.errors import ConfigError, ImageError
from lighthmr_ros.human import Human

DEPTH_ENCODINGS = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}  # sensor_msgs/Image encoding -> metres/unit


@dataclass(frozen=True)
class DepthFusionParams:
    """Settings of the correction.

    min_pixels: valid, visible pixels needed (at the render scale) before a person is corrected.
    min_valid_share: share of a person's visible pixels that must hold a valid depth (a person
        mostly beyond the sensor's range or in a hole of the depth image is left alone).
    min_depth_m, max_depth_m: the sensor's trusted range; readings outside it count as missing.
    inlier_m: band around the median difference within which a pixel agrees.
    min_inlier_share: share of a person's valid pixels that must agree.
    max_correction: largest move as a share of the person's distance (a bigger one is refused).
    erode_px: pixels removed at each silhouette edge (at the render scale).
    render_scale: the z-buffer is rendered at this share of the image size (0.5: 4x fewer pixels).
    """

    min_pixels: int = 30
    min_valid_share: float = 0.3
    min_depth_m: float = 0.2
    max_depth_m: float = 10.0
    inlier_m: float = 0.15
    min_inlier_share: float = 0.5
    max_correction: float = 0.5
    erode_px: int = 1
    render_scale: float = 0.5

    def __post_init__(self) -> None:
        if self.min_pixels < 1 or self.erode_px < 0:
            raise ConfigError("depth fusion needs min_pixels >= 1 and erode_px >= 0.")
        if not 0.0 < self.min_depth_m < self.max_depth_m:
            raise ConfigError(f"depth range needs 0 < min_depth_m < max_depth_m, got {self.min_depth_m} "
                              f"and {self.max_depth_m}.")
        shares_ok = 0 <= self.min_inlier_share <= 1 and 0 <= self.min_valid_share <= 1
        if not (self.inlier_m > 0 and shares_ok and self.max_correction > 0):
            raise ConfigError("depth fusion needs inlier_m > 0, min_inlier_share and min_valid_share "
                              "in [0, 1] and max_correction > 0.")
        if not 0.05 <= self.render_scale <= 1.0:
            raise ConfigError(f"render_scale must lie in [0.05, 1], got {self.render_scale}.")


@dataclass(frozen=True)
class DepthCorrection:
    """What depth fusion did to one person.

    corrected: whether the person was moved. scale: new / old distance of the root from the
    camera (1 when not corrected). delta_m: signed move along the camera ray in metres (positive
    = farther). pixels: valid visible pixels compared. reason: why not corrected ("" if it was).
    """

    corrected: bool
    scale: float = 1.0
    delta_m: float = 0.0
    pixels: int = 0
    reason: str = ""


def depth_to_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """A depth image (16UC1/mono16 millimetres or 32FC1 metres) -> float32 metres, NaN where missing."""
    if encoding not in DEPTH_ENCODINGS:
        raise ImageError(f"depth encoding {encoding!r} is not supported: "
                         "use 16UC1 (millimetres) or 32FC1 (metres).")
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ImageError(f"a depth image has one channel (H, W), got shape {depth.shape}.")
    metres = depth.astype(np.float32) * np.float32(DEPTH_ENCODINGS[encoding])
    metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
    return metres


def render_owner_depth(humans: Sequence[Human], faces: np.ndarray, K: np.ndarray, width: int, height: int,
                       scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer of all meshes at ``scale`` x the image size: owner (h, w) int (-1 = nobody) and depth (h, w).

    Pixel (i, j) of the result covers the image point ((j + 0.5) / scale, (i + 0.5) / scale).
    """
    from lighthmr_ros.raster import rasterize

    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    sx, sy = w / width, h / height
    verts = [np.asarray(p.vertices, dtype=np.float32) for p in humans]
    if not verts:
        return np.full((h, w), -1, np.int64), np.full((h, w), np.inf, np.float32)
    v = torch.from_numpy(np.concatenate(verts))
    z = v[:, 2].clamp_min(1e-6)
    uv = torch.stack([(v[:, 0] / z * K[0, 0] + K[0, 2]) * sx, (v[:, 1] / z * K[1, 1] + K[1, 2]) * sy], 1)
    f = torch.as_tensor(np.asarray(faces, dtype=np.int64))
    nv = len(verts[0])
    all_faces = torch.cat([f + i * nv for i in range(len(verts))])
    frags = rasterize(torch.cat([uv, v[:, 2:]], 1), all_faces, h, w)
    owner = torch.where(frags.face >= 0, frags.face // len(f), torch.full_like(frags.face, -1))
    return owner.numpy(), frags.depth.numpy()


def _erode(mask: np.ndarray, px: int) -> np.ndarray:
    """Pixels whose whole (2 px + 1)^2 neighbourhood lies in the mask."""
    if px <= 0:
        return mask
    padded = np.pad(mask, px, constant_values=False)
    out = mask.copy()
    h, w = mask.shape
    for dy in range(-px, px + 1):
        for dx in range(-px, px + 1):
            out &= padded[px + dy : px + dy + h, px + dx : px + dx + w]
    return out


def _sample(depth_m: np.ndarray, shape: tuple[int, int], width: int, height: int) -> np.ndarray:
    """The measured depth at the centres of a (h, w) render grid (nearest pixel of the depth image)."""
    h, w = shape
    dh, dw = depth_m.shape
    cols = np.minimum(((np.arange(w) + 0.5) / w * dw).astype(np.int64), dw - 1)
    rows = np.minimum(((np.arange(h) + 0.5) / h * dh).astype(np.int64), dh - 1)
    return depth_m[rows[:, None], cols[None, :]]


def estimate_offsets(humans: Sequence[Human], depth_m: np.ndarray, K: np.ndarray, faces: np.ndarray,
                     width: int, height: int, params: DepthFusionParams | None = None
                     ) -> list[tuple[DepthCorrection, float]]:
    """Per person: the decision and the depth offset (m, along the optical axis; 0 when refused)."""
    p = params or DepthFusionParams()
    usable = [h.vertices is not None for h in humans]
    drawn = [h for h, ok in zip(humans, usable, strict=True) if ok]
    owner, rendered = render_owner_depth(drawn, faces, K, width, height, p.render_scale)
    measured = _sample(depth_m, owner.shape, width, height)
    in_range = np.isfinite(measured) & (measured >= p.min_depth_m) & (measured <= p.max_depth_m)
    out: list[tuple[DepthCorrection, float]] = []
    index = 0
    for human, ok in zip(humans, usable, strict=True):
        if not ok:
            out.append((DepthCorrection(False, reason="no vertices"), 0.0))
            continue
        mine = _erode(owner == index, p.erode_px)
        index += 1
        valid = mine & in_range
        count = int(valid.sum())
        if count < p.min_pixels or count < p.min_valid_share * mine.sum():
            reason = "not visible" if not mine.any() else "too few pixels with valid depth"
            out.append((DepthCorrection(False, pixels=count, reason=reason), 0.0))
            continue
        diff = (measured[valid] - rendered[valid]).astype(np.float64)
        agree = np.abs(diff - np.median(diff)) <= p.inlier_m
        if agree.mean() < p.min_inlier_share:
            refused = DepthCorrection(False, pixels=count, reason="measured depth disagrees with the mesh")
            out.append((refused, 0.0))
            continue
        offset = float(np.median(diff[agree]))
        root_z = float(np.asarray(human.translation, dtype=np.float64).reshape(3)[2])
        if root_z <= 0 or abs(offset) > p.max_correction * root_z:
            out.append((DepthCorrection(False, pixels=count, reason="correction too large"), 0.0))
            continue
        out.append((DepthCorrection(True, pixels=count), offset))
    return out


def move_along_ray(human: Human, offset_z: float, K: np.ndarray) -> tuple[Human, float, float]:
    """The person moved rigidly along the camera ray through its root by ``offset_z`` metres of depth.

    Returns the moved copy, the distance scale and the signed move (m).
    """
    t = np.asarray(human.translation, dtype=np.float64).reshape(3)
    scale = (t[2] + offset_z) / t[2]
    shift = (scale - 1.0) * t
    joints = np.asarray(human.joints, dtype=np.float64) + shift
    uvw = joints @ np.asarray(K, dtype=np.float64).T
    joints_2d = uvw[:, :2] / np.maximum(uvw[:, 2:], 1e-6)
    moved = dataclasses.replace(
        human,
        translation=(t + shift).astype(np.asarray(human.translation).dtype),
        joints=joints.astype(np.asarray(human.joints).dtype),
        joints_2d=joints_2d.astype(np.asarray(human.joints_2d).dtype),
        vertices=None if human.vertices is None else np.asarray(human.vertices) + shift.astype(np.float32),
    )
    return moved, float(scale), float(math.copysign(np.linalg.norm(shift), offset_z))


def fuse_depth(humans: Sequence[Human], depth_m: np.ndarray, K: np.ndarray, faces: np.ndarray,
               width: int, height: int, params: DepthFusionParams | None = None
               ) -> tuple[list[Human], list[DepthCorrection]]:
    """Correct every person's distance with an aligned depth image (metres, NaN/0 where missing).

    ``width`` x ``height`` is the colour image that K belongs to; the depth image must show the same
    view (aligned to colour) and may have another resolution. Each returned Human carries its
    DepthCorrection in ``extras["depth_correction"]`` as well.
    """
    depth_m = np.asarray(depth_m, dtype=np.float32)
    if depth_m.ndim != 2:
        raise ImageError(f"a depth image has one channel (H, W), got shape {depth_m.shape}.")
    if abs(depth_m.shape[1] / depth_m.shape[0] - width / height) > 0.02 * width / height:
        raise ImageError(f"the depth image ({depth_m.shape[1]}x{depth_m.shape[0]}) is not aligned with the "
                         f"{width}x{height} colour image: publish depth registered to colour "
                         "(aligned_depth_to_color).")
    K = np.asarray(K, dtype=np.float64)
    moved: list[Human] = []
    report: list[DepthCorrection] = []
    decisions = estimate_offsets(humans, depth_m, K, faces, width, height, params)
    for human, (decision, offset) in zip(humans, decisions, strict=True):
        if decision.corrected:
            human, scale, delta = move_along_ray(human, offset, K)
            decision = dataclasses.replace(decision, scale=scale, delta_m=delta)
        moved.append(dataclasses.replace(human, extras={**human.extras, "depth_correction": decision}))
        report.append(decision)
    return moved, report


# ---------------------------------------------------------------- measurement on synthetic scenes


@dataclass
class FusionFigures:
    """Root (pelvis) translation error of matched people without and with fusion, over some scenes."""

    scenes: int
    people: int  # matched predictions
    corrected: int
    root_error_m: float  # mean 3D root error without fusion
    fused_root_error_m: float
    depth_error_m: float  # mean |z| error of the root without fusion
    fused_depth_error_m: float
    median_root_error_m: float
    fused_median_root_error_m: float
    seconds_per_image: float  # fusion only (rendering the z-buffer and comparing)


def measure_on_scenes(paths: Sequence, predictor, params: DepthFusionParams | None = None,
                      match_px: float = 0.1) -> FusionFigures:
    """Run ``predictor`` on synthetic scenes (``lighthmr synth`` files with depth maps) and compare.

    Predictions are matched to the true people by their detection centres (Hungarian, within
    ``match_px`` x the larger image side).
    """
    import time

    from scipy.optimize import linear_sum_assignment

    from lighthmr_ros.synth import load_scene, read_depth

    before, after, z_before, z_after = [], [], [], []
    corrected, seconds = 0, 0.0
    for path in paths:
        scene = load_scene(path, with_image=True)
        if scene["depth_path"] is None:
            raise ImageError(f"{path} has no depth map: regenerate the scenes with this version of "
                             "`lighthmr synth`.")
        K = scene["K"].astype(np.float64)
        height, width = scene["image_rgb"].shape[:2]
        humans = predictor.predict(scene["image_rgb"], K=K, with_vertices=True)
        depth = depth_to_metres(read_depth(scene["depth_path"]), "16UC1")
        t0 = time.perf_counter()
        fused, report = fuse_depth(humans, depth, K, predictor.faces, width, height, params)
        seconds += time.perf_counter() - t0
        if not humans or not len(scene["center_2d"]):
            continue
        pred_c = np.stack([h.center_2d for h in humans]).astype(np.float64)
        cost = np.linalg.norm(pred_c[:, None] - scene["center_2d"][None].astype(np.float64), axis=-1)
        for i, g in zip(*linear_sum_assignment(cost), strict=True):
            if cost[i, g] > match_px * max(width, height):
                continue
            truth = scene["transl_pelvis"][g].astype(np.float64)
            raw_t = np.asarray(humans[i].translation, dtype=np.float64)
            new_t = np.asarray(fused[i].translation, dtype=np.float64)
            before.append(np.linalg.norm(raw_t - truth))
            after.append(np.linalg.norm(new_t - truth))
            z_before.append(abs(raw_t[2] - truth[2]))
            z_after.append(abs(new_t[2] - truth[2]))
            corrected += int(report[i].corrected)
    n = len(paths)
    return FusionFigures(
        scenes=n, people=len(before), corrected=corrected,
        root_error_m=float(np.mean(before)) if before else math.nan,
        fused_root_error_m=float(np.mean(after)) if after else math.nan,
        depth_error_m=float(np.mean(z_before)) if z_before else math.nan,
        fused_depth_error_m=float(np.mean(z_after)) if z_after else math.nan,
        median_root_error_m=float(np.median(before)) if before else math.nan,
        fused_median_root_error_m=float(np.median(after)) if after else math.nan,
        seconds_per_image=seconds / max(n, 1),
    )
