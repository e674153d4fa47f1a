"""Fixtures of the ROS side: synthetic Human records, test images, an rclpy context per test."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from lighthmr_ros.human import Human

REPO = Path(__file__).resolve().parent.parent


def make_human(translation=(0.0, 0.0, 3.0), human_id: int = 0, num_joints: int = 5, num_vertices: int = 12,
               seed: int = 0, score: float = 0.9) -> Human:
    """A Human record with the documented shapes (a small random body around ``translation``)."""
    rng = np.random.default_rng(seed)
    t = np.asarray(translation, dtype=np.float64)
    joints = t + rng.normal(scale=0.3, size=(num_joints, 3))
    verts = t + rng.normal(scale=0.3, size=(num_vertices, 3))
    return Human(
        id=human_id,
        score=score,
        center_2d=np.array([320.0, 240.0]),
        translation=t,
        pose=rng.normal(size=(4, 3)),
        shape=rng.normal(size=10),
        expression=rng.normal(size=3),
        joints=joints,
        joints_2d=rng.uniform(0, 480, size=(num_joints, 2)),
        vertices=verts,
        body_model="anny",
    )


@pytest.fixture
def human_factory():
    return make_human


@pytest.fixture
def test_rgb() -> np.ndarray:
    """A 48x64 RGB image with distinct colours in every channel and row (detects flips and swaps)."""
    h, w = 48, 64
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 4) % 256, (y * 5) % 256, ((x + y) * 3) % 256], axis=-1)
    return img.astype(np.uint8)


@pytest.fixture
def rclpy_context(ros_domain_id):
    """An initialised rclpy Context on the test's own ROS_DOMAIN_ID; shut down afterwards."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.context.Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    yield context
    if context.ok():
        rclpy.shutdown(context=context)


@pytest.fixture
def node_env(ros_domain_id) -> dict:
    """Environment for a node subprocess: same domain, localhost discovery, repo importable."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(ros_domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def ros_smplx_dir(tmp_path_factory) -> Path:
    """A synthetic SMPL-X folder (real file format, ~850 vertices): fast body model for node tests."""
    from lighthmr_ros.body.synthetic_smplx import write_synthetic_smplx

    d = tmp_path_factory.mktemp("ros_smplx")
    write_synthetic_smplx(d / "SMPLX_NEUTRAL.npz")
    return d


@pytest.fixture(scope="session")
def ros_predictor(ros_smplx_dir):
    """The real Predictor: an untrained (seeded) student with the synthetic SMPL-X body, 224 px input."""
    inference = pytest.importorskip("lighthmr_ros.inference")
    import torch

    torch.manual_seed(0)
    return inference.Predictor(config="lighthmr_tinyvit5m", body_model="smplx", smplx_model_dir=str(ros_smplx_dir),
                               image_size=224, device="cpu")


class RosHarness:
    """A test node and an executor spinning in a background thread, for talking to a node under test."""

    def __init__(self, context):
        import threading

        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = context
        self.node = rclpy.create_node("lighthmr_test_client", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self._thread.start()

    def _spin(self):
        while self._running and self.context.ok():
            self.executor.spin_once(timeout_sec=0.02)

    def add_node(self, node) -> None:
        self.executor.add_node(node)

    def subscribe(self, msg_type, topic: str, qos=10) -> list:
        """Subscribe and return the list that received messages are appended to."""
        inbox: list = []

        def take(msg):
            with self._lock:
                inbox.append(msg)

        self.node.create_subscription(msg_type, topic, take, qos)
        return inbox

    def publisher(self, msg_type, topic: str, qos=10):
        return self.node.create_publisher(msg_type, topic, qos)

    @staticmethod
    def wait_for(predicate, timeout: float = 30.0, period: float = 0.005) -> bool:
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(period)
        return bool(predicate())

    def call(self, client, request, timeout: float = 10.0):
        assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
        future = client.call_async(request)
        assert self.wait_for(future.done, timeout), f"no answer from {client.srv_name}"
        return future.result()

    def close(self):
        self._running = False
        self._thread.join(timeout=5)
        for node in list(self.executor.get_nodes()):
            self.executor.remove_node(node)
            if hasattr(node, "close"):
                node.close()
            else:
                node.destroy_node()
        self.executor.shutdown()


@pytest.fixture
def ros_harness(rclpy_context):
    harness = RosHarness(rclpy_context)
    yield harness
    harness.close()
