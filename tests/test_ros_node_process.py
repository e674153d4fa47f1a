"""The detect node as a separate process, started the way users start it (remapped topics, a params file)."""
from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros, pytest.mark.slow]

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from lighthmr_ros.msg import HumanMeshArray  # noqa: E402
from lighthmr_ros.procs import stop_process  # noqa: E402
from lighthmr_ros.ros.image import rgb_to_image_msg  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _commands(python: str) -> dict[str, list[str]]:
    out = {
        "module": [python, "-m", "lighthmr_ros.ros.node"],
        "detect_node": [python, str(REPO / "scripts" / "detect_node")],  # installed to lib/lighthmr_ros
    }
    console = shutil.which("lighthmr-detect", path=str(Path(python).parent))
    if console:
        out["lighthmr-detect"] = [console]
    return out


@pytest.mark.parametrize("how", ["module", "detect_node", "lighthmr-detect"])
def test_node_process_answers_remapped_topics(how, ros_harness, node_env, python_exe, ros_smplx_dir, tmp_path):
    import torch

    commands = _commands(python_exe)
    if how not in commands:
        pytest.skip(f"{how} is not installed in this environment")
    args = commands[how] + [
        "--ros-args", "-r", "image:=/cam/image", "-r", "camera_info:=/cam/camera_info", "-r", "__ns:=/robot",
        "--params-file", str(REPO / "config" / "detect.yaml"),
        "-p", "model_config:=lighthmr_tinyvit5m", "-p", "body_model:=smplx",
        "-p", f"smplx_model_dir:={ros_smplx_dir}", "-p", "image_size:=224", "-p", "detection_threshold:=0.0",
        "-p", "max_humans:=2", "-p", "device:=cuda", "-p", "diagnostics_period_s:=0.5",
    ]
    log = tmp_path / "node.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, env=node_env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        h = ros_harness
        humans = h.subscribe(HumanMeshArray, "/robot/humans")
        markers = h.subscribe(MarkerArray, "/robot/markers")
        diagnostics = h.subscribe(DiagnosticArray, "/diagnostics")
        pub = h.publisher(Image, "/cam/image")
        info_pub = h.publisher(CameraInfo, "/cam/camera_info")
        ready = h.wait_for(lambda: pub.get_subscription_count() > 0 or proc.poll() is not None, 240)
        assert ready and proc.poll() is None, log.read_text()[-3000:]
        assert h.wait_for(lambda: h.node.count_publishers("/robot/humans") > 0, 20)
        info = CameraInfo(width=160, height=120)
        info.k = np.array([100.0, 0, 80, 0, 100, 60, 0, 0, 1])
        frame = rgb_to_image_msg(np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8))
        frame.header.frame_id = "cam_optical"
        got = None
        for attempt in range(60):  # until CameraInfo and the first frame have both arrived
            info_pub.publish(info)
            frame.header.stamp.sec = 1000 + attempt
            pub.publish(frame)
            if h.wait_for(lambda: any(m.header.stamp.sec == 1000 + attempt for m in humans), 2.0):
                got = next(m for m in humans if m.header.stamp.sec == 1000 + attempt)
                if got.k[0] == pytest.approx(200.0):
                    break
        assert got is not None, log.read_text()[-3000:]
        assert got.header.frame_id == "cam_optical" and 1 <= len(got.humans) <= 2
        np.testing.assert_allclose(np.reshape(got.k, (3, 3)), [[200, 0, 160], [0, 200, 120], [0, 0, 1]])
        assert h.wait_for(lambda: len(markers) > 0, 10)
        assert h.wait_for(lambda: any("lighthmr_detect" in s.name for d in diagnostics for s in d.status), 10)
        status = next(s for d in diagnostics for s in d.status if "lighthmr_detect" in s.name)
        keys = {kv.key for kv in status.values}
        assert {"input_rate_hz", "processing_rate_hz", "latency_mean_ms", "frames_dropped", "frames_rejected",
                "device"} <= keys
    finally:
        stop_process(proc, sig=signal.SIGINT)
    # Shutting down (Ctrl-C here; SIGTERM from ros2 launch works the same) clears RViz: a lone DELETEALL.
    def cleared():
        return any(len(m.markers) == 1 and m.markers[0].action == Marker.DELETEALL for m in list(markers))

    assert h.wait_for(cleared, 5), "no DELETEALL after shutdown"
    text = log.read_text()
    if not torch.cuda.is_available():
        assert text.count("CUDA is not available") == 1, text[-3000:]
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


def test_bad_parameter_exits_with_one_line(node_env, python_exe, tmp_path):
    proc = subprocess.run(
        [python_exe, "-m", "lighthmr_ros.ros.node", "--ros-args", "-p", "detection_threshold:=3.0"],
        env=node_env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert "detection_threshold" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_checkpoint_fails_configure(node_env, python_exe, tmp_path):
    proc = subprocess.run(
        [python_exe, "-m", "lighthmr_ros.ros.node", "--ros-args", "-p", f"checkpoint:={tmp_path / 'nope.pt'}"],
        env=node_env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "nope.pt" in proc.stdout + proc.stderr and "Traceback" not in proc.stdout + proc.stderr
