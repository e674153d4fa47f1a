"""Node overhead measurement: runs the detect node as a process and reports both latencies (no timed assert)."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_node_latency_reports_predictor_and_node_times(ros_domain_id):
    from lighthmr_ros.ros.latency_bench import NodeLatencyOptions, format_node_latency, measure_node_latency

    options = NodeLatencyOptions(frames=2, warmup=1, image_size=224, persons=2, threads=1, domain_id=ros_domain_id)
    r = measure_node_latency(options)
    assert r["lost_frames"] == 0 and len(r["node_end_to_end_all_ms"]) == 2 and len(r["predictor_all_ms"]) == 2
    # Causality, not speed: the round trip contains the node's own receive -> publish time.
    assert all(e >= i for e, i in zip(r["node_end_to_end_all_ms"], r["node_internal_all_ms"], strict=True))
    assert r["ratio_end_to_end"] == pytest.approx(r["node_end_to_end_ms"] / r["predictor_ms"])
    assert "image-in to message-out" in format_node_latency(r)
