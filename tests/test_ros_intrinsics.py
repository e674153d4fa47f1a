"""CameraInfo -> the pinhole camera the network sees: P for rectified images, K + undistortion for raw ones.

Ground truth comes from OpenCV's own projection of known 3D points through K and D (a different code
path from the undistortion maps and from our point distortion): a wrong matrix, a missing or doubled
distortion, or a wrong direction (distorting instead of undistorting) moves a point by many pixels.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")
from sensor_msgs.msg import CameraInfo  # noqa: E402

from lighthmr_ros.ros.intrinsics import (  # noqa: E402
    CameraModel,
    Undistorter,
    camera_model,
    distort_points,
    k_from_camera_info,
    supported,
)
from lighthmr_ros.ros.pipeline import intrinsics_label, is_rectified_topic  # noqa: E402

W, H = 640, 480
K = np.array([[420.0, 0, 330], [0, 415, 236], [0, 0, 1]])
D_STRONG = np.array([-0.35, 0.14, 0.001, -0.002, -0.03])  # strong barrel, like a wide-angle webcam
# A rectified camera: image_proc rescales and recentres, so P differs from K.
P = np.array([[380.0, 0, 318, 0], [0, 380, 244, 0], [0, 0, 1, 0]])


def _info(d=(), model="plumb_bob", p=None, width=W, height=H) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model=model)
    info.k = K.reshape(-1).tolist()
    info.d = list(map(float, d))
    info.p = (P if p is None else p).reshape(-1).tolist()
    return info


def _points3d(n=60, seed=0) -> np.ndarray:
    """Points inside a 60 degree cone 2-5 m ahead: they land well inside the image."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-0.5, 0.5, size=(n, 2))
    z = rng.uniform(2.0, 5.0, size=(n, 1))
    return np.concatenate([xy * z, z], axis=1)


def _project(points, k, d=None) -> np.ndarray:
    d = np.zeros(5) if d is None else d
    return cv2.projectPoints(points, np.zeros(3), np.zeros(3), k, d)[0].reshape(-1, 2)


def test_rectified_images_use_p_not_k():
    model = camera_model(_info(D_STRONG), W, H, rectified=True)
    assert model.source == "P" and not model.distorted  # D is already applied to a rectified image
    np.testing.assert_allclose(model.k, P[:, :3])
    half = camera_model(_info(D_STRONG), W // 2, H // 2, rectified=True)
    np.testing.assert_allclose(half.k, [[190, 0, 159], [0, 190, 122], [0, 0, 1]])
    # Uncalibrated drivers publish P = 0: K is the best there is.
    unset = camera_model(_info(p=np.zeros((3, 4))), W, H, rectified=True)
    assert unset.source == "K"
    np.testing.assert_allclose(unset.k, K)
    assert intrinsics_label(model) == "camera_info P (rectified)"


def test_raw_images_use_k_and_keep_d():
    model = camera_model(_info(D_STRONG), W, H)
    np.testing.assert_allclose(model.k, K)
    assert model.distorted and model.distortion_model == "plumb_bob"
    np.testing.assert_allclose(model.d, D_STRONG)
    np.testing.assert_allclose(k_from_camera_info(_info(D_STRONG), W, H), K)
    assert not camera_model(_info([0.0] * 5), W, H).distorted
    assert intrinsics_label(model) == "camera_info K+D (plumb_bob, undistorted)"
    assert supported(model) and not supported(CameraModel(K, D_STRONG, "weird_model"))


def test_distort_points_lands_where_opencv_projects_through_k_and_d():
    points = _points3d()
    model = camera_model(_info(D_STRONG), W, H)
    ideal = _project(points, K)  # where the undistorted (pinhole) image shows them
    raw = _project(points, K, D_STRONG)  # where the raw image shows them
    assert np.abs(raw - ideal).max() > 20  # the distortion is strong enough to matter
    np.testing.assert_allclose(distort_points(ideal, model), raw, atol=1e-6)
    no_d = CameraModel(K)
    np.testing.assert_array_equal(distort_points(ideal, no_d), ideal)


def test_fisheye_points_follow_opencv_fisheye():
    d = np.array([0.08, -0.02, 0.004, -0.001])
    model = camera_model(_info(d, model="equidistant"), W, H)
    points = _points3d()
    ideal = _project(points, K)
    raw = cv2.fisheye.projectPoints(points[:, None, :], np.zeros(3), np.zeros(3), K, d)[0].reshape(-1, 2)
    np.testing.assert_allclose(distort_points(ideal, model), raw, atol=1e-4)


def test_undistorting_a_raw_image_puts_points_where_the_pinhole_k_projects_them():
    """Dots drawn where K+D puts 3D points (a raw image) come out where K alone puts them."""
    points = _points3d(n=12, seed=3)
    raw_px, ideal_px = _project(points, K, D_STRONG), _project(points, K)
    assert np.linalg.norm(raw_px - ideal_px, axis=1).max() > 10  # undistortion has to move them
    model = camera_model(_info(D_STRONG), W, H)
    undistorter = Undistorter()
    for raw_pt, ideal_pt in zip(raw_px, ideal_px, strict=True):
        image = np.zeros((H, W, 3), np.uint8)
        cv2.circle(image, tuple(int(round(v)) for v in raw_pt), 3, (255, 255, 255), -1)
        out = undistorter.image(image, model)
        ys, xs = np.nonzero(out[..., 0] > 127)
        centre = np.array([xs.mean(), ys.mean()])
        assert np.linalg.norm(centre - ideal_pt) < 1.5, (raw_pt, ideal_pt, centre)
    plain = np.full((H, W, 3), 7, np.uint8)
    assert undistorter.image(plain, CameraModel(K)) is plain  # no distortion: no copy, no remap


@pytest.mark.parametrize("d", [[], [np.nan, 0, 0, 0, 0]])
def test_missing_or_broken_distortion_is_ignored(d):
    assert not camera_model(_info(d), W, H).distorted


@pytest.mark.parametrize(("topic", "rectified"), [
    ("/cam/image_rect", True), ("/cam/image_rect_color", True), ("/cam/image_rect/compressed", True),
    ("/cam/image_raw", False), ("/cam/image", False), ("/cam/image_raw/compressed", False), ("", False),
    ("/rect/image_raw", False),
])
def test_rectified_topic_names(topic, rectified):
    assert is_rectified_topic(topic) is rectified
