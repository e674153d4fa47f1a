"""Multi-person training targets and the geometric augmentations that keep them consistent.

Every data set reader returns ``Sample`` records in one convention, whatever its file format:
  - image (H,W,3) uint8 RGB and K (3,3) of that image (OpenCV pinhole: pixel centres at integers);
  - per person (``PersonTarget``) in the camera optical frame (x right, y down, z forward, metres):
    SMPL-X pose as axis-angle in SMPL-X joint order (55 rows: global, 21 body, jaw, left eye,
    right eye, 15 left hand, 15 right hand), betas, expression, the SMPL-X ``transl`` parameter,
    3-D joints and 2-D joints in the first 22 (SMPL-compatible) or 55 SMPL-X joint order, and the
    detection centre (2-D head joint, SMPL-X joint 15, as Multi-HMR's ``person_center='head'``).
Missing supervision is None (or masked rows), never invented: 3DPW gives SMPL, not SMPL-X, so its
persons have no betas and only the 22 shared joint rotations (see threedpw.py).

The network sees a square S x S image: the source is scaled to fit and centred by the one letterbox of
``lighthmr_ros.preprocess`` (the Predictor's: without augmentation the pixels are identical). Scale,
shift (crop) and the letterbox are one affine map u' = a u + t applied to the image, the 2-D joints,
the centres and K (K' = A K): 3-D targets do not change. A distillation teacher gets the same view at
its own size, warped from the original pixels (``teacher_size``), not the student image upsampled.
The horizontal flip mirrors the 3-D world (X -> -X), so it swaps left/right joints and rotations,
negates the y and z axis-angle components, negates 3-D x, and sets cx' = S - 1 - cx, u' = S - 1 - u
(fx stays positive).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch
from smplx.joint_names import JOINT_NAMES

from lighthmr_ros.preprocess import IMAGENET_MEAN, IMAGENET_STD, Letterbox, letterbox

# First 55 names of smplx.joint_names.JOINT_NAMES: the SMPL-X skeleton (0-21 shared with SMPL).
SMPLX_JOINT_NAMES: tuple[str, ...] = tuple(JOINT_NAMES[:55])
NUM_SMPLX_POSE_JOINTS = 55
NUM_BODY_JOINTS = 22  # pelvis .. right_wrist, identical in SMPL and SMPL-X
HEAD_JOINT = 15  # 'head': the detection centre (Multi-HMR person_center='head', person_center_idx 15)
PELVIS_JOINT = 0


def mirror_name(name: str) -> str:
    """The joint name of the other side ('left_x' <-> 'right_x', 'x.L' <-> 'x.R' as in Anny/Blender)."""
    if "left" in name:
        return name.replace("left", "right")
    if "right" in name:
        return name.replace("right", "left")
    if name.endswith(".L"):
        return name[:-2] + ".R"
    if name.endswith(".R"):
        return name[:-2] + ".L"
    return name


def flip_permutation(names: tuple[str, ...] | list[str]) -> np.ndarray:
    """Index array p such that flipped[i] = original[p[i]] (left/right swapped by name)."""
    index = {n: i for i, n in enumerate(names)}
    return np.array([index.get(mirror_name(n), i) for i, n in enumerate(names)], dtype=np.int64)


SMPLX_FLIP = flip_permutation(SMPLX_JOINT_NAMES)


@dataclass
class PersonTarget:
    """Ground truth of one person (camera frame, metres; 2-D in the sample image's pixels)."""

    center: np.ndarray  # (2,) projected head joint
    joints_2d: np.ndarray | None = None  # (Kj,2) SMPL-X joint order, Kj in {22, 55}
    joints_2d_valid: np.ndarray | None = None  # (Kj,) bool
    joints_3d: np.ndarray | None = None  # (Kj,3) camera frame
    rotvec: np.ndarray | None = None  # (55,3) SMPL-X axis-angle, global orientation in camera frame
    rot_valid: np.ndarray | None = None  # (55,) bool: which rotations are supervised
    shape: np.ndarray | None = None  # (S,) SMPL-X betas (BEDLAM 11, AGORA 10/11)
    expression: np.ndarray | None = None  # (E,)
    transl: np.ndarray | None = None  # (3,) SMPL-X transl parameter in the camera frame
    vertices: np.ndarray | None = None  # (V,3) camera frame, when the release ships them (AGORA)
    valid: bool = True  # counts for detection metrics (AGORA: occlusion in 0-90 %)
    gender: str = "neutral"
    body: str = "smplx"  # body model of the annotation: "smplx" or "smpl"
    kid: bool = False
    # Annotation in a body model's own terms (synthetic Anny scenes): keys body, joint_names,
    # pose_joint_names, rotmats (J,3,3), shape (S,), transl_pelvis (3,), joints (K,3), joints_2d (K,2),
    # joints_visible (K,), vertices (V,3) or None. Used when the model has that body model.
    native: dict | None = None

    @property
    def depth(self) -> float:
        if self.joints_3d is not None:
            return float(self.joints_3d[HEAD_JOINT, 2])
        if self.transl is not None:
            return float(self.transl[2])
        if self.native is not None:
            return float(self.native["transl_pelvis"][2])
        return float("inf")


@dataclass
class Sample:
    """One image with all its people."""

    image: np.ndarray  # (H,W,3) uint8 RGB
    K: np.ndarray  # (3,3) float64
    persons: list[PersonTarget]
    name: str = ""
    dataset: str = ""
    extras: dict = field(default_factory=dict)


@dataclass
class AugmentConfig:
    """Random augmentation ranges (all off when ``enabled`` is False: evaluation)."""

    enabled: bool = True
    scale: tuple[float, float] = (0.75, 1.25)  # zoom factor on top of the letterbox fit
    shift: float = 0.1  # max translation, fraction of the output size
    flip: float = 0.5  # probability of a horizontal flip
    color: float = 0.2  # brightness/contrast/saturation jitter amplitude


def project_points(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N,3) camera-frame points -> (N,2) pixels (points behind the camera give inf/nan)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = points @ K.T
        return uvw[:, :2] / uvw[:, 2:3]


def letterbox_affine(box: Letterbox) -> np.ndarray:
    """2x3 affine u' = A [u, v, 1] of a ``preprocess.Letterbox`` (scale to fit, centred pad)."""
    return box.affine()[:2]


def resize_affine(src_size: int, dst_size: int) -> np.ndarray:
    """3x3 pixel map of an S x S image resized to D x D (pixel centres at integers: u' = s (u + .5) - .5)."""
    s = dst_size / src_size
    return np.array([[s, 0.0, 0.5 * (s - 1)], [0.0, s, 0.5 * (s - 1)], [0.0, 0.0, 1.0]])


def _affine_2d(points: np.ndarray | None, A: np.ndarray) -> np.ndarray | None:
    if points is None:
        return None
    return points @ A[:, :2].T + A[:, 2]


def warp_image(src: np.ndarray, A: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` image u' = A [u, v, 1] (2x3) of ``src``, area-averaged first when shrinking."""
    A3 = np.vstack([A, [0.0, 0.0, 1.0]])
    A_img = A
    zoom = float(np.sqrt(abs(np.linalg.det(A[:, :2]))))
    if zoom < 0.8:
        # Shrink with area averaging first (what the Predictor's letterbox does), so training images are
        # not aliased where inference images are smooth; the warp then only does the small remainder.
        h, w = src.shape[:2]
        nw, nh = max(1, round(w * zoom)), max(1, round(h * zoom))
        src = cv2.resize(src, (nw, nh), interpolation=cv2.INTER_AREA)
        rx, ry = nw / w, nh / h
        R = np.array(
            [[rx, 0.0, 0.5 * (rx - 1)], [0.0, ry, 0.5 * (ry - 1)], [0.0, 0.0, 1.0]]
        )  # resize's pixel map
        A_img = (A3 @ np.linalg.inv(R))[:2]
    return cv2.warpAffine(
        src,
        A_img,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def warp_sample(sample: Sample, A: np.ndarray, size: int, image: np.ndarray | None = None) -> Sample:
    """Apply the pixel-space affine ``A`` (2x3, u' = A [u,v,1]) and crop to ``size`` x ``size``
    (``image``: that warp already made, e.g. the Predictor's letterbox)."""
    A3 = np.vstack([A, [0.0, 0.0, 1.0]])
    image = warp_image(sample.image, A, size) if image is None else image
    K = A3 @ sample.K
    persons = []
    for p in sample.persons:
        q = replace(p, center=_affine_2d(p.center[None], A)[0], joints_2d=_affine_2d(p.joints_2d, A))
        if p.native is not None:
            q.native = {**p.native, "joints_2d": _affine_2d(p.native["joints_2d"], A)}
        persons.append(q)
    return replace(sample, image=image, K=K, persons=persons)


def flip_person(p: PersonTarget, size: int) -> PersonTarget:
    """Mirror one person in an image of width ``size`` (see the module docstring)."""
    out = replace(p, center=np.array([size - 1 - p.center[0], p.center[1]]))
    if p.joints_2d is not None:
        perm = SMPLX_FLIP[: len(p.joints_2d)]
        j2 = p.joints_2d[perm].copy()
        j2[:, 0] = size - 1 - j2[:, 0]
        out.joints_2d = j2
        out.joints_2d_valid = None if p.joints_2d_valid is None else p.joints_2d_valid[perm]
    if p.joints_3d is not None:
        j3 = p.joints_3d[SMPLX_FLIP[: len(p.joints_3d)]].copy()
        j3[:, 0] *= -1
        out.joints_3d = j3
    if p.rotvec is not None:
        rv = p.rotvec[SMPLX_FLIP].copy()
        rv[:, 1:] *= -1  # M R M with M = diag(-1,1,1) is the axis-angle (x, -y, -z)
        out.rotvec = rv
        out.rot_valid = None if p.rot_valid is None else p.rot_valid[SMPLX_FLIP]
    if p.transl is not None:
        # Approximate: exact is M (transl + J0) - J0 with the rest pelvis J0, whose x is a few mm.
        out.transl = p.transl * np.array([-1.0, 1.0, 1.0])
    if p.vertices is not None:
        out.vertices = None  # SMPL-X vertex symmetry table not available: drop rather than be wrong
    if p.native is not None:
        n = p.native
        perm = flip_permutation(n["joint_names"])
        j2 = n["joints_2d"][perm].copy()
        j2[:, 0] = size - 1 - j2[:, 0]
        j3 = n["joints"][perm] * np.array([-1.0, 1.0, 1.0])
        # Bone frames of a rigged mesh (Anny) need not be mirror-symmetric, so mirrored local rotations
        # are unknown: rotations and vertices are dropped; joints, shape and the pelvis position stay.
        out.native = {
            **n,
            "joints_2d": j2,
            "joints": j3,
            "joints_visible": n["joints_visible"][perm],
            "transl_pelvis": n["transl_pelvis"] * np.array([-1.0, 1.0, 1.0]),
            "rotmats": None,
            "vertices": None,
        }
    return out


def flip_sample(sample: Sample) -> Sample:
    """Horizontal flip of a square (or any) image with K and all targets."""
    w = sample.image.shape[1]
    K = sample.K.copy()
    K[0, 2] = w - 1 - K[0, 2]
    K[0, 1] = -K[0, 1]
    return replace(
        sample,
        image=np.ascontiguousarray(sample.image[:, ::-1]),
        K=K,
        persons=[flip_person(p, w) for p in sample.persons],
    )


def jitter_colour(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation jitter of +-``amount`` (targets unaffected)."""
    img = image.astype(np.float32)
    img = img * (1.0 + rng.uniform(-amount, amount))
    mean = img.mean()
    img = (img - mean) * (1.0 + rng.uniform(-amount, amount)) + mean
    grey = img.mean(axis=2, keepdims=True)
    img = (img - grey) * (1.0 + rng.uniform(-amount, amount)) + grey
    return np.clip(img, 0, 255).astype(np.uint8)


def prepare_sample(
    sample: Sample,
    size: int,
    augment: AugmentConfig | None = None,
    rng: np.random.Generator | None = None,
    teacher_size: int | None = None,
) -> Sample:
    """Letterbox to ``size`` x ``size`` with optional random scale/shift/flip/colour.

    ``teacher_size``: also the same view at the teacher's size, warped from the original pixels, in
    ``extras['teacher_image']`` / ``extras['teacher_K']`` (same flip, same colour jitter)."""
    square, box = letterbox(sample.image, size)
    A = letterbox_affine(box)
    augmented = augment is not None and augment.enabled
    do_flip = False
    if augmented:
        rng = rng or np.random.default_rng()
        zoom = rng.uniform(*augment.scale)
        c = size / 2.0
        shift = rng.uniform(-augment.shift, augment.shift, size=2) * size
        Z = np.array(
            [[zoom, 0.0, c - zoom * c + shift[0]], [0.0, zoom, c - zoom * c + shift[1]], [0, 0, 1.0]]
        )
        A = (Z @ np.vstack([A, [0, 0, 1.0]]))[:2]
        do_flip = rng.uniform() < augment.flip
    out = warp_sample(sample, A, size, image=None if augmented else square)
    teacher = None
    if teacher_size:
        A_t = (resize_affine(size, teacher_size) @ np.vstack([A, [0, 0, 1.0]]))[:2]
        teacher = Sample(
            image=warp_image(sample.image, A_t, teacher_size),
            K=np.vstack([A_t, [0, 0, 1.0]]) @ sample.K,
            persons=[],
        )
    if do_flip:
        out = flip_sample(out)
        teacher = flip_sample(teacher) if teacher is not None else None
    if augmented and augment.color > 0:
        rng_teacher = copy.deepcopy(rng)  # the same jitter draws for the teacher's view
        out = replace(out, image=jitter_colour(out.image, augment.color, rng))
        if teacher is not None:
            teacher = replace(teacher, image=jitter_colour(teacher.image, augment.color, rng_teacher))
    if teacher is not None:
        out = replace(out, extras={**out.extras, "teacher_image": teacher.image, "teacher_K": teacher.K})
    return out


def normalise_image(image: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8 -> (3,H,W) float, ImageNet mean/std (what timm encoders expect)."""
    x = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def visible_persons(sample: Sample, size: int, min_depth: float = 0.01) -> list[PersonTarget]:
    """Persons whose centre lies inside the network image and in front of the camera."""
    keep = []
    for p in sample.persons:
        x, y = p.center
        if np.isfinite(x) and np.isfinite(y) and 0 <= x < size and 0 <= y < size and p.depth > min_depth:
            keep.append(p)
    return keep


def _stack(values: list[np.ndarray | None], shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-person arrays padded to ``shape``; returns (tensor, row-valid mask)."""
    out = np.zeros((len(values), *shape), np.float32)
    valid = np.zeros(len(values), bool)
    for i, v in enumerate(values):
        if v is None:
            continue
        v = np.asarray(v, np.float32)
        sl = tuple(slice(0, min(a, b)) for a, b in zip(v.shape, shape, strict=False))
        out[(i, *sl)] = v[sl]
        valid[i] = True
    return torch.from_numpy(out), torch.from_numpy(valid)


def collate(samples: list[Sample], size: int, select: bool = True) -> dict:
    """Batch prepared (S x S) samples: images, K and per-person targets stacked over the batch.

    Persons are ordered by image then by depth (nearest first), the order Multi-HMR uses, and only
    those with their centre in the image are kept (``select=False``: all persons in their given order,
    for evaluation). Shape/expression/joint arrays are padded to the largest in the batch.
    """
    persons: list[PersonTarget] = []
    batch_index: list[int] = []
    for b, s in enumerate(samples):
        chosen = sorted(visible_persons(s, size), key=lambda q: q.depth) if select else s.persons
        for p in chosen:
            persons.append(p)
            batch_index.append(b)
    kj = max([len(p.joints_2d) for p in persons if p.joints_2d is not None] or [NUM_BODY_JOINTS])
    ns = max([len(p.shape) for p in persons if p.shape is not None] or [1])
    ne = max([len(p.expression) for p in persons if p.expression is not None] or [1])
    batch = {
        "images": torch.stack([normalise_image(s.image) for s in samples]),
        "K": torch.from_numpy(np.stack([s.K for s in samples]).astype(np.float32)),
        "names": [s.name for s in samples],
        "batch_index": torch.tensor(batch_index, dtype=torch.long),
        "center": torch.from_numpy(np.array([p.center for p in persons], np.float32).reshape(-1, 2)),
        "valid": torch.tensor([p.valid for p in persons], dtype=torch.bool),
    }
    if samples and all("teacher_image" in s.extras for s in samples):
        batch["teacher_images"] = torch.stack([normalise_image(s.extras["teacher_image"]) for s in samples])
        batch["teacher_K"] = torch.from_numpy(
            np.stack([s.extras["teacher_K"] for s in samples]).astype(np.float32)
        )
    batch["rotvec"], batch["has_rotvec"] = _stack([p.rotvec for p in persons], (NUM_SMPLX_POSE_JOINTS, 3))
    rot_valid = [
        p.rot_valid if p.rot_valid is not None else (np.ones(55, bool) if p.rotvec is not None else None)
        for p in persons
    ]
    batch["rot_valid"] = _stack(rot_valid, (NUM_SMPLX_POSE_JOINTS,))[0] > 0.5
    batch["shape"], batch["has_shape"] = _stack([p.shape for p in persons], (ns,))
    batch["expression"], batch["has_expression"] = _stack([p.expression for p in persons], (ne,))
    batch["transl"], batch["has_transl"] = _stack([p.transl for p in persons], (3,))
    batch["joints_3d"], batch["has_joints_3d"] = _stack([p.joints_3d for p in persons], (kj, 3))
    batch["joints_2d"], _ = _stack([p.joints_2d for p in persons], (kj, 2))
    j2v = [
        (p.joints_2d_valid if p.joints_2d_valid is not None else np.ones(len(p.joints_2d), bool))
        if p.joints_2d is not None
        else None
        for p in persons
    ]
    batch["joints_2d_valid"] = _stack(j2v, (kj,))[0] > 0.5
    nv = max([len(p.vertices) for p in persons if p.vertices is not None] or [1])
    batch["vertices"], batch["has_vertices"] = _stack([p.vertices for p in persons], (nv, 3))
    batch["num_vertices"] = torch.tensor(
        [len(p.vertices) if p.vertices is not None else 0 for p in persons], dtype=torch.long
    )
    native = [p.native for p in persons]
    first = next((n for n in native if n is not None), None)
    batch["native_body"] = first["body"] if first is not None else None
    if first is not None:
        nj, nk = len(first["pose_joint_names"]), len(first["joints"])
        same = [n if n is not None and n["body"] == first["body"] else None for n in native]
        batch["native_rotmats"], batch["has_native_rotmats"] = _stack(
            [n["rotmats"] if n is not None else None for n in same],
            first["rotmats"].shape if first["rotmats"] is not None else (nj, 3, 3),
        )
        batch["native_shape"], batch["has_native"] = _stack(
            [n["shape"] if n is not None else None for n in same], first["shape"].shape
        )
        batch["native_transl_pelvis"], _ = _stack(
            [n["transl_pelvis"] if n is not None else None for n in same], (3,)
        )
        batch["native_joints"], _ = _stack([n["joints"] if n is not None else None for n in same], (nk, 3))
        batch["native_joints_2d"], _ = _stack(
            [n["joints_2d"] if n is not None else None for n in same], (nk, 2)
        )
        batch["native_joints_visible"] = (
            _stack([n["joints_visible"] if n is not None else None for n in same], (nk,))[0] > 0.5
        )
        nv = [n["vertices"] if n is not None else None for n in same]
        first_v = next((v for v in nv if v is not None), None)
        if first_v is not None:
            batch["native_vertices"], batch["has_native_vertices"] = _stack(nv, first_v.shape)
    batch["joints_3d_valid"] = batch["has_joints_3d"][:, None] & (
        torch.arange(kj)[None]
        < torch.tensor(
            [len(p.joints_3d) if p.joints_3d is not None else 0 for p in persons], dtype=torch.long
        )[:, None]
    )
    return batch


def token_cells(center: torch.Tensor, grid: tuple[int, int], size: int) -> torch.Tensor:
    """Token index (row * w + col) of each 2-D centre on an h x w grid over an S x S image."""
    h, w = grid
    col = (center[:, 0] / (size / w)).floor().long().clamp(0, w - 1)
    row = (center[:, 1] / (size / h)).floor().long().clamp(0, h - 1)
    return row * w + col


def token_locations(
    center: torch.Tensor,
    batch_index: torch.Tensor,
    batch_size: int,
    grid: tuple[int, int],
    size: int,
    valid: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Token index of each person's centre on an h x w grid over an S x S image.

    Returns (per-image LongTensors of token indices as ``forward_train`` wants them, a keep mask over
    persons (False for a second person falling in an already taken cell: the nearer one keeps it, and
    for persons with ``valid`` False: AGORA's rule, neither positive nor negative), and the sub-cell
    offset target (P,2) = centre / stride - (cell + 0.5), in cells).
    """
    h, w = grid
    stride_x, stride_y = size / w, size / h
    token = token_cells(center, grid, size)
    col, row = token % w, token // w
    keep = torch.ones(len(center), dtype=torch.bool) if valid is None else valid.clone().bool()
    seen: set[tuple[int, int]] = set()
    for i, (b, t) in enumerate(zip(batch_index.tolist(), token.tolist(), strict=False)):
        if not keep[i]:
            continue
        if (b, t) in seen:
            keep[i] = False
        seen.add((b, t))
    locations = [token[keep & (batch_index == b)] for b in range(batch_size)]
    offset = torch.stack(
        [center[:, 0] / stride_x - (col + 0.5), center[:, 1] / stride_y - (row + 0.5)], dim=-1
    )
    return locations, keep, offset


def ignored_cells(
    center: torch.Tensor,
    batch_index: torch.Tensor,
    valid: torch.Tensor,
    batch_size: int,
    grid: tuple[int, int],
    size: int,
) -> torch.Tensor:
    """(B, h*w) bool: cells of persons the protocol ignores (``valid`` False) that no valid person holds."""
    mask = torch.zeros(batch_size, grid[0] * grid[1], dtype=torch.bool)
    cells = token_cells(center, grid, size)
    mask[batch_index[~valid], cells[~valid]] = True
    mask[batch_index[valid], cells[valid]] = False
    return mask
