"""Debug overlay: the input image with each person's projected mesh, skeleton and id drawn on it."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from lighthmr_ros.human import Human
from lighthmr_ros.ros.markers import track_color


def draw_overlay(rgb: np.ndarray, humans: Sequence[Human], k: np.ndarray, joint_parents: Sequence[int]) -> np.ndarray:
    """A copy of ``rgb`` with mesh vertices (projected with ``k``), bones and ids in track colours."""
    out = np.array(rgb, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    parents = np.asarray(joint_parents, dtype=np.int64)
    for human in humans:
        color = np.array(track_color(human.id)) * 255
        if human.vertices is not None and len(human.vertices):
            v = np.asarray(human.vertices, dtype=np.float64).reshape(-1, 3)
            v = v[v[:, 2] > 1e-3]
            uv = (v @ k.T)[:, :2] / v[:, 2:3]
            uv = np.round(uv).astype(np.int64)
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
            u, vv = uv[inside, 0], uv[inside, 1]
            out[vv, u] = (0.4 * out[vv, u] + 0.6 * color).astype(np.uint8)
        j2d = np.asarray(human.joints_2d, dtype=np.float64).reshape(-1, 2)
        if len(parents) == len(j2d) and np.all(np.isfinite(j2d)):
            pts = np.round(j2d).astype(np.int64)
            for child in np.flatnonzero(parents >= 0).tolist():
                a, b = pts[child], pts[parents[child]]
                cv2.line(out, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), color.tolist(), 2, cv2.LINE_AA)
        cx, cy = np.asarray(human.center_2d, dtype=np.float64).reshape(2)
        if np.isfinite(cx) and np.isfinite(cy):
            cv2.putText(out, str(int(human.id)), (int(cx), int(cy)), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                        color.tolist(), 2, cv2.LINE_AA)
    return out
