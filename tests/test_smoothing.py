"""One-Euro smoothing per track: less jitter with bounded lag, rotations filtered on the group."""
from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.human import Human
from lighthmr_ros.smoothing import (
    OneEuroParams,
    Smoother,
    SmoothingParams,
    angular_error,
    jitter,
    lag_seconds,
    measure,
    params_from_flat,
    rebuild_meshes,
)


def _human(track: int, translation, pose, shape=None, vertices=None) -> Human:
    pose = np.asarray(pose, dtype=np.float32).reshape(-1, 3)
    return Human(id=track, score=0.9, center_2d=np.zeros(2, np.float32),
                 translation=np.asarray(translation, dtype=np.float32), pose=pose,
                 shape=np.zeros(6, np.float32) if shape is None else np.asarray(shape, np.float32),
                 expression=np.zeros(0, np.float32), joints=np.zeros((2, 3), np.float32),
                 joints_2d=np.zeros((2, 2), np.float32), vertices=vertices)


def test_filter_reduces_jitter_with_bounded_lag():
    raw, smooth = measure(seconds=4.0)
    assert smooth.translation_jitter < raw.translation_jitter / 2.5
    assert smooth.rotation_jitter < raw.rotation_jitter / 2.5
    assert smooth.translation_lag_s <= 0.1 and smooth.rotation_lag_s <= 0.1
    # less shaking must not cost accuracy: the mean error stays at most that of the raw estimates
    assert smooth.translation_error_m <= raw.translation_error_m
    assert smooth.rotation_error_deg <= raw.rotation_error_deg


def test_rotations_are_filtered_on_the_group_not_as_vectors():
    # 179 and 181 degrees about x are 2 degrees apart; their axis-angle vectors point in opposite
    # directions, so an average of vectors would land near the identity, 180 degrees away
    a = np.array([math.radians(179.0), 0.0, 0.0])
    b = roma.rotmat_to_rotvec(roma.rotvec_to_rotmat(torch.tensor([math.radians(181.0), 0.0, 0.0]))).numpy()
    assert b[0] < 0
    smoother = Smoother(SmoothingParams(rotation=OneEuroParams(min_cutoff=1.0, beta=0.0)))
    smoother.update([_human(3, [0, 0, 3], a)], 0.0)
    out = smoother.update([_human(3, [0, 0, 3], b)], 1 / 30)[0]
    to_a = angular_error(out.pose, a[None])[0]
    to_b = angular_error(out.pose, b[None])[0]
    assert to_a < math.radians(2.0) and to_b < math.radians(2.0) and to_a > 1e-4  # between the two


def test_parameters_change_at_runtime_and_untracked_people_pass_through():
    smoother = Smoother(SmoothingParams(translation=OneEuroParams(min_cutoff=0.1, beta=0.0)))
    smoother.update([_human(1, [0, 0, 3], np.zeros(3))], 0.0)
    slow = smoother.update([_human(1, [1, 0, 3], np.zeros(3))], 0.1)[0]
    assert 0.0 < slow.translation[0] < 0.1  # heavy smoothing: moves a little toward the measurement
    smoother.params = SmoothingParams(translation=OneEuroParams(min_cutoff=1e4, beta=0.0))
    fast = smoother.update([_human(1, [2, 0, 3], np.zeros(3))], 0.2)[0]
    assert fast.translation[0] == pytest.approx(2.0, abs=1e-3)  # the new cut-off applies at once
    untracked = _human(0, [5, 0, 3], np.ones(3))
    assert smoother.update([untracked], 0.3)[0] is untracked


def test_vertices_and_joints_follow_the_filtered_translation_and_gaps_restart():
    smoother = Smoother()
    verts = np.zeros((4, 3), np.float32)
    smoother.update([_human(2, [0, 0, 3], np.zeros(3), vertices=verts)], 0.0)
    out = smoother.update([_human(2, [0.5, 0, 3], np.zeros(3), vertices=verts + [0.5, 0, 3])], 0.05)[0]
    shift = out.translation - np.array([0.5, 0, 3])
    assert abs(shift[0]) > 1e-3
    np.testing.assert_allclose(out.vertices, verts + [0.5, 0, 3] + shift, atol=1e-6)
    # after a gap longer than max_gap_s the track restarts from its measurement
    later = smoother.update([_human(2, [3.0, 0, 3], np.zeros(3))], 5.0)[0]
    np.testing.assert_allclose(later.translation, [3.0, 0, 3])


def test_parameter_checks():
    with pytest.raises(ConfigError, match="min_cutoff > 0"):
        OneEuroParams(min_cutoff=0.0)
    with pytest.raises(ConfigError, match="beta >= 0"):
        OneEuroParams(beta=-1.0)
    with pytest.raises(ConfigError, match="max_gap_s"):
        SmoothingParams(max_gap_s=float("nan"))


def test_jitter_and_lag_measures():
    t = np.arange(100) / 30.0
    line = np.stack([t, 2 * t], 1)
    assert jitter(line, 1 / 30) == pytest.approx(0.0, abs=1e-9)  # constant speed: no acceleration
    wave = np.sin(2 * np.pi * 0.5 * t)[:, None]
    delayed = np.concatenate([wave[:3], wave[:-3]])
    assert lag_seconds(delayed, wave, 1 / 30) == pytest.approx(0.1)


def test_rebuild_meshes_matches_the_body_model(anny_body):
    rng = np.random.default_rng(0)
    pose = rng.normal(0, 0.2, (anny_body.spec.num_pose_joints, 3)).astype(np.float32)
    shape = np.full(6, 0.5, np.float32)
    human = _human(1, [0.2, -0.1, 3.0], pose, shape=shape, vertices=np.zeros((1, 3)))
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    out = rebuild_meshes([human], anny_body, K)[0]
    assert out.vertices.shape == (anny_body.spec.num_vertices, 3)
    np.testing.assert_allclose(out.joints[anny_body.spec.pelvis_index], [0.2, -0.1, 3.0], atol=1e-5)
    uv = out.joints[:, :2] / out.joints[:, 2:] * 500.0 + [320, 240]
    np.testing.assert_allclose(out.joints_2d, uv, atol=1e-3)
    with torch.no_grad():
        body = anny_body(roma.rotvec_to_rotmat(torch.from_numpy(pose))[None], torch.from_numpy(shape)[None])
    ref = body.vertices[0] - body.joints[0, 0] + torch.tensor([0.2, -0.1, 3.0])
    np.testing.assert_allclose(out.vertices, ref.numpy(), atol=1e-5)


def test_flat_parameters_as_ros_sets_them():
    base = SmoothingParams()
    p = params_from_flat({"rotation_beta": 0.9, "d_cutoff": 2.0, "max_gap_s": 1.5}, base)
    assert p.rotation.beta == 0.9 and p.rotation.min_cutoff == base.rotation.min_cutoff
    assert p.translation.d_cutoff == p.rotation.d_cutoff == p.shape.d_cutoff == 2.0 and p.max_gap_s == 1.5
    assert params_from_flat({}, base) == base
    with pytest.raises(ConfigError, match="unknown smoothing parameter"):
        params_from_flat({"rotation_alpha": 1.0})
    with pytest.raises(ConfigError, match="min_cutoff > 0"):
        params_from_flat({"translation_min_cutoff": 0.0})
