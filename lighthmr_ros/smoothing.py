"""Steady meshes: a One-Euro filter per track on translation, shape and joint rotations.

Why One-Euro (Casiez et al., CHI 2012): a low-pass filter whose cut-off rises with the speed of
the signal, so a person standing still stops shaking while a person walking is followed with
little lag. Two parameters matter: ``min_cutoff`` (Hz; lower = steadier at rest) and ``beta``
(how fast the cut-off rises with speed; higher = less lag when moving).

Rotations are filtered on the rotation group, never by averaging axis-angle vectors (whose
average is not a rotation between the two, and flips near 180 degrees): the speed is the angle
of the relative rotation from the last filtered rotation to the new one, and the new filtered
rotation moves from the last one toward the measurement by the filter's share of that relative
rotation (a slerp, through roma).

Joints and vertices follow the filtered parameters: either shifted by the translation change
(cheap, rotations not applied) or rebuilt with the body model (``rebuild_meshes``).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import roma
import torch

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.human import Human


@dataclass(frozen=True)
class OneEuroParams:
    """min_cutoff (Hz) at rest, beta (s/unit) rise of the cut-off with speed, d_cutoff (Hz) for the speed."""

    min_cutoff: float = 1.0
    beta: float = 0.5
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        values = (self.min_cutoff, self.beta, self.d_cutoff)
        finite = all(math.isfinite(v) for v in values)
        if not finite or self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise ConfigError(f"One-Euro parameters need min_cutoff > 0, d_cutoff > 0 and beta >= 0, got "
                              f"min_cutoff={self.min_cutoff}, beta={self.beta}, d_cutoff={self.d_cutoff}.")


@dataclass(frozen=True)
class SmoothingParams:
    """Filter settings; translation speeds are in m/s, rotation speeds in rad/s.

    max_gap_s: a track unseen for longer restarts from its next measurement (no smoothing across gaps).
    """

    translation: OneEuroParams = OneEuroParams(min_cutoff=0.5, beta=2.0)
    rotation: OneEuroParams = OneEuroParams(min_cutoff=1.5, beta=0.5)
    shape: OneEuroParams = OneEuroParams(min_cutoff=0.3, beta=0.0)
    max_gap_s: float = 0.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_gap_s) and self.max_gap_s > 0):
            raise ConfigError(f"max_gap_s must be a positive number of seconds, got {self.max_gap_s}.")


FLAT_NAMES = ("translation_min_cutoff", "translation_beta", "rotation_min_cutoff", "rotation_beta",
              "shape_min_cutoff", "shape_beta", "d_cutoff", "max_gap_s")


def params_from_flat(values: dict[str, float], base: SmoothingParams | None = None) -> SmoothingParams:
    """SmoothingParams from flat names (ROS parameters are scalars), e.g. {"rotation_beta": 0.8}.

    Names not given keep their value in ``base``; d_cutoff applies to all three filters.
    """
    base = base or SmoothingParams()
    unknown = sorted(set(values) - set(FLAT_NAMES))
    if unknown:
        raise ConfigError(f"unknown smoothing parameter(s) {unknown}; use {', '.join(FLAT_NAMES)}.")

    def filt(name: str, old: OneEuroParams) -> OneEuroParams:
        return OneEuroParams(min_cutoff=float(values.get(f"{name}_min_cutoff", old.min_cutoff)),
                             beta=float(values.get(f"{name}_beta", old.beta)),
                             d_cutoff=float(values.get("d_cutoff", old.d_cutoff)))

    return SmoothingParams(translation=filt("translation", base.translation),
                           rotation=filt("rotation", base.rotation), shape=filt("shape", base.shape),
                           max_gap_s=float(values.get("max_gap_s", base.max_gap_s)))


def smoothing_factor(dt: float | np.ndarray, cutoff: float | np.ndarray) -> np.ndarray:
    """Exponential smoothing weight of the new sample for a first-order low-pass at ``cutoff`` Hz."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


@dataclass
class _TrackState:
    stamp_s: float
    translation: np.ndarray
    translation_speed: np.ndarray  # (3,) filtered velocity, m/s
    shape: np.ndarray
    shape_speed: np.ndarray
    rotations: torch.Tensor  # (J, 4) filtered unit quaternions (x, y, z, w), float64
    rotation_speed: np.ndarray  # (J,) filtered angular speed, rad/s


def _euro_vector(x: np.ndarray, prev: np.ndarray, prev_speed: np.ndarray, dt: float, p: OneEuroParams):
    """One One-Euro step on a vector (speed filtered per component); returns (filtered, filtered speed)."""
    speed = (x - prev) / dt
    speed_hat = prev_speed + smoothing_factor(dt, p.d_cutoff) * (speed - prev_speed)
    cutoff = p.min_cutoff + p.beta * np.linalg.norm(speed_hat)
    return prev + smoothing_factor(dt, cutoff) * (x - prev), speed_hat


def _euro_rotations(quat: torch.Tensor, prev: torch.Tensor, prev_speed: np.ndarray, dt: np.ndarray,
                    p: OneEuroParams):
    """One One-Euro step per rotation, on the rotation group: a slerp from prev toward quat.

    quat, prev (P, J, 4) unit quaternions of P people; prev_speed (P, J); dt (P,). All people of a
    frame go through in one batch (the per-call cost of small tensor operations dominates).
    """
    delta = roma.unitquat_to_rotvec(roma.quat_product(roma.quat_conjugation(prev), quat))  # tangent at prev
    dt = dt[:, None]
    speed = delta.norm(dim=-1).numpy() / dt
    speed_hat = prev_speed + smoothing_factor(dt, p.d_cutoff) * (speed - prev_speed)
    alpha = smoothing_factor(dt, p.min_cutoff + p.beta * speed_hat)
    step = roma.rotvec_to_unitquat(delta * torch.from_numpy(alpha)[..., None])
    return roma.quat_product(prev, step), speed_hat


class Smoother:
    """One-Euro filters per track id (id 0 = untracked people pass through unchanged).

    ``update`` takes one image's Human records and returns filtered copies. ``params`` may be
    replaced at any time (a ROS parameter callback): the next update uses the new values and the
    filter states are kept.
    """

    def __init__(self, params: SmoothingParams | None = None):
        self.params = params or SmoothingParams()
        self._tracks: dict[int, _TrackState] = {}

    def reset(self) -> None:
        self._tracks.clear()

    def update(self, humans: Sequence[Human], stamp_s: float) -> list[Human]:
        stamp_s = float(stamp_s)
        p = self.params
        out = list(humans)
        tracked = [i for i, h in enumerate(humans) if h.id != 0]
        if tracked:
            poses = np.stack([np.asarray(humans[i].pose, dtype=np.float64).reshape(-1, 3) for i in tracked])
            quats = roma.rotvec_to_unitquat(torch.from_numpy(poses))
            going: list[tuple[int, int, _TrackState]] = []  # (index in humans, index in tracked, state)
            for k, i in enumerate(tracked):
                h, state = humans[i], self._tracks.get(humans[i].id)
                dt = stamp_s - state.stamp_s if state is not None else 0.0
                fits = state is not None and state.rotations.shape == quats[k].shape \
                    and state.shape.shape == np.shape(h.shape)
                if state is None or not fits or not (0.0 < dt <= p.max_gap_s):
                    self._tracks[h.id] = _TrackState(
                        stamp_s, np.asarray(h.translation, dtype=np.float64).reshape(3), np.zeros(3),
                        np.asarray(h.shape, dtype=np.float64).reshape(-1), np.zeros(np.size(h.shape)),
                        quats[k], np.zeros(len(quats[k])))
                else:
                    going.append((i, k, state))
            if going:
                self._filter(humans, quats, going, stamp_s, out)
        self._tracks = {k: s for k, s in self._tracks.items() if stamp_s - s.stamp_s <= p.max_gap_s}
        return out

    def _filter(self, humans: Sequence[Human], quats: torch.Tensor, going, stamp_s: float,
                out: list) -> None:
        p = self.params
        dts = np.array([stamp_s - state.stamp_s for _, _, state in going])
        prev = torch.stack([state.rotations for _, _, state in going])
        prev_speed = np.stack([state.rotation_speed for _, _, state in going])
        r_new, r_speed = _euro_rotations(quats[[k for _, k, _ in going]], prev, prev_speed, dts, p.rotation)
        rotvecs = roma.unitquat_to_rotvec(r_new).numpy()
        for n, (i, _, state) in enumerate(going):
            h = humans[i]
            t = np.asarray(h.translation, dtype=np.float64).reshape(3)
            shape = np.asarray(h.shape, dtype=np.float64).reshape(-1)
            t_new, t_speed = _euro_vector(t, state.translation, state.translation_speed, dts[n],
                                          p.translation)
            s_new, s_speed = _euro_vector(shape, state.shape, state.shape_speed, dts[n], p.shape)
            self._tracks[h.id] = _TrackState(stamp_s, t_new, t_speed, s_new, s_speed, r_new[n], r_speed[n])
            shift = (t_new - t).astype(np.float32)
            out[i] = dataclasses.replace(
                h,
                translation=t_new.astype(np.asarray(h.translation).dtype),
                pose=rotvecs[n].astype(np.asarray(h.pose).dtype).reshape(np.shape(h.pose)),
                shape=s_new.astype(np.asarray(h.shape).dtype),
                joints=np.asarray(h.joints) + shift,
                vertices=None if h.vertices is None else np.asarray(h.vertices) + shift,
                extras={**h.extras, "smoothed": True},
            )


def rebuild_meshes(humans: Sequence[Human], body, K: np.ndarray,
                   pelvis_index: int | None = None) -> list[Human]:
    """Joints, 2D joints and vertices recomputed from each Human's (filtered) pose, shape and translation.

    body: a lighthmr_ros BodyModel (canonical frame, global orientation about the pelvis). The
    mesh is placed so that its pelvis joint sits at ``translation``, as the Predictor does.
    """
    if not humans:
        return []
    pelvis = body.spec.pelvis_index if pelvis_index is None else pelvis_index
    dev = next(iter(body.buffers()), torch.zeros(0)).device
    pose = np.stack([np.asarray(h.pose, dtype=np.float32).reshape(-1, 3) for h in humans])
    rot = roma.rotvec_to_rotmat(torch.from_numpy(pose)).to(dev)
    shape = torch.as_tensor(np.stack([np.asarray(h.shape, dtype=np.float32) for h in humans])).to(dev)
    expr = None
    if body.spec.num_expression:
        expr = torch.as_tensor(np.stack([np.asarray(h.expression, dtype=np.float32) for h in humans])).to(dev)
    with torch.no_grad():
        outb = body(rot, shape, expr)
    trans = torch.as_tensor(np.stack([np.asarray(h.translation, dtype=np.float32) for h in humans])).to(dev)
    offset = trans[:, None] - outb.joints[:, pelvis : pelvis + 1]
    joints = (outb.joints + offset).cpu().numpy()
    verts = (outb.vertices + offset).cpu().numpy()
    K = np.asarray(K, dtype=np.float64)
    uvw = joints.astype(np.float64) @ K.T
    joints_2d = (uvw[..., :2] / np.maximum(uvw[..., 2:], 1e-6)).astype(np.float32)
    return [dataclasses.replace(h, joints=joints[i], joints_2d=joints_2d[i],
                                vertices=verts[i] if h.vertices is not None else None)
            for i, h in enumerate(humans)]


# ---------------------------------------------------------------- measurement


def jitter(positions: np.ndarray, dt: float) -> float:
    """Mean frame-to-frame acceleration magnitude (units/s^2) of a (T, D) sequence sampled every dt."""
    x = np.asarray(positions, dtype=np.float64)
    acc = (x[2:] - 2 * x[1:-1] + x[:-2]) / dt**2
    return float(np.linalg.norm(acc.reshape(len(acc), -1), axis=1).mean())


def lag_seconds(estimate: np.ndarray, truth: np.ndarray, dt: float, max_shift: int = 30) -> float:
    """Delay (s) of ``estimate`` behind ``truth``: the shift that best aligns them (least squares)."""
    e, g = np.asarray(estimate, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    errors = [float(((e[k:] - g[: len(g) - k]) ** 2).mean()) for k in range(max_shift + 1)]
    return int(np.argmin(errors)) * dt


def angular_jitter(rotvecs: np.ndarray, dt: float) -> float:
    """Mean angular acceleration (rad/s^2) of (T, J, 3) rotations: second difference on the group."""
    rot = roma.rotvec_to_rotmat(torch.as_tensor(np.asarray(rotvecs, dtype=np.float64)))
    vel = roma.rotmat_to_rotvec(rot[:-1].transpose(-1, -2) @ rot[1:]) / dt  # body-frame angular velocity
    acc = (vel[1:] - vel[:-1]) / dt
    return float(acc.norm(dim=-1).mean())


def angular_error(rotvecs: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Geodesic angle (rad) between two (..., 3) axis-angle arrays, elementwise."""
    a = roma.rotvec_to_rotmat(torch.as_tensor(np.asarray(rotvecs, dtype=np.float64)))
    b = roma.rotvec_to_rotmat(torch.as_tensor(np.asarray(truth, dtype=np.float64)))
    return roma.rotmat_geodesic_distance(a, b).numpy()


@dataclass
class SmoothingFigures:
    """Jitter (mean acceleration), lag and mean error of one sequence against its truth."""

    translation_jitter: float  # m/s^2
    translation_lag_s: float
    translation_error_m: float
    rotation_jitter: float  # rad/s^2
    rotation_lag_s: float
    rotation_error_deg: float


def noisy_walk(seconds: float = 10.0, fps: float = 30.0, joints: int = 24, seed: int = 0,
               noise_m: tuple[float, float, float] = (0.02, 0.02, 0.06), noise_deg: float = 3.0):
    """A person walking back and forth with swinging joints, and a noisy copy of it.

    Returns (stamps (T,), true translation (T, 3), true pose (T, J, 3), noisy translation, noisy pose).
    Depth noise is larger than lateral noise, as in monocular estimates.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fps)) / fps
    trans = np.stack([1.2 * np.sin(2 * np.pi * 0.15 * t), 0.1 * np.sin(2 * np.pi * 0.9 * t),
                      4.0 + 1.0 * np.sin(2 * np.pi * 0.1 * t)], 1)
    freq = rng.uniform(0.3, 1.0, (joints, 3))
    phase = rng.uniform(0, 2 * np.pi, (joints, 3))
    amp = rng.uniform(0.05, 0.5, (joints, 3))
    pose = amp * np.sin(2 * np.pi * freq * t[:, None, None] + phase)
    pose[:, 0] = [np.pi, 0.0, 0.0] + np.stack([0.0 * t, 0.6 * np.sin(2 * np.pi * 0.1 * t), 0.0 * t], 1)
    noise_rot = roma.rotvec_to_rotmat(torch.from_numpy(rng.normal(0, math.radians(noise_deg), pose.shape)))
    noisy_pose = roma.rotmat_to_rotvec(roma.rotvec_to_rotmat(torch.from_numpy(pose)) @ noise_rot).numpy()
    noisy_trans = trans + rng.normal(0, 1, trans.shape) * np.asarray(noise_m)
    return t, trans, pose, noisy_trans, noisy_pose


def figures(trans: np.ndarray, pose: np.ndarray, true_trans: np.ndarray, true_pose: np.ndarray,
            dt: float) -> SmoothingFigures:
    """Jitter, lag and error of an estimated sequence (translation (T, 3), pose (T, J, 3))."""
    errors = [float(angular_error(pose[k:], true_pose[: len(true_pose) - k]).mean()) for k in range(31)]
    return SmoothingFigures(
        translation_jitter=jitter(trans, dt),
        translation_lag_s=lag_seconds(trans, true_trans, dt),
        translation_error_m=float(np.linalg.norm(trans - true_trans, axis=1).mean()),
        rotation_jitter=angular_jitter(pose, dt),
        rotation_lag_s=int(np.argmin(errors)) * dt,
        rotation_error_deg=math.degrees(float(angular_error(pose, true_pose).mean())),
    )


def measure(params: SmoothingParams | None = None, **walk) -> tuple[SmoothingFigures, SmoothingFigures]:
    """Figures of the noisy walk without and with the filter: (raw, filtered)."""
    stamps, trans, pose, noisy_t, noisy_p = noisy_walk(**walk)
    smoother = Smoother(params)
    out_t, out_p = [], []
    shape = np.zeros(6, dtype=np.float32)
    for s, t, p in zip(stamps, noisy_t, noisy_p, strict=True):
        h = Human(id=1, score=1.0, center_2d=np.zeros(2), translation=t, pose=p, shape=shape,
                  expression=np.zeros(0), joints=np.zeros((1, 3)), joints_2d=np.zeros((1, 2)))
        f = smoother.update([h], float(s))[0]
        out_t.append(f.translation)
        out_p.append(f.pose)
    dt = float(stamps[1] - stamps[0])
    raw = figures(noisy_t, noisy_p, trans, pose, dt)
    return raw, figures(np.stack(out_t), np.stack(out_p), trans, pose, dt)
