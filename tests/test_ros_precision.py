"""precision:=auto on the node: it picks what this CPU runs best and says so in its diagnostics."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from lighthmr_ros.device import resolve_precision  # noqa: E402
from lighthmr_ros.ros.node import DetectNode  # noqa: E402


def test_auto_precision_is_picked_for_this_cpu_and_reported(ros_harness):
    node = DetectNode(predictor=None, context=ros_harness.context,
                      parameter_overrides=[Parameter("precision", value="auto"), Parameter("device", value="cpu"),
                                           Parameter("diagnostics_period_s", value=0.2)])
    ros_harness.add_node(node)
    diagnostics = ros_harness.subscribe(DiagnosticArray, "/diagnostics")
    assert node.trigger_configure().name == "SUCCESS"
    expected = resolve_precision("auto", "cpu")
    assert node.predictor.precision == expected.name  # bf16 on AVX512-BF16/AMX CPUs, fp32 on AVX2-only ones
    assert ros_harness.wait_for(lambda: any(d.status for d in diagnostics), 10)
    values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
    assert values["precision"] == expected.reason and values["precision"].startswith(f"auto -> {expected.name}")
