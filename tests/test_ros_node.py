"""The detect node on real DDS (rclpy, Fast DDS, a ROS_DOMAIN_ID of its own per test)."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros]

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from lighthmr_ros.msg import HumanMeshArray, MeshTopology  # noqa: E402
from lighthmr_ros.ros.image import image_msg_to_rgb, rgb_to_image_msg  # noqa: E402
from lighthmr_ros.ros.node import DetectNode  # noqa: E402

W, H = 320, 240
RNG = np.random.default_rng(0)
FRAME = RNG.integers(0, 255, size=(H, W, 3), dtype=np.uint8)


def start_node(harness, predictor, activate=True, **params) -> DetectNode:
    node = DetectNode(predictor=predictor, context=harness.context,
                      parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    if activate:
        assert node.trigger_configure().name == "SUCCESS"
        assert node.trigger_activate().name == "SUCCESS"
    harness.add_node(node)
    return node


def raw_frame(stamp_sec: int, frame_id: str = "cam_optical", rgb: np.ndarray = FRAME) -> Image:
    msg = rgb_to_image_msg(rgb)
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_sec, 500
    msg.header.frame_id = frame_id
    return msg


def jpeg_frame(stamp_sec: int, rgb: np.ndarray = FRAME) -> CompressedImage:
    msg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes())
    msg.header.stamp.sec, msg.header.frame_id = stamp_sec, "cam_optical"
    return msg


def answer(harness, inbox, stamp_sec: int, timeout: float = 30.0):
    """The message of ``inbox`` whose header stamp is ``stamp_sec`` (waits for it)."""
    def stamp(m):
        return (m.markers[0] if isinstance(m, MarkerArray) else m).header.stamp.sec

    def find():
        return next((m for m in list(inbox) if stamp(m) == stamp_sec), None)

    assert harness.wait_for(lambda: find() is not None, timeout), f"no answer for stamp {stamp_sec}"
    return find()


def connected(harness, pub, *subs_topics) -> None:
    assert harness.wait_for(lambda: pub.get_subscription_count() > 0, 10), "node did not subscribe"
    for topic in subs_topics:
        assert harness.wait_for(lambda: harness.node.count_publishers(topic) > 0, 10), topic


def test_frames_come_back_as_humans_and_markers(ros_harness, ros_predictor):
    node = start_node(ros_harness, ros_predictor, detection_threshold=0.0, max_humans=2, marker_decimation=1,
                      publish_debug_image=True)
    humans = ros_harness.subscribe(HumanMeshArray, "/humans")
    markers = ros_harness.subscribe(MarkerArray, "/markers")
    debug = ros_harness.subscribe(Image, "/debug_image")
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    topology = ros_harness.subscribe(MeshTopology, "/mesh_topology", latched)  # joins after it was published
    pub = ros_harness.publisher(Image, "/image")
    connected(ros_harness, pub, "/humans", "/markers")
    assert ros_harness.wait_for(lambda: node.publishers["markers"].get_subscription_count() > 0, 10)
    assert ros_harness.wait_for(lambda: node.publishers["debug_image"].get_subscription_count() > 0, 10)
    for stamp in (101, 102, 103):
        pub.publish(raw_frame(stamp))
        msg = answer(ros_harness, humans, stamp)
        assert msg.header.frame_id == "cam_optical" and msg.header.stamp.nanosec == 500
        assert (msg.width, msg.height) == (W, H) and msg.body_model == ros_predictor.body_model_name
        np.testing.assert_allclose(np.reshape(msg.k, (3, 3)), ros_predictor.default_K(W, H, 60.0), rtol=1e-6)
        assert 1 <= len(msg.humans) <= 2 and msg.latency > 0
        for person in msg.humans:
            assert person.id > 0  # tracking is on by default
            assert len(person.vertices) == 3 * ros_predictor.num_vertices
            assert len(person.joints) == len(ros_predictor.joint_names)
        arr = answer(ros_harness, markers, stamp)
        assert arr.markers[0].action == Marker.DELETEALL
        meshes = [m for m in arr.markers if m.ns == "mesh"]
        assert len(meshes) == len(msg.humans)
        assert len(meshes[0].points) == 3 * len(ros_predictor.faces)  # decimation 1: the full mesh
        assert all(m.header.frame_id == "cam_optical" for m in arr.markers)
        overlay = answer(ros_harness, debug, stamp)
        drawn = image_msg_to_rgb(overlay)
        assert drawn.shape == FRAME.shape and (drawn != FRAME).any(axis=2).mean() > 0.001
    assert ros_harness.wait_for(lambda: len(topology) > 0, 10)
    assert len(topology[0].faces) == 3 * len(ros_predictor.faces)
    assert list(topology[0].joint_names) == list(ros_predictor.joint_names)
    stats = node.stats.snapshot()
    assert stats.processed == 3 and stats.rejected == 0 and stats.errors == 0 and stats.k_source == "fov_deg"


def test_compressed_input_and_camera_info_scaling(ros_harness, ros_predictor):
    node = start_node(ros_harness, ros_predictor, compressed=True, publish_markers=False)
    humans = ros_harness.subscribe(HumanMeshArray, "/humans")
    pub = ros_harness.publisher(CompressedImage, "/image/compressed")
    info_pub = ros_harness.publisher(CameraInfo, "/camera_info")
    connected(ros_harness, pub, "/humans")
    assert ros_harness.wait_for(lambda: info_pub.get_subscription_count() > 0, 10)
    info = CameraInfo(width=2 * W, height=2 * H)  # calibrated at twice the image size
    info.k = np.array([500.0, 0, 320, 0, 520, 240, 0, 0, 1])
    assert ros_harness.wait_for(lambda: info_pub.publish(info) or node._camera_info is not None, 10)
    pub.publish(jpeg_frame(7))
    msg = answer(ros_harness, humans, 7)
    np.testing.assert_allclose(np.reshape(msg.k, (3, 3)), [[250, 0, 160], [0, 260, 120], [0, 0, 1]])
    assert (msg.width, msg.height) == (W, H)
    # An unusable calibration is counted and the field of view takes over.
    bad = CameraInfo(width=2 * W, height=2 * H)
    bad.k = np.array([np.nan, 0, 320, 0, 520, 240, 0, 0, 1])
    assert ros_harness.wait_for(lambda: info_pub.publish(bad) or node._camera_info is None, 10)
    pub.publish(jpeg_frame(8))
    msg = answer(ros_harness, humans, 8)
    np.testing.assert_allclose(np.reshape(msg.k, (3, 3)), ros_predictor.default_K(W, H, 60.0), rtol=1e-6)
    assert node.stats.snapshot().bad_camera_info >= 1


def _bad_raw_images() -> list[Image]:
    good = raw_frame(1)
    out = []
    for i in range(40):
        m = raw_frame(1)
        m.data = bytes(m.data)[: -(i + 1) * 97]  # truncated
        out.append(m)
        out.append(Image(width=0, height=0, encoding="rgb8", step=0))  # zero size
        out.append(Image(width=W, height=H, encoding=["bayer_grbg8", "32FC1", "", "jpeg"][i % 4],
                         step=good.step, data=good.data))  # unknown encoding
        out.append(Image(width=100_000 + i, height=100_000, encoding="rgb8", step=300_000, data=b"\x00" * 10))
        out.append(Image(width=W, height=H, encoding="rgb8", step=W * 3 - 1 - i, data=good.data))  # short step
    return out


def _bad_compressed() -> list[CompressedImage]:
    jpg = jpeg_frame(1).data
    out = []
    for i in range(40):
        out.append(CompressedImage(format="jpeg", data=bytes(jpg)[: 50 + i]))  # truncated JPEG
        corrupt = bytearray(jpg)
        corrupt[2:200] = bytes(range(198))
        out.append(CompressedImage(format="jpeg", data=bytes(corrupt)))
        out.append(CompressedImage(format="png", data=b""))
        out.append(CompressedImage(format="jpeg", data=b"\x89PNG" + bytes(i)))
        out.append(CompressedImage(format="16UC1; compressedDepth", data=jpg))
    return out


def _bad_camera_infos() -> list[CameraInfo]:
    out = []
    for k in ([0.0] * 9, [np.nan, 0, 1, 0, 1, 1, 0, 0, 1], [-3.0, 0, 1, 0, 3, 1, 0, 0, 1], [np.inf] * 9):
        info = CameraInfo(width=W, height=H)
        info.k = np.array(k, dtype=np.float64)
        out.append(info)
    return out


@pytest.mark.parametrize("compressed", [False, True])
def test_malformed_input_never_stops_the_node(ros_harness, ros_predictor, compressed):
    node = start_node(ros_harness, ros_predictor, compressed=compressed, publish_markers=False)
    humans = ros_harness.subscribe(HumanMeshArray, "/humans")
    msg_type, topic = (CompressedImage, "/image/compressed") if compressed else (Image, "/image")
    pub = ros_harness.publisher(msg_type, topic)
    info_pub = ros_harness.publisher(CameraInfo, "/camera_info")
    connected(ros_harness, pub, "/humans")
    assert ros_harness.wait_for(lambda: info_pub.get_subscription_count() > 0, 10)
    bad = _bad_compressed() if compressed else _bad_raw_images()
    assert len(bad) >= 200
    for i, msg in enumerate(bad):
        pub.publish(msg)
        # Wait until the node has handled it (rejected, or replaced by the next one) so each kind is exercised.
        ros_harness.wait_for(lambda: (lambda c: c.rejected + c.dropped >= i + 1)(node.stats.snapshot()), 2.0)
    for i, info in enumerate(_bad_camera_infos() * 5):  # depth 1: one at a time
        info_pub.publish(info)
        ros_harness.wait_for(lambda: node.stats.snapshot().bad_camera_info >= i + 1, 1.0)
    assert node.stats.snapshot().bad_camera_info >= 15
    pub.publish(jpeg_frame(77) if compressed else raw_frame(77))
    msg = answer(ros_harness, humans, 77)
    assert (msg.width, msg.height) == (W, H)
    stats = node.stats.snapshot()
    assert stats.received >= 0.9 * len(bad) + 1  # best-effort delivery may lose one or two
    assert stats.rejected >= 0.8 * len(bad) and stats.rejected + stats.dropped == stats.received - 1
    assert stats.errors == 0 and stats.processed == 1
    report = node.stats.report("test", "cpu", {})
    values = {kv.key: kv.value for kv in report.status[0].values}
    assert int(values["frames_rejected"]) == stats.rejected and report.status[0].level == DiagnosticStatus.WARN


def test_parameters_change_at_runtime(ros_harness, ros_predictor):
    from rcl_interfaces.srv import SetParameters

    node = start_node(ros_harness, ros_predictor, detection_threshold=0.0, max_humans=3, tracking=False)
    humans = ros_harness.subscribe(HumanMeshArray, "/humans")
    markers = ros_harness.subscribe(MarkerArray, "/markers")
    pub = ros_harness.publisher(Image, "/image")
    connected(ros_harness, pub, "/humans", "/markers")
    assert ros_harness.wait_for(lambda: node.publishers["markers"].get_subscription_count() > 0, 10)
    client = ros_harness.node.create_client(SetParameters, "/lighthmr_detect/set_parameters")

    def set_params(**values):
        msgs = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        request = SetParameters.Request(parameters=msgs)
        return [r.successful for r in ros_harness.call(client, request).results]

    pub.publish(raw_frame(1))
    first = answer(ros_harness, humans, 1)
    assert len(first.humans) == 3 and all(h.id == 0 for h in first.humans)  # tracking off: id 0
    assert set_params(max_humans=1, fov_deg=90.0) == [True, True]
    pub.publish(raw_frame(2))
    second = answer(ros_harness, humans, 2)
    assert len(second.humans) == 1
    np.testing.assert_allclose(np.reshape(second.k, (3, 3)), ros_predictor.default_K(W, H, 90.0), rtol=1e-6)
    assert set_params(detection_threshold=1.0, publish_vertices=False) == [True, True]
    pub.publish(raw_frame(3))
    assert len(answer(ros_harness, humans, 3).humans) == 0
    assert [m.action for m in answer(ros_harness, markers, 3).markers] == [Marker.DELETEALL]
    # Out of range, not one of the choices, wrong type: refused, the old value stays.
    assert set_params(detection_threshold=1.5) == [False]
    assert set_params(reliability="fast") == [False]
    assert set_params(nms_kernel_size=4) == [False]
    assert set_params(fov_deg=70) == [False]
    assert node.settings.detection_threshold == 1.0 and node.settings.reliability == "best_effort"
    assert set_params(detection_threshold=0.0, max_humans=2) == [True, True]
    pub.publish(raw_frame(4))
    fourth = answer(ros_harness, humans, 4)
    assert len(fourth.humans) == 2 and all(len(h.vertices) == 0 for h in fourth.humans)


def test_lifecycle_services_drive_the_node(ros_harness, ros_predictor):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    node = start_node(ros_harness, ros_predictor, activate=False, detection_threshold=0.0, max_humans=1)
    humans = ros_harness.subscribe(HumanMeshArray, "/humans")
    pub = ros_harness.publisher(Image, "/image")
    change = ros_harness.node.create_client(ChangeState, "/lighthmr_detect/change_state")
    get = ros_harness.node.create_client(GetState, "/lighthmr_detect/get_state")
    assert ros_harness.call(get, GetState.Request()).current_state.label == "unconfigured"
    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        assert ros_harness.call(change, ChangeState.Request(transition=Transition(id=transition))).success
    assert ros_harness.call(get, GetState.Request()).current_state.label == "active"
    connected(ros_harness, pub, "/humans")
    pub.publish(raw_frame(5))
    answer(ros_harness, humans, 5)
    deactivate = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))
    assert ros_harness.call(change, deactivate).success
    assert ros_harness.wait_for(lambda: pub.get_subscription_count() == 0, 10)  # unsubscribed
    received = node.stats.snapshot().received
    pub.publish(raw_frame(6))
    assert not ros_harness.wait_for(lambda: any(m.header.stamp.sec == 6 for m in humans), 1.0)
    assert node.stats.snapshot().received == received
    cleanup = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CLEANUP))
    assert ros_harness.call(change, cleanup).success
    assert node.predictor is None and node.publishers == {}


def test_cuda_request_falls_back_to_cpu(ros_harness, ros_predictor, caplog):
    """The node uses lighthmr_ros.device's rule with fallback: cuda without a GPU warns and runs on the CPU."""
    import torch

    from lighthmr_ros.device import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: nothing falls back")
    assert resolve_device("cuda", fallback=True) == torch.device("cpu")
    node = start_node(ros_harness, ros_predictor, device="cuda")  # configures: no ConfigError
    assert node.predictor is ros_predictor and node.publishers["humans"] is not None


def test_only_the_newest_frame_is_processed(ros_harness, ros_predictor):
    node = start_node(ros_harness, ros_predictor, publish_markers=False)
    humans = ros_harness.subscribe(HumanMeshArray, "/humans")
    pub = ros_harness.publisher(Image, "/image", 50)
    connected(ros_harness, pub, "/humans")
    for i in range(24):  # 200 fps, faster than inference: frames wait at most one inference
        pub.publish(raw_frame(200 + i))
        time.sleep(0.005)
    answer(ros_harness, humans, 223)  # the newest frame is always answered
    assert ros_harness.wait_for(lambda: (lambda c: c.processed + c.dropped == c.received)(node.stats.snapshot()), 10)
    stats = node.stats.snapshot()
    # Frames that arrive while the worker is busy replace the waiting one (counted); the DDS
    # reader (depth 1) may also overwrite some before the callback sees them.
    assert stats.dropped >= 1 and stats.processed < 24
    stamps = [m.header.stamp.sec for m in humans]
    assert stamps == sorted(stamps) and len(stamps) == stats.processed  # never queued, never reordered


@pytest.mark.slow
def test_onnxruntime_int8_backend_from_parameters(ros_harness):
    """backend/precision parameters: the node builds the default model on onnxruntime int8 itself."""
    node = start_node(ros_harness, None, backend="onnxruntime", precision="int8", publish_markers=False,
                      detection_threshold=0.0, max_humans=1)
    assert node.predictor.backend == "onnxruntime" and node.predictor.precision == "int8"
    humans = ros_harness.subscribe(HumanMeshArray, "/humans")
    pub = ros_harness.publisher(Image, "/image")
    connected(ros_harness, pub, "/humans")
    pub.publish(raw_frame(7))
    msg = answer(ros_harness, humans, 7)
    assert len(msg.humans) == 1 and len(msg.humans[0].vertices) == 3 * node.predictor.num_vertices


def test_int8_without_onnxruntime_fails_configure_clearly(ros_harness):
    node = start_node(ros_harness, None, activate=False, precision="int8")
    assert node.trigger_configure().name == "FAILURE"
    assert node.predictor is None


def test_one_remap_moves_compressed_input_and_deactivate_clears_markers(ros_harness, ros_predictor):
    """image:=/cam/image also moves image/compressed (image_transport's rule); deactivating sends DELETEALL."""
    node = DetectNode(predictor=ros_predictor, context=ros_harness.context,
                      cli_args=["--ros-args", "-r", "image:=/cam/image"],
                      parameter_overrides=[Parameter("compressed", value=True),
                                           Parameter("detection_threshold", value=0.0),
                                           Parameter("max_humans", value=1),
                                           Parameter("diagnostics_period_s", value=0.2)])
    assert node.trigger_configure().name == "SUCCESS" and node.trigger_activate().name == "SUCCESS"
    ros_harness.add_node(node)
    markers = ros_harness.subscribe(MarkerArray, "/markers")
    diagnostics = ros_harness.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_harness.publisher(CompressedImage, "/cam/image/compressed")
    connected(ros_harness, pub, "/markers")
    assert ros_harness.wait_for(lambda: node.publishers["markers"].get_subscription_count() > 0, 10)
    pub.publish(jpeg_frame(9))
    drawn = answer(ros_harness, markers, 9)
    shown = [m for m in drawn.markers if m.action == Marker.ADD]
    assert shown and all(0 < m.lifetime.sec + 1e-9 * m.lifetime.nanosec <= 5.0 for m in shown)
    assert node.trigger_deactivate().name == "SUCCESS"
    assert ros_harness.wait_for(lambda: markers[-1].markers[0].action == Marker.DELETEALL
                                and len(markers[-1].markers) == 1 and markers[-1] is not drawn, 10)
    # Inactive on purpose: diagnostics say so at OK level, stamped with the node's clock.
    count = len(diagnostics)
    assert ros_harness.wait_for(lambda: len(diagnostics) > count + 1, 10)
    status = diagnostics[-1].status[0]
    assert status.level == DiagnosticStatus.OK and "inactive" in status.message
    assert diagnostics[-1].header.stamp.sec > 0


def test_diagnostics_keep_coming_with_sim_time_and_no_clock(ros_harness, ros_predictor):
    """use_sim_time with /clock paused (nobody publishes it): a /clock timer would never fire."""
    start_node(ros_harness, ros_predictor, use_sim_time=True, diagnostics_period_s=0.2)
    diagnostics = ros_harness.subscribe(DiagnosticArray, "/diagnostics")
    assert ros_harness.wait_for(lambda: len(diagnostics) >= 2, 10)
    assert diagnostics[-1].status[0].message == "no images received"  # active, and says why it is idle
