"""The bundled synthetic-only model says what it is on a robot: one WARN at activation, WARN diagnostics."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros]

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from lighthmr_ros.model.checkpoint import DEMO_MODEL_NOTICE  # noqa: E402
from lighthmr_ros.ros.image import rgb_to_image_msg  # noqa: E402
from lighthmr_ros.ros.node import DetectNode  # noqa: E402

DEMO_STATUS = "synthetic demo model: not trained on real people"
FRAME = np.random.default_rng(0).integers(0, 255, size=(96, 128, 3), dtype=np.uint8)


def _run_node(harness, predictor, seconds: float = 2.0):
    """Configure and activate a node, feed it frames for ``seconds`` after it reports; its diagnostics."""
    diagnostics = harness.subscribe(DiagnosticArray, "/diagnostics")
    node = DetectNode(predictor=predictor, context=harness.context,
                      parameter_overrides=[Parameter("device", value="cpu"),
                                           Parameter("diagnostics_period_s", value=0.25)])
    harness.add_node(node)
    assert node.trigger_configure().name == "SUCCESS"
    assert node.trigger_activate().name == "SUCCESS"
    pub = harness.publisher(Image, "/image")
    msg = rgb_to_image_msg(FRAME)

    def active_with_frames() -> list:
        pub.publish(msg)
        return [d.status[0] for d in list(diagnostics)
                if {kv.key: kv.value for kv in d.status[0].values}.get("state") == "active"
                and int({kv.key: kv.value for kv in d.status[0].values}["frames_received"]) > 0]

    # Frames at ~20 Hz until several active reports with frames came (the node receives them all the while).
    assert harness.wait_for(lambda: len(active_with_frames()) >= 4, 120, period=0.05), list(diagnostics)[-3:]
    harness.wait_for(lambda: active_with_frames() and False, seconds, period=0.05)  # frames go on meanwhile
    return node, active_with_frames()


def _warnings(captured: str, node) -> list[str]:
    """The node's WARN lines as its logger wrote them (rcutils' console output on stderr).

    Read there rather than on /rosout: in two fresh-clone CI runs a /rosout subscription in the test
    process received nothing at all (no line of any level) in 60 s while the node printed its lines."""
    name = f"[{node.get_logger().name}]: "
    return [line.split(name, 1)[1] for line in captured.splitlines() if line.startswith("[WARN] ") and name in line]


def test_default_model_warns_once_and_diagnoses_warn(ros_harness, capfd):
    node, reports = _run_node(ros_harness, None)
    warnings = _warnings(capfd.readouterr().err, node)
    assert node.predictor.notice == DEMO_MODEL_NOTICE  # the bundled default checkpoint was loaded
    assert warnings.count(DEMO_MODEL_NOTICE) == 1, warnings
    for status in reports[1:]:  # the first period may straddle activation
        values = {kv.key: kv.value for kv in status.values}
        assert status.level == DiagnosticStatus.WARN and status.message == DEMO_STATUS, status
        assert values["model_notice"] == DEMO_MODEL_NOTICE
    assert "multiHMR_672_L_anny" in DEMO_MODEL_NOTICE  # the sentence points at the real-image checkpoint


def test_model_without_notice_stays_ok(ros_harness, ros_predictor, capfd):
    assert ros_predictor.notice is None  # an untrained Predictor(config=...) has no synthetic provenance
    node, reports = _run_node(ros_harness, ros_predictor, seconds=1.0)
    err = capfd.readouterr().err
    assert f"[{node.get_logger().name}]: Model ready" in err  # the node's console lines were captured
    assert not [w for w in _warnings(err, node) if DEMO_STATUS in w]
    for status in reports[1:]:
        values = {kv.key: kv.value for kv in status.values}
        assert "model_notice" not in values and DEMO_STATUS not in status.message
        assert status.level == DiagnosticStatus.OK, status


def test_other_problems_keep_their_level_and_name_the_demo_model_too():
    from lighthmr_ros.ros.diagnostics import Stats

    stats = Stats()
    quiet = stats.report("n", "cpu", {}, active=True, notice=DEMO_MODEL_NOTICE).status[0]
    assert quiet.level == DiagnosticStatus.WARN and quiet.message == f"no images received; {DEMO_STATUS}"
    stats.add(received=1, errors=1)
    failing = stats.report("n", "cpu", {}, active=True, notice=DEMO_MODEL_NOTICE).status[0]
    assert failing.level == DiagnosticStatus.ERROR and failing.message.endswith(DEMO_STATUS)
    idle = stats.report("n", "cpu", {}, active=False, notice=DEMO_MODEL_NOTICE).status[0]
    assert idle.level == DiagnosticStatus.OK and DEMO_STATUS not in idle.message  # inactive: not listening
    assert {kv.key: kv.value for kv in idle.values}["model_notice"] == DEMO_MODEL_NOTICE
