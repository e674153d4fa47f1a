"""FramePipeline with the real Predictor: a batch of frames in, the node's messages out, frame by frame."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros]

from rclpy.serialization import deserialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from lighthmr_ros.errors import ImageError  # noqa: E402
from lighthmr_ros.ros.image import rgb_to_image_msg  # noqa: E402
from lighthmr_ros.ros.intrinsics import camera_model, distort_points  # noqa: E402
from lighthmr_ros.ros.pipeline import (  # noqa: E402
    MARKER_LIFETIME_MAX_S,
    Frame,
    FramePipeline,
    PipelineOptions,
)

W, H = 320, 240
RGB = np.random.default_rng(0).integers(0, 255, size=(H, W, 3), dtype=np.uint8)
OPTS = PipelineOptions(det_threshold=0.0, max_humans=2, marker_decimation=4)


class CountingPredictor:
    """The real Predictor, counting its predict calls (the batch must take one)."""

    def __init__(self, predictor):
        self._predictor, self.calls = predictor, 0

    def __getattr__(self, name):
        return getattr(self._predictor, name)

    def predict(self, *args, **kwargs):
        self.calls += 1
        return self._predictor.predict(*args, **kwargs)


def _raw(sec: int, nsec: int = 0, frame_id: str = "cam_optical"):
    msg = rgb_to_image_msg(RGB)
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, nsec, frame_id
    return msg


def _jpeg(sec: int):
    msg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", RGB[..., ::-1])[1].tobytes())
    msg.header.stamp.sec, msg.header.frame_id = sec, "cam2_optical"
    return msg


def _info(d=()) -> CameraInfo:
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
    info.k = [200.0, 0, 160, 0, 200, 120, 0, 0, 1]
    info.d = list(map(float, d))
    return info


def test_a_batch_runs_the_predictor_once_and_answers_each_frame(ros_predictor):
    counting = CountingPredictor(ros_predictor)
    pipeline = FramePipeline(counting, OPTS)
    broken = _raw(3)
    broken.data = bytes(10)  # truncated: rejected alone, the others still answered
    frames = [Frame(_raw(1), stream="a"), Frame(broken, stream="c"), Frame(_jpeg(2), _info(), stream="b")]
    outs = pipeline.process(frames)
    assert counting.calls == 1
    assert isinstance(outs[1].error, ImageError) and outs[1].humans_msg is None
    first, third = outs[0].humans_msg, outs[2].humans_msg
    assert (first.header.stamp.sec, first.header.frame_id) == (1, "cam_optical")
    assert (third.header.stamp.sec, third.header.frame_id) == (2, "cam2_optical")
    np.testing.assert_allclose(np.reshape(first.k, (3, 3)), ros_predictor.default_K(W, H, 60.0), rtol=1e-6)
    np.testing.assert_allclose(np.reshape(third.k, (3, 3)), [[200, 0, 160], [0, 200, 120], [0, 0, 1]])
    assert (outs[0].intrinsics, outs[2].intrinsics) == ("fov_deg", "camera_info")
    assert 1 <= len(first.humans) <= 2 and all(h.id > 0 for h in first.humans)  # tracked per stream
    markers = deserialize_message(outs[0].markers_cdr, MarkerArray)
    assert markers.markers[0].action == Marker.DELETEALL
    assert {m.header.frame_id for m in markers.markers} == {"cam_optical"}
    assert outs[0].debug_image is None  # not asked for


def test_marker_lifetime_follows_the_frame_rate(ros_predictor):
    pipeline = FramePipeline(ros_predictor, OPTS)

    def lifetime(sec, nsec):
        out = pipeline.process([Frame(_raw(sec, nsec))])[0]
        shown = [m for m in deserialize_message(out.markers_cdr, MarkerArray).markers if m.action == Marker.ADD]
        assert shown, "no person drawn"
        return shown[0].lifetime.sec + 1e-9 * shown[0].lifetime.nanosec

    first = lifetime(10, 0)  # no period known yet: three times one second
    assert first == pytest.approx(3.0)
    assert lifetime(10, 100_000_000) == pytest.approx(0.3)  # 10 Hz: three periods of 0.1 s
    assert lifetime(10, 200_000_000) == pytest.approx(0.3)
    slow = lifetime(30, 0)  # a 20 s gap lengthens it, within the cap
    assert 0.3 < slow <= MARKER_LIFETIME_MAX_S


def test_distorted_camera_gives_2d_outputs_in_raw_pixels(ros_predictor):
    """With strong D the image is undistorted for the network and 2D results go back to raw pixels."""
    d = [-0.3, 0.1, 0.0, 0.0, 0.0]
    plain = FramePipeline(ros_predictor, OPTS).process([Frame(_raw(1), _info())])[0]
    undist = FramePipeline(ros_predictor, OPTS).process([Frame(_raw(1), _info(d))])[0]
    assert undist.intrinsics == "camera_info K+D (plumb_bob, undistorted)"
    np.testing.assert_allclose(np.reshape(undist.humans_msg.k, (3, 3)), np.reshape(_info().k, (3, 3)))
    model = camera_model(_info(d), W, H)
    # The network saw the undistorted image, so its pinhole 2D joints, distorted, are what was published.
    for human in undist.humans:
        k = model.k
        projected = human.joints @ k.T
        pinhole = projected[:, :2] / projected[:, 2:]
        ok = human.joints[:, 2] > 0.1
        np.testing.assert_allclose(human.joints_2d[ok], distort_points(pinhole, model)[ok], atol=2.0)
    assert plain.humans and undist.humans


def test_tracking_off_gives_id_zero_and_stamp_zero_uses_the_fallback(ros_predictor):
    pipeline = FramePipeline(ros_predictor, PipelineOptions(det_threshold=0.0, max_humans=2, tracking=False))
    out = pipeline.process([Frame(_raw(0), fallback_stamp_s=5.0)])[0]
    assert out.humans and all(h.id == 0 for h in out.humans)
    tracked = FramePipeline(ros_predictor, OPTS)

    def ids(fallback):
        return sorted(h.id for h in tracked.process([Frame(_raw(0), fallback_stamp_s=fallback)])[0].humans)

    first = ids(5.0)
    assert ids(5.1) == first  # same image 0.1 s later (by the fallback clock): same people
    assert min(ids(1.0)) > max(first)  # the fallback clock went back: tracks restart
