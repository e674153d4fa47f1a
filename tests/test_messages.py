"""Generated messages: import, serialise, and travel between processes over DDS."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402

from lighthmr_ros.msg import HumanMesh, HumanMeshArray, MeshTopology  # noqa: E402


def _human(i: int, n_vertices: int) -> HumanMesh:
    from geometry_msgs.msg import Point

    rng = np.random.default_rng(i)
    h = HumanMesh()
    h.id = i
    h.score = 0.9
    h.center_2d = np.array([100.0 + i, 50.0], dtype=np.float32)
    h.translation = Point(x=0.1 * i, y=0.2, z=3.0)
    h.pose = rng.normal(size=53 * 3).astype(np.float32)
    h.shape = rng.normal(size=10).astype(np.float32)
    h.expression = np.zeros(10, dtype=np.float32)
    h.joints = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in rng.normal(size=(5, 3))]
    h.joints_2d = rng.uniform(0, 640, size=10).astype(np.float32)
    h.vertices = rng.normal(size=n_vertices * 3).astype(np.float32)
    return h


def test_messages_round_trip_through_rclpy_serialization():
    msg = HumanMeshArray()
    msg.header.frame_id = "camera_optical"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
    msg.body_model = "smplx"
    msg.k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    msg.width, msg.height = 640, 480
    msg.humans = [_human(1, 100), _human(2, 100)]
    back = deserialize_message(serialize_message(msg), HumanMeshArray)
    assert back.header.frame_id == "camera_optical" and back.header.stamp.nanosec == 345
    assert list(back.k) == list(msg.k) and (back.width, back.height) == (640, 480)
    assert [h.id for h in back.humans] == [1, 2]
    np.testing.assert_array_equal(back.humans[1].vertices, msg.humans[1].vertices)
    np.testing.assert_array_equal(back.humans[0].pose, msg.humans[0].pose)
    assert back.humans[0].joints[2].y == msg.humans[0].joints[2].y

    topo = MeshTopology(body_model="anny", num_vertices=4, faces=np.array([0, 1, 2, 0, 2, 3], dtype=np.uint32),
                        joint_names=["root", "spine"], joint_parents=[-1, 0])
    topo_back = deserialize_message(serialize_message(topo), MeshTopology)
    assert list(topo_back.faces) == [0, 1, 2, 0, 2, 3]
    assert list(topo_back.joint_names) == ["root", "spine"] and list(topo_back.joint_parents) == [-1, 0]


SUBSCRIBER = textwrap.dedent(
    """
    import sys, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from lighthmr_ros.msg import HumanMeshArray
    rclpy.init()
    node = rclpy.create_node("mesh_listener")
    got = []
    node.create_subscription(HumanMeshArray, "/test/humans", got.append,
                             QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE))
    print("ready", flush=True)
    while not got:
        rclpy.spin_once(node, timeout_sec=0.1)
    m = got[0]
    print("received", len(m.humans), [len(h.vertices) for h in m.humans], m.header.frame_id,
          round(float(sum(m.humans[1].vertices[:100])), 3), flush=True)
    node.destroy_node(); rclpy.shutdown()
    """
)


@pytest.mark.slow
def test_two_10k_vertex_humans_travel_between_processes(ros_domain_id):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    proc = subprocess.Popen([sys.executable, "-c", SUBSCRIBER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        rclpy.init()
        try:
            node = rclpy.create_node("mesh_talker")
            pub = node.create_publisher(HumanMeshArray, "/test/humans",
                                        QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE))
            msg = HumanMeshArray()
            msg.header.frame_id = "cam"
            msg.body_model = "smplx"
            msg.humans = [_human(0, 10475), _human(1, 10475)]
            deadline = time.monotonic() + 20
            while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.05)
            assert pub.get_subscription_count() == 1, "subscriber process was not discovered"
            pub.publish(msg)
            out, err = proc.communicate(timeout=30)
            node.destroy_node()
        finally:
            rclpy.shutdown()
    finally:
        if proc.poll() is None:
            proc.kill()
    expected = round(float(np.asarray(msg.humans[1].vertices[:100], dtype=np.float32).sum()), 3)
    assert f"received 2 [31425, 31425] cam {expected}" in out, err
