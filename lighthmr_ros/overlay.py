"""Overlay images: each person's mesh, skeleton and id drawn over the input image.

One module for every place that shows results as a picture (``lighthmr predict``, ``make demo``,
the node's debug image) and for the per-person colour that RViz markers share (``track_color``).
It needs neither OpenGL nor ROS. Two ways to draw the mesh:

- ``"shaded"``: z-buffered, shaded triangles from the plain-torch rasteriser of
  lighthmr_ros.raster, so nearer people hide farther ones (tens of ms: for saved pictures);
- ``"points"``: the projected vertices blended in, no z-buffer (one matrix product per person:
  cheap enough for every frame of the node's debug image).
"""
from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

from lighthmr_ros.human import Human

MESH_STYLES = ("shaded", "points", "none")
_LIGHT_DIR = (0.3, -0.5, -1.0)


def track_color(track_id: int) -> tuple[float, float, float]:
    """A distinct, stable RGB colour in [0, 1] per id (golden-ratio hue steps)."""
    hue = (0.13 + 0.61803398875 * int(track_id)) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.65, 0.95)


def _color_255(track_id: int) -> tuple[int, int, int]:
    r, g, b = (int(c * 255) for c in track_color(track_id))
    return r, g, b


def render_overlay(
    rgb: np.ndarray,
    humans: Sequence[Human],
    K: np.ndarray,
    faces: np.ndarray | None = None,
    joint_parents: Sequence[int] | None = None,
    alpha: float = 0.75,
    labels: bool = True,
    *,
    mesh: str = "shaded",
) -> np.ndarray:
    """A copy of ``rgb`` (H, W, 3 uint8) with the people's meshes, skeletons and ids drawn on it.

    Vertices must be in the image's camera frame and ``K`` its intrinsics; ``alpha`` is the mesh's
    opacity. ``mesh="shaded"`` needs ``faces``; people without vertices get their skeleton only.
    """
    if mesh not in MESH_STYLES:
        raise ValueError(f"mesh must be one of {MESH_STYLES}, got {mesh!r}")
    out = np.array(rgb[..., :3], dtype=np.uint8, copy=True)
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    meshes = [h for h in humans if h.vertices is not None and len(h.vertices)]
    if mesh == "shaded" and meshes and faces is not None and len(faces):
        _draw_shaded(out, meshes, K, np.asarray(faces, dtype=np.int64).reshape(-1, 3), alpha)
    elif mesh == "points":
        for h in meshes:
            _draw_points(out, np.asarray(h.vertices, dtype=np.float64).reshape(-1, 3), K, h.id, alpha)
    if joint_parents is not None:
        parents = np.asarray(joint_parents, dtype=np.int64)
        for h in humans:
            _draw_skeleton(out, np.asarray(h.joints_2d, dtype=np.float64).reshape(-1, 2), parents, h.id)
    if labels:
        for h in humans:
            _draw_label(out, h)
    return out


def _draw_shaded(out: np.ndarray, meshes: Sequence[Human], K: np.ndarray, faces: np.ndarray,
                 alpha: float) -> None:
    """Rasterise all people at once (one z-buffer) and blend the shaded colours into ``out``."""
    import torch

    from lighthmr_ros.raster import project, rasterize, shade

    height, width = out.shape[:2]
    K_t = torch.as_tensor(K, dtype=torch.float32)
    faces_t = torch.as_tensor(faces)
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
    color, mask = shade(frags, v_cam, f_all, torch.cat(colors), torch.tensor(_LIGHT_DIR))
    mask_np = mask.numpy()
    blended = (1 - alpha) * out[mask_np] + alpha * (color.numpy()[mask_np] * 255)
    out[mask_np] = np.clip(blended, 0, 255).astype(np.uint8)


def _draw_points(out: np.ndarray, vertices: np.ndarray, K: np.ndarray, track_id: int, alpha: float) -> None:
    """Blend the vertices in front of the camera into ``out`` at their projected pixels."""
    height, width = out.shape[:2]
    color = np.array(track_color(track_id)) * 255
    v = vertices[vertices[:, 2] > 1e-3]
    uv = np.round((v @ K.T)[:, :2] / v[:, 2:3]).astype(np.int64)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    u, vv = uv[inside, 0], uv[inside, 1]
    out[vv, u] = ((1 - alpha) * out[vv, u] + alpha * color).astype(np.uint8)


def _draw_skeleton(out: np.ndarray, joints_2d: np.ndarray, parents: np.ndarray, track_id: int) -> None:
    """One line per bone; skipped when the joints do not match the skeleton or are not finite."""
    if len(parents) != len(joints_2d) or not np.isfinite(joints_2d).all():
        return
    color = _color_255(track_id)
    pts = np.round(joints_2d).astype(np.int64)
    for child in np.flatnonzero(parents >= 0).tolist():
        a, b = pts[child], pts[parents[child]]
        cv2.line(out, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), color, 1, cv2.LINE_AA)


def _draw_label(out: np.ndarray, human: Human) -> None:
    """The id and detection score at the person's 2D centre, outlined so it reads on any background."""
    cx, cy = np.asarray(human.center_2d, dtype=np.float64).reshape(2)
    if not (np.isfinite(cx) and np.isfinite(cy)):
        return
    text, at = f"{int(human.id)} {float(human.score):.2f}", (int(cx), int(cy))
    cv2.putText(out, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.5, _color_255(human.id), 1, cv2.LINE_AA)
