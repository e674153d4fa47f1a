"""Several cameras, one model, one forward: the frame batcher and the node serving three cameras over DDS."""
from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from lighthmr_ros.errors import ConfigError
from lighthmr_ros.ros.cameras import FrameBatcher, camera_names, camera_topics, check_camera_names

REPO = Path(__file__).resolve().parent.parent


@dataclass
class _Frame:
    tag: str
    received: float = field(default_factory=time.monotonic)


def test_topics_of_the_default_and_named_cameras():
    plain = camera_topics("")
    assert (plain.image, plain.camera_info, plain.humans, plain.markers) == ("image", "camera_info", "humans",
                                                                             "markers")
    front = camera_topics("front/")
    assert (front.image, front.depth, front.debug_image, front.points) == (
        "front/image", "front/depth", "front/debug_image", "front/human_points")
    assert camera_names([]) == [""] and camera_names(["a", "arm/wrist"]) == ["a", "arm/wrist"]
    assert "twice" in check_camera_names(["a", "a/"])
    with pytest.raises(ConfigError, match="not ROS namespaces"):
        camera_names(["front", "bad name"])


def test_frames_within_the_window_form_one_batch():
    batcher = FrameBatcher(["a", "b", "c"])
    batcher.offer("b", _Frame("b1"))
    batcher.offer("a", _Frame("a1"))
    assert batcher.offer("a", _Frame("a2")) is True  # replaced before the worker took it: a drop
    threading.Timer(0.05, lambda: batcher.offer("c", _Frame("c1"))).start()
    start = time.monotonic()
    batch = batcher.take(window_s=2.0)  # returns as soon as every camera has a frame, not after 2 s
    assert time.monotonic() - start < 1.5
    assert [(name, f.tag) for name, f in batch] == [("a", "a2"), ("b", "b1"), ("c", "c1")]


def test_window_ends_a_partial_batch_and_stop_wakes_the_worker():
    batcher = FrameBatcher(["a", "b"])
    batcher.offer("a", _Frame("a1"))
    start = time.monotonic()
    batch = batcher.take(window_s=0.1)
    assert 0.05 < time.monotonic() - start < 1.0 and [n for n, _ in batch] == ["a"]
    # a frame that waited longer than the window (the worker was busy) is taken at once
    batcher.offer("b", _Frame("b1", received=time.monotonic() - 1.0))
    start = time.monotonic()
    assert [n for n, _ in batcher.take(window_s=0.5)] == ["b"] and time.monotonic() - start < 0.3
    threading.Timer(0.05, batcher.stop).start()
    assert batcher.take(window_s=0.1) is None
    with pytest.raises(KeyError):
        batcher.offer("z", _Frame("z"))


CAMERAS = ("front", "left", "right")


@pytest.mark.ros
@pytest.mark.slow
def test_one_node_answers_three_cameras_in_batches(ros_harness, node_env, python_exe, ros_smplx_dir, tmp_path):
    pytest.importorskip("rclpy")
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image

    from lighthmr_ros.msg import HumanMeshArray
    from lighthmr_ros.procs import stop_process
    from lighthmr_ros.ros.image import rgb_to_image_msg

    args = [python_exe, "-m", "lighthmr_ros.ros.node", "--ros-args", "-r", "__ns:=/robot",
            "--params-file", str(REPO / "config" / "detect.yaml"),
            "-p", f"cameras:=[{', '.join(CAMERAS)}]", "-p", "batch_window_s:=0.3",
            "-p", "model_config:=lighthmr_tinyvit5m", "-p", "body_model:=smplx",
            "-p", f"smplx_model_dir:={ros_smplx_dir}", "-p", "image_size:=224", "-p", "detection_threshold:=0.0",
            "-p", "max_humans:=2", "-p", "device:=cpu", "-p", "diagnostics_period_s:=0.5"]
    log = tmp_path / "node.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, env=node_env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    h = ros_harness
    try:
        inboxes = {c: h.subscribe(HumanMeshArray, f"/robot/{c}/humans") for c in CAMERAS}
        diagnostics = h.subscribe(DiagnosticArray, "/diagnostics")
        pubs = {c: h.publisher(Image, f"/robot/{c}/image") for c in CAMERAS}
        info_pubs = {c: h.publisher(CameraInfo, f"/robot/{c}/camera_info") for c in CAMERAS}
        ready = h.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs.values())
                           or proc.poll() is not None, 240)
        assert ready and proc.poll() is None, log.read_text()[-3000:]
        assert h.wait_for(lambda: all(h.node.count_publishers(f"/robot/{c}/humans") > 0 for c in CAMERAS), 20)
        rng = np.random.default_rng(3)
        infos, frames = {}, {}
        for i, c in enumerate(CAMERAS):  # each camera its own focal length, image size and frame
            w, h_px = 160 + 32 * i, 120 + 16 * i
            info = CameraInfo(width=w, height=h_px)
            info.k = np.array([100.0 + 50 * i, 0, w / 2, 0, 100.0 + 50 * i, h_px / 2, 0, 0, 1])
            infos[c] = info
            frames[c] = rgb_to_image_msg(rng.integers(0, 255, (h_px, w, 3), dtype=np.uint8))
            frames[c].header.frame_id = f"{c}_optical"
        got: dict[str, object] = {}
        for attempt in range(60):  # until every CameraInfo and a frame of every camera have arrived
            for c in CAMERAS:
                info_pubs[c].publish(infos[c])
            for i, c in enumerate(CAMERAS):  # published at once, each camera its own stamp
                frames[c].header.stamp.sec, frames[c].header.stamp.nanosec = 1000 + attempt, 1000 * i
                pubs[c].publish(frames[c])

            def answered(c, attempt=attempt):
                return next((m for m in list(inboxes[c]) if m.header.stamp.sec == 1000 + attempt), None)

            if h.wait_for(lambda: all(answered(c) for c in CAMERAS), 3.0):
                got = {c: answered(c) for c in CAMERAS}
                if all(got[c].k[0] == pytest.approx(infos[c].k[0]) for c in CAMERAS):
                    break
        assert len(got) == 3, log.read_text()[-3000:]
        for i, c in enumerate(CAMERAS):
            msg = got[c]
            assert msg.header.frame_id == f"{c}_optical" and msg.header.stamp.nanosec == 1000 * i
            assert (msg.width, msg.height) == (infos[c].width, infos[c].height)
            np.testing.assert_allclose(msg.k, infos[c].k)
            assert 1 <= len(msg.humans) <= 2

        def batch_max():
            values = [{kv.key: kv.value for kv in s.values} for d in list(diagnostics) for s in d.status
                      if "lighthmr_detect" in s.name]
            return max((int(v.get("batch_size_max", 0)) for v in values), default=0), values

        assert h.wait_for(lambda: batch_max()[0] > 1, 10), batch_max()[1][-1:]
        last = batch_max()[1][-1]
        assert last["cameras"] == ", ".join(CAMERAS) and float(last["batch_size_mean"]) > 1.0
    finally:
        stop_process(proc, sig=signal.SIGINT)
    text = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in text, text[-3000:]
    assert "Batch of 3 frames (front, left, right)" in text, text[-3000:]
