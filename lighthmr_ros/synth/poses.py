"""Random Anny people: phenotypes from children to elders and poses within joint limits.

Rotations follow the Anny body model's convention (lighthmr_ros.body.anny_model): each bone's
rotation relative to its parent, in the canonical axes of the rest pose (x = the body's left,
y up, z forward). Limits are written for the left side and centre; a right-side rotation is the
mirror image (rotation vector (x, -y, -z)) of a left-style sample. Hinges (knees, elbows) and
twists turn about axes taken from the rest skeleton.
"""
from __future__ import annotations

import math

import numpy as np
import roma
import torch

# bone -> list of (axis, low, high) in degrees; axis: "x" | "y" | "z" | "twist" | "elbow".
# Signs (left side): +x bends a knee / leans the spine forward, -x raises a thigh or arm forward,
# +z moves a left limb away from the body (abduction).
LIMITS: dict[str, list[tuple[str, float, float]]] = {
    "pelvis.L": [("x", -5, 5), ("y", -5, 5), ("z", -5, 5)],
    "upperleg01.L": [("x", -100, 25), ("y", -25, 35), ("z", -15, 40)],
    "upperleg02.L": [("twist", -15, 15)],
    "lowerleg01.L": [("x", 0, 135)],
    "lowerleg02.L": [("twist", -10, 10)],
    "foot.L": [("x", -30, 25), ("z", -10, 10)],
    "spine05": [("x", -8, 18), ("y", -10, 10), ("z", -7, 7)],
    "spine04": [("x", -8, 18), ("y", -10, 10), ("z", -7, 7)],
    "spine03": [("x", -8, 18), ("y", -10, 10), ("z", -7, 7)],
    "spine02": [("x", -8, 18), ("y", -10, 10), ("z", -7, 7)],
    "spine01": [("x", -8, 18), ("y", -10, 10), ("z", -7, 7)],
    "clavicle.L": [("y", -10, 10), ("z", -8, 15)],
    "shoulder01.L": [("x", -8, 8), ("y", -8, 8), ("z", -8, 8)],
    "upperarm01.L": [("x", -110, 40), ("y", -40, 40), ("z", -40, 100)],
    "upperarm02.L": [("twist", -40, 40)],
    "lowerarm01.L": [("elbow", -40, 100)],
    "lowerarm02.L": [("twist", -60, 60)],
    "wrist.L": [("x", -35, 35), ("y", -15, 15), ("z", -30, 30)],
    "neck01": [("x", -12, 15), ("y", -20, 20), ("z", -8, 8)],
    "neck02": [("x", -12, 15), ("y", -20, 20), ("z", -8, 8)],
    "neck03": [("x", -12, 15), ("y", -20, 20), ("z", -8, 8)],
    "head": [("x", -12, 15), ("y", -20, 20), ("z", -8, 8)],
}
# A relaxed standing posture (degrees) the gentler styles stay around.
NEUTRAL = {("upperarm01.L", "z"): -32.0, ("lowerarm01.L", "elbow"): -25.0}
STYLES = {"stand": 0.25, "walk": 0.25, "free": 0.3, "crouch": 0.1, "reach": 0.1}


def _left_name(bone: str) -> str:
    return bone[:-2] + ".L" if bone.endswith(".R") else bone


class PoseSampler:
    """Samples (J, 3, 3) rotations for an AnnyBody's pose bones (root left at identity)."""

    def __init__(self, body):
        self.bones = list(body.spec.pose_joint_names)
        names = list(body.spec.joint_names)
        parents = body.spec.joint_parents
        with torch.no_grad():
            rest = body(body.rest_pose()[None], body.mean_shape()[None]).joints[0].double().numpy()
        self.axes: dict[str, dict[str, np.ndarray]] = {}
        for bone in self.bones:
            if not bone.endswith(".L"):
                continue
            i = names.index(bone)
            child = next(c for c, p in enumerate(parents) if p == i)
            direction = rest[child] - rest[i]
            direction /= np.linalg.norm(direction)
            elbow = np.cross(direction, [0.0, 0.0, 1.0])
            self.axes[bone] = {"twist": direction, "elbow": elbow / np.linalg.norm(elbow)}

    def _axis(self, bone: str, axis: str) -> np.ndarray:
        if axis in "xyz":
            return np.eye(3)["xyz".index(axis)]
        return self.axes[bone][axis]

    def _angles(self, rng: np.random.Generator, style: str) -> dict[tuple[str, str], float]:
        """Left-style angles (degrees) per (bone, axis) for one side, or the centre bones."""
        out = {}
        for bone, comps in LIMITS.items():
            for axis, lo, hi in comps:
                neutral = NEUTRAL.get((bone, axis), 0.0)
                if style in ("stand", "walk"):
                    value = neutral + rng.normal(0.0, 0.08 * (hi - lo))
                elif style == "free":
                    value = rng.uniform(lo, hi) * 0.75 + 0.25 * neutral
                else:  # crouch, reach
                    value = neutral + rng.normal(0.0, 0.15 * (hi - lo))
                out[(bone, axis)] = float(np.clip(value, lo, hi))
        return out

    def sample(self, rng: np.random.Generator, style: str | None = None) -> tuple[torch.Tensor, str]:
        """(J, 3, 3) float32 rotations (root = identity) and the style used."""
        if style is None:
            style = rng.choice(list(STYLES), p=list(STYLES.values()))
        left, right, centre = self._angles(rng, style), self._angles(rng, style), self._angles(rng, style)
        if style == "walk":
            phase, amp = rng.uniform(-1, 1), rng.uniform(10, 35)
            left[("upperleg01.L", "x")] = -amp * phase
            right[("upperleg01.L", "x")] = amp * phase
            left[("lowerleg01.L", "x")] = rng.uniform(0, 45)
            right[("lowerleg01.L", "x")] = rng.uniform(0, 45)
            left[("upperarm01.L", "x")] = 0.8 * amp * phase
            right[("upperarm01.L", "x")] = -0.8 * amp * phase
        elif style == "crouch":
            for side in (left, right):
                side[("upperleg01.L", "x")] = rng.uniform(-100, -60)
                side[("lowerleg01.L", "x")] = rng.uniform(60, 130)
                side[("foot.L", "x")] = rng.uniform(-25, 0)
            centre[("spine03", "x")] = rng.uniform(0, 18)
        elif style == "reach":
            for side in (left, right):
                if rng.random() < 0.7:
                    side[("upperarm01.L", "z")] = rng.uniform(-40, 100)
                    side[("upperarm01.L", "x")] = rng.uniform(-110, 20)
                    side[("lowerarm01.L", "elbow")] = rng.uniform(-40, 100)
        vecs, owners = [], []
        for j, bone in enumerate(self.bones[1:], start=1):
            key = _left_name(bone)
            angles = right if bone.endswith(".R") else left if bone.endswith(".L") else centre
            for axis, _, _ in LIMITS.get(key, []):
                vecs.append(self._axis(key, axis) * math.radians(angles[(key, axis)]))
                owners.append(j)
        mats = roma.rotvec_to_rotmat(torch.as_tensor(np.array(vecs))) if vecs else None
        rots = torch.eye(3, dtype=torch.float64).repeat(len(self.bones), 1, 1)
        for mat, j in zip(mats if mats is not None else [], owners, strict=True):
            rots[j] = rots[j] @ mat  # components compose in LIMITS order
        mirror = torch.tensor([bone.endswith(".R") for bone in self.bones])
        m = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
        rots[mirror] = m @ rots[mirror] @ m  # right side: mirror image across the sagittal plane
        return rots.float(), str(style)


def sample_phenotype(rng: np.random.Generator) -> np.ndarray:
    """(6,) Anny phenotypes (gender, age, muscle, weight, height, proportions): about one in five
    a child or teenager (age 0.15-0.6), the others adults to elders (0.6-1.0)."""
    age = rng.uniform(0.15, 0.6) if rng.random() < 0.2 else rng.uniform(0.6, 1.0)
    return np.array([
        rng.uniform(0, 1), age, rng.beta(2, 2), rng.beta(2, 2), rng.beta(2.5, 2.5), rng.uniform(0, 0.7),
    ], dtype=np.float32)
