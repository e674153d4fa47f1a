"""Camera from the image: with no CameraInfo and fov_deg auto (the default) the Anny teacher's own field of
view builds K in the node (over DDS) and in the bag tool; the message's k carries it and diagnostics say so.

The teacher is untrained and small (ViT-S/14 at 224 px, one decoder layer): its field-of-view head still
regresses a K from each image, which is all the camera path needs.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros, pytest.mark.slow]

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from fixtures_bag import write_camera_bag  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from lighthmr_ros.msg import HumanMeshArray  # noqa: E402
from lighthmr_ros.ros.image import rgb_to_image_msg  # noqa: E402
from lighthmr_ros.ros.node import DetectNode  # noqa: E402
from lighthmr_ros.ros.params import SPECS, validate_value  # noqa: E402

W, H = 320, 240
FRAME = np.random.default_rng(0).integers(0, 255, size=(H, W, 3), dtype=np.uint8)
DETECT = dict(det_threshold=0.0, max_humans=1, with_vertices=False)


@pytest.fixture(scope="module")
def teacher():
    """A real Predictor around an untrained, small Anny teacher (it estimates its camera)."""
    import torch

    from lighthmr_ros.inference import Predictor
    from lighthmr_ros.model import create_model

    torch.manual_seed(0)
    model = create_model("multihmr_anny_vits14", image_size=224, hph_depth=1).eval()
    predictor = Predictor(model, device="cpu")
    assert predictor.estimates_camera
    return predictor


def frame_msg(stamp_sec: int) -> Image:
    msg = rgb_to_image_msg(FRAME)
    msg.header.stamp.sec, msg.header.frame_id = stamp_sec, "cam_optical"
    return msg


def start_node(harness, predictor, **params) -> DetectNode:
    node = DetectNode(predictor=predictor, context=harness.context,
                      parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    assert node.trigger_configure().name == "SUCCESS"
    assert node.trigger_activate().name == "SUCCESS"
    harness.add_node(node)
    return node


def answer(harness, inbox, stamp_sec: int):
    def find():
        return next((m for m in list(inbox) if m.header.stamp.sec == stamp_sec), None)

    assert harness.wait_for(lambda: find() is not None, 60), f"no HumanMeshArray for stamp {stamp_sec}"
    return find()


def diagnostic_values(harness, inbox, predicate) -> dict[str, str]:
    """The key/values of the first /diagnostics report (from now on) that satisfies ``predicate``."""
    start = len(inbox)

    def find():
        for report in list(inbox)[start:]:
            values = {kv.key: kv.value for kv in report.status[0].values}
            if predicate(values):
                return values
        return None

    assert harness.wait_for(lambda: find() is not None, 20), [kv.value for kv in inbox[-1].status[0].values]
    return find()


def test_fov_deg_parameter_takes_auto_or_a_double():
    spec = SPECS["fov_deg"]
    assert spec.default == "auto"
    assert validate_value(spec, "auto") is None and validate_value(spec, 70.0) is None
    assert "decimal point" in validate_value(spec, 70)  # an int, as for every double parameter
    assert "[10, 170]" in validate_value(spec, 5.0) and validate_value(spec, float("nan")) is not None
    assert "'auto'" in validate_value(spec, "wide")


def test_node_publishes_the_models_own_K_without_camera_info(ros_harness, teacher):
    node = start_node(ros_harness, teacher, detection_threshold=0.0, max_humans=1, publish_vertices=False,
                      publish_markers=False, diagnostics_period_s=0.2)
    assert node.settings.fov_deg == "auto"  # the default
    humans = ros_harness.subscribe(HumanMeshArray, "/humans")
    diagnostics = ros_harness.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_harness.publisher(Image, "/image")
    assert ros_harness.wait_for(lambda: pub.get_subscription_count() > 0, 10), "node did not subscribe"
    assert ros_harness.wait_for(lambda: ros_harness.node.count_publishers("/humans") > 0, 10)

    expected, camera = teacher.predict_with_camera(FRAME, **DETECT)
    assert camera.source == "estimated"
    assert not np.allclose(camera.K, teacher.default_K(W, H, 60.0), rtol=1e-3)  # not the fallback
    pub.publish(frame_msg(1))
    msg = answer(ros_harness, humans, 1)
    np.testing.assert_allclose(np.reshape(msg.k, (3, 3)), camera.K, rtol=1e-5)
    assert len(msg.humans) == len(expected) == 1
    np.testing.assert_allclose([msg.humans[0].translation.x, msg.humans[0].translation.y,
                                msg.humans[0].translation.z], expected[0].translation, rtol=1e-4, atol=1e-5)
    values = diagnostic_values(ros_harness, diagnostics, lambda v: v.get("camera", "").startswith("estimated"))
    assert values["intrinsics"] == values["camera"]
    assert node.settings.fov_estimate == "stable"  # the default; the first frame had no estimate to use yet
    fov = float(re.fullmatch(r"estimated K \(fov ([\d.]+) deg, this frame's own: no frame with people yet\)",
                             values["camera"]).group(1))
    assert fov == pytest.approx(camera.fov_deg, abs=0.06)

    # A number wins over the estimate; an int is refused (doubles need their decimal point); auto again.
    assert [r.successful for r in node.set_parameters([Parameter("fov_deg", value=70.0)])] == [True]
    pub.publish(frame_msg(2))
    np.testing.assert_allclose(np.reshape(answer(ros_harness, humans, 2).k, (3, 3)),
                               teacher.default_K(W, H, 70.0), rtol=1e-6)
    assert diagnostic_values(ros_harness, diagnostics, lambda v: v["camera"] == "fov_deg")
    assert [r.successful for r in node.set_parameters([Parameter("fov_deg", value=70)])] == [False]
    assert [r.successful for r in node.set_parameters([Parameter("fov_deg", value="auto")])] == [True]
    pub.publish(frame_msg(3))  # the K of the camera's estimate so far: frame 1's (the same image)
    np.testing.assert_allclose(np.reshape(answer(ros_harness, humans, 3).k, (3, 3)), camera.K, rtol=1e-5)
    assert diagnostic_values(ros_harness, diagnostics, lambda v: v["camera"].endswith(
        "deg, settling: median of 1/30 frames with people)"))
    # fov_estimate takes stable or per_frame; the window is a positive integer
    assert [r.successful for r in node.set_parameters([Parameter("fov_estimate", value="smooth")])] == [False]
    assert [r.successful for r in node.set_parameters([Parameter("fov_estimate_frames", value=0)])] == [False]
    assert [r.successful for r in node.set_parameters([Parameter("fov_estimate_frames", value=1)])] == [True]
    pub.publish(frame_msg(4))
    answer(ros_harness, humans, 4)
    assert diagnostic_values(ros_harness, diagnostics, lambda v: v["camera"].endswith(
        "deg, stable: median of 1 frame with people)"))
    assert [r.successful for r in node.set_parameters([Parameter("fov_estimate", value="per_frame")])] == [True]
    pub.publish(frame_msg(6))
    np.testing.assert_allclose(np.reshape(answer(ros_harness, humans, 6).k, (3, 3)), camera.K, rtol=1e-5)
    assert diagnostic_values(ros_harness, diagnostics, lambda v: v["camera"].endswith("deg, per frame)"))
    assert node.stats.snapshot().errors == 0


def test_camera_info_wins_over_the_estimate(ros_harness, teacher):
    node = start_node(ros_harness, teacher, detection_threshold=0.0, max_humans=1, publish_vertices=False,
                      publish_markers=False, diagnostics_period_s=0.2)
    humans = ros_harness.subscribe(HumanMeshArray, "/humans")
    diagnostics = ros_harness.subscribe(DiagnosticArray, "/diagnostics")
    pub = ros_harness.publisher(Image, "/image")
    info_pub = ros_harness.publisher(CameraInfo, "/camera_info")
    assert ros_harness.wait_for(lambda: pub.get_subscription_count() > 0, 10), "node did not subscribe"
    assert ros_harness.wait_for(lambda: info_pub.get_subscription_count() > 0, 10)
    info = CameraInfo(width=W, height=H)
    info.k = np.array([300.0, 0, 158, 0, 310, 121, 0, 0, 1])
    assert ros_harness.wait_for(lambda: info_pub.publish(info) or node._camera_info is not None, 10)
    pub.publish(frame_msg(5))
    msg = answer(ros_harness, humans, 5)
    np.testing.assert_allclose(np.reshape(msg.k, (3, 3)), np.reshape(info.k, (3, 3)))
    assert diagnostic_values(ros_harness, diagnostics, lambda v: v["camera"] == "camera_info")
    expected = teacher.predict(FRAME, K=np.reshape(info.k, (3, 3)), **DETECT)
    np.testing.assert_allclose(msg.humans[0].translation.z, expected[0].translation[2], rtol=1e-4)


def test_bag_tool_uses_the_estimate_without_camera_info(tmp_path, teacher):
    from rosbags.highlevel import AnyReader

    from lighthmr_ros.bag import output_topics, process_bag
    from lighthmr_ros.ros.pipeline import PipelineOptions

    bag = write_camera_bag(tmp_path / "in", camera_info=False, frames=2, chatter=False)
    summary = process_bag(bag.path, tmp_path / "out", bag.image_topic, predictor=teacher, progress=False,
                          options=PipelineOptions(det_threshold=0.0, max_humans=1, publish_vertices=False,
                                                  markers=False, fov_estimate="per_frame"))
    assert summary.intrinsics == {bag.image_topic: {"estimated": 2}}
    assert "K estimated by the model on 2 frames" in str(summary)
    assert summary.estimated_fov[bag.image_topic].endswith(", per frame)")
    with AnyReader([tmp_path / "in"]) as reader:
        images = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()]
    with AnyReader([tmp_path / "out"]) as reader:
        conns = [c for c in reader.connections if c.topic == output_topics("/lighthmr")["humans"]]
        written = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
    assert len(written) == len(images) == 2
    for image, msg in zip(images, written, strict=True):
        rgb = np.asarray(image.data, np.uint8).reshape(image.height, image.width, 3)
        _, camera = teacher.predict_with_camera(rgb, **DETECT)
        np.testing.assert_allclose(np.reshape(msg.k, (3, 3)), camera.K, rtol=1e-5)

    # fov_estimate stable (the default): the second frame gets the first frame's estimate
    stable = process_bag(bag.path, tmp_path / "stable", bag.image_topic, predictor=teacher, progress=False,
                         options=PipelineOptions(det_threshold=0.0, max_humans=1, publish_vertices=False,
                                                 markers=False))
    assert stable.estimated_fov[bag.image_topic].endswith(", settling: median of 1/30 frames with people)")
    with AnyReader([tmp_path / "stable"]) as reader:
        conns = [c for c in reader.connections if c.topic == output_topics("/lighthmr")["humans"]]
        ks = [np.reshape(reader.deserialize(raw, c.msgtype).k, (3, 3)) for c, _, raw in reader.messages(conns)]
    first = images[0]
    _, camera = teacher.predict_with_camera(np.asarray(first.data, np.uint8).reshape(first.height, first.width, 3),
                                            **DETECT)
    np.testing.assert_allclose(ks[0], camera.K, rtol=1e-9)
    np.testing.assert_allclose(ks[1], teacher.estimated_K(first.width, first.height, camera.fov_estimate_deg),
                               rtol=1e-9)
