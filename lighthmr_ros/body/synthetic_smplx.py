"""A small synthetic SMPLX_NEUTRAL.npz in the real file format, for tests and tools.

The licensed SMPL-X files cannot be shipped or downloaded, yet the real loader (``smplx``) must
be exercised. This writes a closed, human-shaped mesh (about 850 vertices: a torso, neck, head
and capsule limbs in SMPL-X's T-pose, metres, y up, facing +z) with the real 55-joint SMPL-X
skeleton and every array smplx reads, with the real shapes:

  v_template (V,3)  f (F,3)  shapedirs (V,3,400: 300 shape + 100 expression)  posedirs (V,3,486)
  J_regressor (55,V)  weights (V,55)  kintree_table (2,55)  hands_components{l,r} (45,45)
  hands_mean{l,r} (45,)  lmk_faces_idx (51,)  lmk_bary_coords (51,3)
  dynamic_lmk_faces_idx (79,17)  dynamic_lmk_bary_coords (79,17,3)

Joints regress exactly (non-negative weights summing to one) to designed joint positions, each
limb is skinned to its joint with blending at the proximal end, and the first shape components
mean something (0: height, 1: girth), so posed meshes look like people in renders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The real SMPL-X parent table (55 joints).
SMPLX_PARENTS = np.array(
    [
        -1,
        0,
        0,
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        9,
        9,
        12,
        13,
        14,
        16,
        17,
        18,
        19,
        15,
        15,
        15,
        20,
        25,
        26,
        20,
        28,
        29,
        20,
        31,
        32,
        20,
        34,
        35,
        20,
        37,
        38,
        21,
        40,
        41,
        21,
        43,
        44,
        21,
        46,
        47,
        21,
        49,
        50,
        21,
        52,
        53,
    ],
    dtype=np.int64,
)


def _joint_positions() -> np.ndarray:
    """Designed rest joints (55, 3), T-pose; +x is the body's left."""
    j = np.zeros((55, 3))
    left = {
        1: (0.07, -0.44, 0.0),
        4: (0.10, -0.82, 0.0),
        7: (0.11, -1.22, -0.03),
        10: (0.12, -1.27, 0.09),
        13: (0.07, 0.08, 0.0),
        16: (0.18, 0.10, -0.01),
        18: (0.44, 0.10, -0.02),
        20: (0.68, 0.10, -0.01),
        23: (0.03, 0.31, 0.08),
    }
    for i, p in left.items():
        j[i] = p
        j[i + 1] = (-p[0], p[1], p[2])  # the right twin follows each left joint in SMPL-X
    j[0] = (0.0, -0.35, 0.0)
    j[3] = (0.0, -0.24, -0.01)
    j[6] = (0.0, -0.10, 0.0)
    j[9] = (0.0, -0.04, 0.0)
    j[12] = (0.0, 0.16, -0.02)
    j[15] = (0.0, 0.24, 0.0)
    j[22] = (0.0, 0.22, 0.03)
    # Hands: index, middle, pinky, ring, thumb; three joints each.
    finger_z = {"index": 0.025, "middle": 0.005, "pinky": -0.035, "ring": -0.015}
    for side, first in ((1.0, 25), (-1.0, 40)):
        wrist = j[20] if side > 0 else j[21]
        k = first
        for finger in ("index", "middle", "pinky", "ring"):
            for step in (0.09, 0.125, 0.15):
                j[k] = wrist + (side * step, 0.0, finger_z[finger])
                k += 1
        for step, dz in ((0.03, 0.035), (0.055, 0.05), (0.075, 0.06)):
            j[k] = wrist + (side * step, -0.01, dz)
            k += 1
    return j


def _capsule(a, b, r1, r2, rings, segments, grow=0.35):
    """Closed capsule-like surface around segment a->b: (verts, faces, ring parameter s, axis points)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    length = np.linalg.norm(d)
    d = d / length
    helper = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(d, helper)
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    start, end = a - d * grow * max(r1, r2), b + d * grow * max(r1, r2)
    s = (np.arange(rings) + 0.5) / rings
    centres = start + np.outer(s, end - start)
    profile = np.sin(np.pi * s) ** 0.45
    ang = 2 * np.pi * np.arange(segments) / segments
    ring = np.cos(ang)[:, None] * u * r1 + np.sin(ang)[:, None] * v * r2
    verts = (centres[:, None, :] + profile[:, None, None] * ring[None]).reshape(-1, 3)
    verts = np.concatenate([verts, start[None], end[None]])
    axis = np.concatenate([np.repeat(centres, segments, 0), start[None], end[None]])
    svals = np.concatenate([np.repeat(s, segments), [0.0, 1.0]])
    faces = []
    for i in range(rings - 1):
        for k in range(segments):
            p, q = i * segments + k, i * segments + (k + 1) % segments
            faces += [(p, q, q + segments), (p, q + segments, p + segments)]
    bottom, top = rings * segments, rings * segments + 1
    last = (rings - 1) * segments
    for k in range(segments):
        faces.append((bottom, (k + 1) % segments, k))
        faces.append((top, last + k, last + (k + 1) % segments))
    faces = np.array(faces, dtype=np.int64)
    # Outward orientation: flip if the signed volume is negative.
    tri = verts[faces]
    if np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() < 0:
        faces = faces[:, ::-1].copy()
    return verts, faces, svals, axis


def _parts(j: np.ndarray):
    """(name, capsule args, own joint, proximal parent joint or None)."""
    parts = [
        ("torso", ((0, -0.50, 0), (0, 0.13, 0), 0.15, 0.10, 10, 12), None, None),
        ("neck", ((0, 0.10, -0.01), (0, 0.26, 0.0), 0.05, 0.05, 4, 8), 12, 9),
        ("head", ((0, 0.23, 0.02), (0, 0.43, 0.02), 0.085, 0.095, 8, 10), 15, 12),
    ]
    for side, o in (("left", 0), ("right", 1)):
        wrist, hand_tip = j[20 + o], j[20 + o] + ((0.18 if o == 0 else -0.18), 0, 0)
        toe = j[10 + o] + (0, -0.01, 0.08)
        parts += [
            (f"{side}_upperarm", (j[16 + o], j[18 + o], 0.047, 0.047, 6, 8), 16 + o, 13 + o),
            (f"{side}_forearm", (j[18 + o], wrist, 0.038, 0.038, 6, 8), 18 + o, 16 + o),
            (f"{side}_hand", (wrist, hand_tip, 0.02, 0.045, 5, 8), 20 + o, 18 + o),
            (f"{side}_thigh", (j[1 + o], j[4 + o], 0.075, 0.075, 6, 8), 1 + o, 0),
            (f"{side}_shin", (j[4 + o], j[7 + o], 0.052, 0.052, 6, 8), 4 + o, 1 + o),
            (f"{side}_foot", (j[7 + o] + (0, -0.02, -0.05), toe, 0.04, 0.035, 5, 8), 7 + o, 4 + o),
        ]
    return parts


def _regress(verts: np.ndarray, target: np.ndarray, k: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative weights of the k nearest vertices that sum to one and best reproduce target."""
    from scipy.optimize import nnls

    idx = np.argsort(np.linalg.norm(verts - target, axis=1))[:k]
    lam = 10.0
    a = np.concatenate([verts[idx].T, lam * np.ones((1, k))])
    w, _ = nnls(a, np.concatenate([target, [lam]]))
    if w.sum() <= 0:
        w = np.ones(k)
    return idx, w / w.sum()


def make_synthetic_smplx(seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of a synthetic SMPLX_NEUTRAL.npz (see the module docstring)."""
    rng = np.random.default_rng(seed)
    joints = _joint_positions()
    verts, faces, weights_rows, axes, part_of = [], [], [], [], []
    offset = 0
    torso_levels = np.array([[-0.35, 0], [-0.24, 3], [-0.10, 6], [-0.04, 9], [0.16, 12]])
    for p, (_name, args, own, parent) in enumerate(_parts(joints)):
        v, f, s, axis = _capsule(*args)
        w = np.zeros((len(v), 55))
        if own is None:  # torso: blend along the spine by height, shoulders towards the collars
            y = v[:, 1]
            ys, ids = torso_levels[:, 0], torso_levels[:, 1].astype(int)
            pos = np.clip(np.interp(y, ys, np.arange(len(ys))), 0, len(ys) - 1)
            lo = np.floor(pos).astype(int)
            hi = np.minimum(lo + 1, len(ys) - 1)
            frac = pos - lo
            w[np.arange(len(v)), ids[lo]] += 1 - frac
            w[np.arange(len(v)), ids[hi]] += frac
            collar = np.clip((np.abs(v[:, 0]) - 0.06) / 0.1, 0, 1) * np.clip(v[:, 1] / 0.1, 0, 1)
            side = np.where(v[:, 0] > 0, 13, 14)
            w *= (1 - 0.6 * collar)[:, None]
            w[np.arange(len(v)), side] += 0.6 * collar
        else:
            blend = np.clip(0.5 - 2.0 * s, 0.0, 0.5)
            w[:, own] = 1 - blend
            w[:, parent] += blend
        verts.append(v)
        faces.append(f + offset)
        weights_rows.append(w)
        axes.append(axis)
        part_of.append(np.full(len(v), p))
        offset += len(v)
    v_template = np.concatenate(verts)
    faces = np.concatenate(faces)
    weights = np.concatenate(weights_rows)
    axes = np.concatenate(axes)
    part_of = np.concatenate(part_of)
    num_v = len(v_template)

    j_regressor = np.zeros((55, num_v))
    for j in range(55):
        idx, w = _regress(v_template, joints[j])
        j_regressor[j, idx] = w

    shapedirs = np.zeros((num_v, 3, 400))
    shapedirs[:, 1, 0] = 0.04 * (v_template[:, 1] + 0.35)  # 0: taller / shorter
    shapedirs[:, :, 1] = 0.12 * (v_template - axes)  # 1: girth
    num_parts = part_of.max() + 1
    centroids = np.stack([v_template[part_of == p].mean(0) for p in range(num_parts)])
    rel = v_template - centroids[part_of]
    affine = rng.normal(0.0, 0.02, size=(num_parts, 398, 3, 3))  # smooth per-part deformations
    shapedirs[:, :, 2:] = np.einsum("vcij,vj->vic", affine[part_of], rel)
    head = part_of == 2
    shapedirs[:, :, 300:] *= head[:, None, None]  # expression moves the head only
    posedirs = rng.normal(0.0, 3e-4, size=(num_v, 3, 486))

    head_faces = np.flatnonzero(head[faces].all(1))
    front = head_faces[v_template[faces[head_faces]].mean(1)[:, 2] > 0.05]
    lmk_faces_idx = rng.choice(front, 51, replace=len(front) < 51)
    lmk_bary = rng.dirichlet(np.ones(3), 51)
    dyn_faces = rng.choice(head_faces, (79, 17))
    dyn_bary = rng.dirichlet(np.ones(3), (79, 17))

    def orthogonal():
        q, r = np.linalg.qr(rng.normal(size=(45, 45)))
        return q * np.sign(np.diag(r))

    f32 = np.float32
    return {
        "v_template": v_template.astype(f32),
        "f": faces.astype(np.int64),
        "shapedirs": shapedirs.astype(f32),
        "posedirs": posedirs.astype(f32),
        "J_regressor": j_regressor.astype(f32),
        "weights": weights.astype(f32),
        "kintree_table": np.stack([SMPLX_PARENTS, np.arange(55)]).astype(np.int64),
        "hands_componentsl": orthogonal().astype(f32),
        "hands_componentsr": orthogonal().astype(f32),
        "hands_meanl": rng.normal(0, 0.1, 45).astype(f32),
        "hands_meanr": rng.normal(0, 0.1, 45).astype(f32),
        "lmk_faces_idx": lmk_faces_idx.astype(np.int64),
        "lmk_bary_coords": lmk_bary.astype(f32),
        "dynamic_lmk_faces_idx": dyn_faces.astype(np.int64),
        "dynamic_lmk_bary_coords": dyn_bary.astype(f32),
    }


def write_synthetic_smplx(path: str | Path, seed: int = 0) -> Path:
    """Write a synthetic SMPLX_NEUTRAL.npz; ``path`` is the file or a folder (file name added)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path / "SMPLX_NEUTRAL.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **make_synthetic_smplx(seed))
    return path
