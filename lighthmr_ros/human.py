"""The Human record: what the Predictor returns for one person in one image.

Every field is in the ORIGINAL image's pixels and camera optical frame (x right, y down,
z forward, metres): resizing and padding done for the network are already undone.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Human:
    """One detected person.

    Shapes (J = body-model pose joints, S = shape size, E = expression size,
    K = output joints, V = vertices):
      center_2d (2,), translation (3,) pelvis/root position, pose (J, 3) axis-angle with the
      global orientation first, shape (S,), expression (E,), joints (K, 3), joints_2d (K, 2),
      vertices (V, 3) or None when not computed.
    """

    id: int
    score: float
    center_2d: np.ndarray
    translation: np.ndarray
    pose: np.ndarray
    shape: np.ndarray
    expression: np.ndarray
    joints: np.ndarray
    joints_2d: np.ndarray
    vertices: np.ndarray | None = None
    body_model: str = "anny"
    extras: dict = field(default_factory=dict)

    def to_dict(self, with_vertices: bool = True) -> dict:
        """JSON-ready dict (lists of floats)."""
        out = {
            "id": int(self.id),
            "score": float(self.score),
            "center_2d": np.asarray(self.center_2d, dtype=float).tolist(),
            "translation": np.asarray(self.translation, dtype=float).tolist(),
            "pose": np.asarray(self.pose, dtype=float).tolist(),
            "shape": np.asarray(self.shape, dtype=float).tolist(),
            "expression": np.asarray(self.expression, dtype=float).tolist(),
            "joints": np.asarray(self.joints, dtype=float).tolist(),
            "joints_2d": np.asarray(self.joints_2d, dtype=float).tolist(),
            "body_model": self.body_model,
        }
        if with_vertices and self.vertices is not None:
            out["vertices"] = np.asarray(self.vertices, dtype=float).tolist()
        return out
