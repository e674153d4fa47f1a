"""Overlay images: each person's mesh rendered (shaded, z-buffered) over the input image.

One function for every place that shows results as a picture (``lighthmr predict``, the node's
debug image, ``make demo``); it needs neither OpenGL nor ROS. The meshes are drawn with the
plain-torch rasteriser of lighthmr_ros.synth.raster, so nearer people hide farther ones.
"""
from __future__ import annotations

import colorsys
from typing import Sequence

import cv2
import numpy as np
import torch

from lighthmr_ros.human import Human
from lighthmr_ros.synth.raster import project, rasterize, shade


def track_color(track_id: int) -> tuple[float, float, float]:
    """A distinct, stable RGB colour in [0, 1] per id (golden-ratio hue steps)."""
    hue = (0.13 + 0.61803398875 * int(track_id)) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.65, 0.95)


def render_overlay(
    rgb: np.ndarray,
    humans: Sequence[Human],
    K: np.ndarray,
    faces: np.ndarray,
    joint_parents: Sequence[int] | None = None,
    alpha: float = 0.75,
    labels: bool = True,
) -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3 uint8) with the people's meshes, skeletons and ids drawn on it.

    Vertices must be in the image's camera frame and ``K`` its intrinsics; people without vertices
    get their skeleton only.
    """
    out = np.array(rgb[..., :3], dtype=np.uint8, copy=True)
    height, width = out.shape[:2]
    K_t = torch.as_tensor(np.asarray(K, dtype=np.float32).reshape(3, 3))
    faces_t = torch.as_tensor(np.asarray(faces, dtype=np.int64).reshape(-1, 3))
    meshes = [h for h in humans if h.vertices is not None and len(h.vertices)]
    if meshes and len(faces_t):
        verts, tris, colors = [], [], []
        offset = 0
        for h in meshes:
            v = torch.as_tensor(np.asarray(h.vertices, dtype=np.float32).reshape(-1, 3))
            verts.append(v)
            tris.append(faces_t + offset)
            colors.append(torch.tensor(track_color(h.id), dtype=torch.float32).expand(len(v), 3))
            offset += len(v)
        v_cam = torch.cat(verts)
        f_all = torch.cat(tris)
        uvz = torch.cat([project(v_cam, K_t), v_cam[:, 2:3]], dim=1)
        frags = rasterize(uvz, f_all, height, width, cull_back=False)
        color, mask = shade(frags, v_cam, f_all, torch.cat(colors), torch.tensor([0.3, -0.5, -1.0]))
        mask_np = mask.numpy()
        blended = (1 - alpha) * out[mask_np] + alpha * (color.numpy()[mask_np] * 255)
        out[mask_np] = np.clip(blended, 0, 255).astype(np.uint8)
    parents = None if joint_parents is None else np.asarray(joint_parents, dtype=np.int64)
    for h in humans:
        color = tuple(int(c * 255) for c in track_color(h.id))
        j2d = np.asarray(h.joints_2d, dtype=np.float64).reshape(-1, 2)
        if parents is not None and len(parents) == len(j2d) and np.isfinite(j2d).all():
            pts = np.round(j2d).astype(np.int64)
            for child in np.flatnonzero(parents >= 0).tolist():
                a, b = pts[child], pts[parents[child]]
                cv2.line(out, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), color, 1, cv2.LINE_AA)
        cx, cy = np.asarray(h.center_2d, dtype=np.float64).reshape(2)
        if labels and np.isfinite(cx) and np.isfinite(cy):
            text = f"{int(h.id)} {float(h.score):.2f}"
            cv2.putText(out, text, (int(cx), int(cy)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, text, (int(cx), int(cy)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return out
