"""`lighthmr bag` as a user runs it: a subprocess on a bag written by rosbags alone."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
FAST_MODEL = ["--config", "lighthmr_tinyvit5m", "--device", "cpu", "--image-size", "224",
              "--det-threshold", "0.3", "--max-humans", "2", "--marker-decimation", "8"]


def lighthmr(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "2")
    return subprocess.Popen([sys.executable, "-m", "lighthmr_ros.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def record_like_ros2_bag(path: Path, frames: int) -> tuple[list[int], list[tuple[int, int]]]:
    """What `ros2 bag record /cam/image /cam/camera_info` leaves (Jazzy default: mcap, metadata v9),
    written here with nothing but the rosbags library and its Jazzy typestore."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from skimage.data import astronaut

    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    inf = QosTime(sec=9223372036, nsec=854775807)
    sensor_qos = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.VOLATILE, inf, inf,
                     QosLiveliness.AUTOMATIC, inf, False)
    rgb = cv2.resize(astronaut(), (200, 150))
    log_times, stamps = [], []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        image = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=ts,
                                      offered_qos_profiles=[sensor_qos])
        info = writer.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts,
                                     offered_qos_profiles=[sensor_qos])
        for i in range(frames):
            t = 1_732_000_000_000_000_000 + i * 33_333_333 + (i % 3) * 1_000_000  # 30 Hz with jitter
            stamp = t - 12_000_000
            when = T["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9)
            header = T["std_msgs/msg/Header"](stamp=when, frame_id="cam_color_optical_frame")
            bgr = np.ascontiguousarray(np.roll(rgb, 3 * i, axis=1)[..., ::-1])
            msg = T["sensor_msgs/msg/Image"](header=header, height=150, width=200, encoding="bgr8", is_bigendian=0,
                                            step=600, data=bgr.reshape(-1))
            writer.write(image, t, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            k = np.array([180.0, 0, 100, 0, 180, 75, 0, 0, 1])
            cam = T["sensor_msgs/msg/CameraInfo"](
                header=header, height=150, width=200, distortion_model="plumb_bob", d=np.zeros(5), k=k,
                r=np.eye(3).reshape(-1), p=np.zeros(12), binning_x=0, binning_y=0,
                roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            writer.write(info, t + 200_000, ts.serialize_cdr(cam, "sensor_msgs/msg/CameraInfo"))
            log_times.append(t)
            stamps.append((stamp // 10**9, stamp % 10**9))
    return log_times, stamps


def test_cli_on_a_bag_no_project_code_wrote(tmp_path):
    from rosbags.highlevel import AnyReader

    in_bag, out_bag = tmp_path / "in_bag", tmp_path / "out_bag"
    log_times, stamps = record_like_ros2_bag(in_bag, frames=5)
    proc = lighthmr("bag", str(in_bag), str(out_bag), "--image-topic", "/cam/image", *FAST_MODEL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert "5 frames" in stdout and "frames/s" in stdout

    with AnyReader([out_bag]) as reader:  # definitions from the output bag itself
        humans = [c for c in reader.connections if c.msgtype == "lighthmr_ros/msg/HumanMeshArray"]
        assert [c.topic for c in humans] == ["/lighthmr/humans"]
        images = [c for c in reader.connections if c.topic == "/cam/image"]
        got = [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages(connections=humans)]
        image_times = [t for _, t, _ in reader.messages(connections=images)]
    assert len(got) == len(image_times) == 5
    assert [t for t, _ in got] == log_times == image_times
    assert [(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in got] == stamps
    assert all(m.header.frame_id == "cam_color_optical_frame" for _, m in got)
    assert all(m.k[0] == pytest.approx(180.0) for _, m in got)  # CameraInfo found beside the image


def test_cli_errors_are_one_line(tmp_path):
    in_bag = tmp_path / "in_bag"
    record_like_ros2_bag(in_bag, frames=1)
    proc = lighthmr("bag", str(in_bag), str(tmp_path / "out"), "--image-topic", "/front/image_raw", *FAST_MODEL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert stderr.strip().splitlines()[-1].startswith("lighthmr bag: error:")
    assert "/cam/image (sensor_msgs/msg/Image)" in stderr and "Traceback" not in stderr
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metadata.yaml").write_text("x")
    proc = lighthmr("bag", str(in_bag), str(tmp_path / "out"), "--image-topic", "/cam/image", *FAST_MODEL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "--overwrite" in stderr
    assert (tmp_path / "out" / "metadata.yaml").read_text() == "x"


def _inherit_sigint_ignored_and_blocked() -> None:
    """What a background job of a script inherits: SIGINT ignored (and here also blocked)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


@pytest.mark.parametrize("sig,inherited", [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["SIGINT", "SIGTERM", "SIGINT-inherited-ignored"])
def test_cli_interrupted_leaves_no_half_bag(tmp_path, sig, inherited):
    in_bag, out_bag = tmp_path / "in_bag", tmp_path / "out_bag"
    record_like_ros2_bag(in_bag, frames=300)
    proc = lighthmr("bag", str(in_bag), str(out_bag), "--image-topic", "/cam/image", *FAST_MODEL,
                    preexec_fn=_inherit_sigint_ignored_and_blocked if inherited else None)
    deadline = time.monotonic() + 300
    staging = []
    while time.monotonic() < deadline and proc.poll() is None:
        staging = [p for p in tmp_path.glob(".out_bag.*.partial") if any(p.rglob("*.mcap")) or any(p.rglob("*.db3"))]
        if staging:
            break
        time.sleep(0.05)
    assert staging and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else "no staging dir"
    time.sleep(1.0)  # let it write a few frames
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in_bag"]  # no OUTPUT, no staging left
