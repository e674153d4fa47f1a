"""``make demo``: its recording and overlay steps alone, then the whole run against the real node."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from fixtures_ros import make_human

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from lighthmr_ros import demo  # noqa: E402


def _answer(humans, stamp_sec: int = 5):
    from std_msgs.msg import Header

    from lighthmr_ros.ros.messages import humans_to_msg

    header = Header(frame_id="demo_camera_optical")
    header.stamp.sec = stamp_sec
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    return humans_to_msg(humans, header, K, "anny", 320, 240, True, latency=0.05)


def test_recorded_bag_and_answers_round_trip(tmp_path):
    from rosbags.highlevel import AnyReader
    from visualization_msgs.msg import MarkerArray

    from lighthmr_ros.msg import MeshTopology
    from lighthmr_ros.ros.image import rgb_to_image_msg

    humans = [make_human(human_id=1, seed=1), make_human(translation=(1.0, 0, 4.0), human_id=2, seed=2)]
    answer = _answer(humans)
    back = demo._humans_from_msg(answer)
    assert [h.id for h in back] == [1, 2]
    np.testing.assert_allclose(back[1].vertices, humans[1].vertices, rtol=1e-6)
    np.testing.assert_allclose(back[0].joints_2d, humans[0].joints_2d, rtol=1e-6)

    frame = demo._Frame("one", rgb_to_image_msg(np.zeros((240, 320, 3), np.uint8)), answer,
                        [MarkerArray(), MarkerArray()], 5_000_000_000, 0.1)
    with demo._bag_recorder(tmp_path / "bag", MeshTopology(body_model="anny")) as record:
        record(frame)
    with AnyReader([tmp_path / "bag"]) as reader:
        counts: dict[str, int] = {}
        for conn, t, _ in reader.messages():
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            if conn.topic != demo.TOPOLOGY_TOPIC:
                assert t == frame.stamp_ns
    assert counts == {demo.TOPOLOGY_TOPIC: 1, demo.IMAGE_TOPIC: 1, demo.HUMANS_TOPIC: 1, demo.MARKERS_TOPIC: 2}


def test_overlay_and_summary_rows(tmp_path):
    answer = _answer([make_human(human_id=3, num_vertices=30)])
    sample = demo.Sample("photo", np.zeros((240, 320, 3), np.uint8), None)
    frame = SimpleNamespace(answer=answer, round_trip_s=0.2)
    faces = np.array([[i, i + 1, i + 2] for i in range(0, 27, 3)])
    row = demo._render_result(frame, sample, tmp_path / "overlay.png", faces, [-1, 0, 1, 2, 3])
    assert row == {"frame": "photo", "people": 1, "node_latency_s": pytest.approx(0.05), "round_trip_s": 0.2}
    assert (tmp_path / "overlay.png").stat().st_size > 0
    summary = demo._summary([row, dict(row, people=3, round_trip_s=0.4)], 1.5, tmp_path)
    assert summary["people_per_frame"] == [1, 3] and summary["median_round_trip_s"] == pytest.approx(0.3)
    assert demo._summary([], 0.0, tmp_path)["median_node_latency_s"] is None


@pytest.mark.slow
def test_demo_plays_photos_through_the_node(tmp_path, ros_domain_id):
    """The photos only (no synthetic scenes): the node answers each frame, the bag and overlays appear."""
    options = demo.DemoOptions(out_dir=tmp_path, n_synthetic=0, timeout_s=300)
    expected = len(demo.sample_sequence(tmp_path / "inputs", 0, 0))
    if expected == 0:
        pytest.skip("neither sample photo (scikit-image, matplotlib) is installed")
    summary = demo.run_demo(options)
    assert summary["frames"] == expected == len(list(tmp_path.glob("overlay_*.png")))
    assert summary["median_round_trip_s"] >= summary["median_node_latency_s"] > 0
    assert (tmp_path / "bag" / "metadata.yaml").is_file()
