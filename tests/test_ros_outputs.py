"""The node's robot outputs over DDS: TF frames, the people's point cloud, depth fusion, smoothing.

Every output is checked against the HumanMeshArray of the same frame (same people, frame, metres)
or against the Predictor's own output for the same image.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros]

from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from lighthmr_ros.depth_fusion import render_owner_depth  # noqa: E402
from lighthmr_ros.msg import HumanMeshArray  # noqa: E402
from lighthmr_ros.ros.depth import depth_msg_to_metres, depth_to_msg  # noqa: E402
from lighthmr_ros.ros.image import rgb_to_image_msg  # noqa: E402
from lighthmr_ros.ros.messages import msg_to_arrays  # noqa: E402
from lighthmr_ros.ros.node import DetectNode  # noqa: E402
from lighthmr_ros.ros.pointcloud import cloud_to_points, voxel_downsample  # noqa: E402

W, H = 320, 240
RNG = np.random.default_rng(5)
FRAMES = [RNG.integers(0, 255, size=(H, W, 3), dtype=np.uint8) for _ in range(2)]
# The untrained test model puts people where a square, wide-angle view shows them (depth needs pixels).
SQUARE, WIDE_FOV = RNG.integers(0, 255, size=(480, 480, 3), dtype=np.uint8), 100.0


def start_node(harness, predictor, **params) -> DetectNode:
    node = DetectNode(predictor=predictor, context=harness.context,
                      parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    assert node.trigger_configure().name == "SUCCESS"
    assert node.trigger_activate().name == "SUCCESS"
    harness.add_node(node)
    return node


def frame(stamp_sec: int, rgb: np.ndarray, frame_id: str = "cam_optical", nanosec: int = 250) -> Image:
    msg = rgb_to_image_msg(rgb)
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_sec, nanosec
    msg.header.frame_id = frame_id
    return msg


def answer(harness, inbox, stamp_sec: int, timeout: float = 30.0, nanosec: int | None = None):
    def find():
        return next((m for m in list(inbox) if m.header.stamp.sec == stamp_sec
                     and nanosec in (None, m.header.stamp.nanosec)), None)

    assert harness.wait_for(lambda: find() is not None, timeout), f"no answer for stamp {stamp_sec}"
    return find()


def test_tf_frames_and_point_cloud_agree_with_the_humans(ros_harness, ros_predictor, tf_message_type):
    h = ros_harness
    start_node(h, ros_predictor, detection_threshold=0.0, max_humans=3, publish_tf=True, tf_head_frames=True,
               publish_points=True, points_voxel_m=0.04, tf_prefix="robot1/")
    humans = h.subscribe(HumanMeshArray, "/humans")
    clouds = h.subscribe(PointCloud2, "/human_points")
    tf_inbox = h.subscribe(tf_message_type, "/tf", 100)
    pub = h.publisher(Image, "/image")
    assert h.wait_for(lambda: pub.get_subscription_count() > 0, 10)
    assert h.wait_for(lambda: h.node.count_publishers("/tf") > 0 and h.node.count_publishers("/human_points"), 10)
    pub.publish(frame(41, FRAMES[0]))
    msg = answer(h, humans, 41)
    cloud = answer(h, clouds, 41)
    ids = [p.id for p in msg.humans]
    assert len(ids) >= 1 and all(i > 0 for i in ids)  # tracked: ids for the frames

    def transforms():
        return {t.child_frame_id: t for m in list(tf_inbox) for t in m.transforms if t.header.stamp.sec == 41}

    expected = {f"robot1/{kind}_{i}" for i in ids for kind in ("body", "head")}
    assert h.wait_for(lambda: set(transforms()) >= expected, 10), sorted(transforms())
    got = transforms()
    assert set(got) == expected  # nobody else
    for person in msg.humans:
        body = got[f"robot1/body_{person.id}"]
        assert body.header.frame_id == msg.header.frame_id == "cam_optical"
        assert body.header.stamp.nanosec == msg.header.stamp.nanosec == 250
        t = body.transform.translation
        np.testing.assert_allclose([t.x, t.y, t.z], [person.translation.x, person.translation.y,
                                                     person.translation.z], atol=1e-6)
        q = body.transform.rotation
        assert np.linalg.norm([q.x, q.y, q.z, q.w]) == pytest.approx(1.0, abs=1e-6)
        head = got[f"robot1/head_{person.id}"].transform.translation
        head_index = ros_predictor.joint_names.index("head")
        joint = person.joints[head_index]
        np.testing.assert_allclose([head.x, head.y, head.z], [joint.x, joint.y, joint.z], atol=1e-5)
    # the cloud: same frame and stamp, one id per person, each person's points its voxel-thinned vertices
    assert cloud.header.frame_id == "cam_optical" and cloud.header.stamp.nanosec == 250
    points = cloud_to_points(cloud)
    assert sorted(set(points["id"].tolist())) == sorted(ids)
    for person in msg.humans:
        mine = points[points["id"] == person.id]
        vertices = msg_to_arrays(person)["vertices"]
        assert len(vertices) == ros_predictor.num_vertices
        expected_xyz = voxel_downsample(vertices.astype(np.float64), 0.04)
        assert len(mine) == len(expected_xyz) < len(vertices)
        got_xyz = np.stack([mine["x"], mine["y"], mine["z"]], 1)
        np.testing.assert_allclose(np.sort(got_xyz, axis=0), np.sort(expected_xyz, axis=0), atol=1e-5)


def test_aligned_depth_moves_people_and_the_message_says_so(ros_harness, ros_predictor):
    h = ros_harness
    node = start_node(h, ros_predictor, detection_threshold=0.0, max_humans=2, depth_fusion=True,
                      publish_markers=False, fov_deg=WIDE_FOV)
    humans = h.subscribe(HumanMeshArray, "/humans")
    pub = h.publisher(Image, "/image")
    depth_pub = h.publisher(Image, "/depth")
    assert h.wait_for(lambda: pub.get_subscription_count() > 0 and depth_pub.get_subscription_count() > 0, 10)
    # What the model sees, rendered as a depth camera would measure it, 0.3 m farther (16UC1 millimetres).
    side = SQUARE.shape[0]
    K = ros_predictor.default_K(side, side, WIDE_FOV)
    raw = ros_predictor.predict(SQUARE, K=K, det_threshold=0.0, max_humans=2)
    owner, rendered = render_owner_depth(raw, ros_predictor.faces, K, side, side)
    assert (owner >= 0).sum() > 300, "the untrained model's people should cover part of the image"
    depth_mm = np.where(owner >= 0, np.round((rendered + 0.3) * 1000.0), 0).astype(np.uint16)
    header = Header(frame_id="cam_optical")
    header.stamp.sec, header.stamp.nanosec = 51, 250
    depth = depth_to_msg(depth_mm, header, "16UC1")
    np.testing.assert_allclose(np.nan_to_num(depth_msg_to_metres(depth)), depth_mm / 1000.0, atol=1e-6)
    assert h.wait_for(lambda: depth_pub.publish(depth) or node.cameras[""].depth is not None, 10)
    pub.publish(frame(51, SQUARE))
    msg = answer(h, humans, 51)
    assert len(msg.humans) == len(raw)
    corrected = [p for p in msg.humans if p.depth_corrected]
    assert corrected, [(p.depth_corrected, p.translation.z) for p in msg.humans]
    for person in corrected:
        before = min(raw, key=lambda r: abs(r.center_2d[0] - person.center_2d[0]) + abs(
            r.center_2d[1] - person.center_2d[1]))
        t0 = np.asarray(before.translation, dtype=np.float64)
        t1 = np.array([person.translation.x, person.translation.y, person.translation.z])
        assert t1[2] - t0[2] == pytest.approx(0.3, abs=0.02)  # the median offset, millimetre rounding
        np.testing.assert_allclose(np.cross(t0, t1), 0.0, atol=1e-3)  # moved along its camera ray
        assert person.depth_correction_m == pytest.approx(np.linalg.norm(t1 - t0), abs=1e-3)
    # depth from another moment is not used
    stale = depth_to_msg(depth_mm, Header(frame_id="cam_optical"), "16UC1")
    stale.header.stamp.sec = 40
    assert h.wait_for(lambda: depth_pub.publish(stale) or node.cameras[""].depth.header.stamp.sec == 40, 10)
    pub.publish(frame(52, SQUARE))
    msg = answer(h, humans, 52)
    assert not any(p.depth_corrected for p in msg.humans)


def test_smoothing_is_live_and_filters_each_track(ros_harness, ros_predictor):
    h = ros_harness
    node = start_node(h, ros_predictor, detection_threshold=0.0, max_humans=1, tracking_gate_m=5.0,
                      publish_markers=False)
    humans = h.subscribe(HumanMeshArray, "/humans")
    pub = h.publisher(Image, "/image")
    assert h.wait_for(lambda: pub.get_subscription_count() > 0, 10)
    raw = [ros_predictor.predict(rgb, det_threshold=0.0, max_humans=1)[0] for rgb in FRAMES]
    t_raw = [np.asarray(r.translation, dtype=np.float64) for r in raw]
    assert np.linalg.norm(t_raw[1] - t_raw[0]) > 1e-3  # two different measurements

    def run(stamp: int, rgb: np.ndarray, tenths: int = 0) -> np.ndarray:
        """The person's translation for ``rgb`` stamped ``stamp`` + tenths / 10 seconds."""
        pub.publish(frame(stamp, rgb, nanosec=tenths * 100_000_000))
        person = answer(h, humans, stamp, nanosec=tenths * 100_000_000).humans[0]
        return np.array([person.translation.x, person.translation.y, person.translation.z])

    # smoothing off: the raw measurement
    np.testing.assert_allclose(run(61, FRAMES[0]), t_raw[0], atol=1e-5)
    np.testing.assert_allclose(run(61, FRAMES[1], 1), t_raw[1], atol=1e-5)
    # switched on at run time: the track starts at the first measurement, then moves only part way
    assert node.set_parameters([Parameter("smoothing", value=True)])[0].successful
    np.testing.assert_allclose(run(71, FRAMES[0]), t_raw[0], atol=1e-5)
    smoothed = run(71, FRAMES[1], 1)  # 0.1 s later
    step, full = smoothed - t_raw[0], t_raw[1] - t_raw[0]
    share = float(step @ full / (full @ full))
    assert 0.02 < share < 0.98 and np.linalg.norm(step - share * full) < 1e-4 * max(1.0, np.linalg.norm(full))
    # a higher cut-off (live) follows the measurement more closely
    assert node.set_parameters([Parameter("smoothing_translation_min_cutoff", value=20.0)])[0].successful
    run(81, FRAMES[0])  # more than max_gap_s later: the track starts afresh
    faster = run(81, FRAMES[1], 1)
    assert float((faster - t_raw[0]) @ full / (full @ full)) > share


def test_depth_images_in_both_encodings_with_padding_and_byte_order():
    metres = np.array([[0.0, 1.5, 2.25], [np.nan, 10.0, 0.5]], dtype=np.float32)
    header = Header(frame_id="depth_optical")
    as_float = depth_msg_to_metres(depth_to_msg(metres, header, "32FC1"))
    np.testing.assert_array_equal(np.isnan(as_float), [[True, False, False], [True, False, False]])
    np.testing.assert_allclose(as_float[~np.isnan(as_float)], [1.5, 2.25, 10.0, 0.5])
    # 16UC1 millimetres, big-endian, rows padded to 8 bytes (a driver's step)
    mm = np.array([[0, 1500, 2250], [65535, 10000, 500]], dtype=">u2")
    msg = Image(header=header, height=2, width=3, encoding="16UC1", is_bigendian=1, step=8)
    msg.data = b"".join(row.tobytes() + b"\xff\xff" for row in mm)
    got = depth_msg_to_metres(msg)
    np.testing.assert_allclose(got[0, 1:], [1.5, 2.25])
    np.testing.assert_allclose(got[1], [65.535, 10.0, 0.5])
    assert np.isnan(got[0, 0])
    from lighthmr_ros.errors import ImageError

    with pytest.raises(ImageError, match="not supported"):
        depth_msg_to_metres(Image(header=header, height=1, width=1, encoding="rgb8", step=3, data=b"abc"))
    short = depth_to_msg(mm.astype(np.uint16), header, "16UC1")
    short.data = bytes(short.data)[:-1]
    with pytest.raises(ImageError, match="does not match"):
        depth_msg_to_metres(short)


def test_cloud_and_depth_get_meshes_even_when_vertices_are_not_published(ros_predictor):
    from lighthmr_ros.depth_fusion import DepthFusionParams
    from lighthmr_ros.ros.pipeline import Frame, FramePipeline, PipelineOptions

    pipeline = FramePipeline(ros_predictor)
    lean = dict(det_threshold=0.0, max_humans=2, publish_vertices=False, markers=False)
    out = pipeline.process([Frame(frame(90, FRAMES[0]))], PipelineOptions(**lean, points_voxel_m=0.05))[0]
    assert out.humans and len(cloud_to_points(out.points_msg)) > 0
    assert all(len(p.vertices) == 0 for p in out.humans_msg.humans)  # the message still leaves them out
    depth = depth_to_msg(np.full((H, W), 2.0, np.float32), frame(90, FRAMES[0]).header, "32FC1")
    fusing = PipelineOptions(**lean, depth=DepthFusionParams())
    out = pipeline.process([Frame(frame(90, FRAMES[0]), depth=depth)], fusing)[0]
    assert out.depth_note == "used"
    assert all(h.extras["depth_correction"].reason != "no vertices" for h in out.humans)
