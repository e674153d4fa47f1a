"""A ROS 2 workspace builds this repository with colcon, runs the installed node and its tests.

What a robotics engineer does, with the tools the registries offer: colcon-core/-cmake/-ros from PyPI,
the ament and rosidl tools among the Jazzy wheels of .venv (the underlay, as /opt/ros/jazzy would be).
The workspace holds this repository as src/lighthmr_ros; `colcon build` and `colcon build
--symlink-install` must both work, the installed lib/lighthmr_ros/detect_node must answer an image over
DDS after `source install/setup.bash`, and `colcon test` + `colcon test-result` must run and report a
small, fast part of the suite (the rest runs in `make test` anyway).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.timeout(3000)]

from sensor_msgs.msg import Image  # noqa: E402

from lighthmr_ros.msg import HumanMeshArray  # noqa: E402
from lighthmr_ros.procs import stop_process  # noqa: E402
from lighthmr_ros.ros.image import rgb_to_image_msg  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
# Fast tests that need the package's build outputs (messages) or describe the package itself.
COLCON_TEST_SELECTION = "test_package_rosdep or test_ros_launch or test_ros_intrinsics"


def _underlay_env(base: dict) -> dict:
    """A shell environment like a fresh terminal on a ROS machine with the venv active (no PYTHONPATH)."""
    env = {k: v for k, v in base.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH",
                                                     "COLCON_PREFIX_PATH", "PYTEST_ADDOPTS")}
    env.update(PATH=f"{VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin", VIRTUAL_ENV=str(VENV),
               AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV), MAKEFLAGS="-j2")
    return env


def _bash(ws: Path, script: str, env: dict, timeout: float) -> str:
    """Run ``script`` with bash in ``ws``; its output, or a failed assertion with the output's tail."""
    proc = subprocess.run(["bash", "-c", f"set -eo pipefail\n{script}"], cwd=ws, env=env, capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{script}\n-> exit {proc.returncode}\n{out[-4000:]}"
    return out


def _workspace(root: Path) -> Path:
    ws = root / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "lighthmr_ros").symlink_to(REPO, target_is_directory=True)
    return ws


def _colcon_build(ws: Path, env: dict, *options: str) -> None:
    _bash(ws, f"colcon build --packages-select lighthmr_ros --event-handlers console_direct- {' '.join(options)} "
              "--cmake-args -DCMAKE_BUILD_TYPE=Release", env, 1200)


@pytest.fixture(scope="module")
def colcon_env(tmp_path_factory):
    if shutil.which("colcon", path=str(VENV / "bin")) is None:
        pytest.fail("colcon is not installed in the venv; scripts/requirements-ros.txt lists it (make setup)")
    return _underlay_env(dict(os.environ))


def test_colcon_build_run_installed_node_and_colcon_test(tmp_path, colcon_env, ros_harness, node_env,
                                                         ros_smplx_dir):
    ws = _workspace(tmp_path)
    env = dict(colcon_env, ROS_DOMAIN_ID=node_env["ROS_DOMAIN_ID"], ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    _colcon_build(ws, env)
    node_exe = ws / "install" / "lighthmr_ros" / "lib" / "lighthmr_ros" / "detect_node"
    assert node_exe.is_file() and os.access(node_exe, os.X_OK)
    assert node_exe.read_text().splitlines()[0] == f"#!{VENV / 'bin' / 'python3'}"  # the building interpreter
    share = ws / "install" / "lighthmr_ros" / "share" / "lighthmr_ros"
    assert (share / "launch" / "detect.launch.py").is_file() and (share / "config" / "detect.yaml").is_file()

    # After sourcing the install space, the package imports from it (not from this checkout).
    where = _bash(ws, "source install/setup.bash\ncd /\npython3 -c 'import lighthmr_ros.ros.node as n, "
                      "lighthmr_ros.msg as m; print(n.__file__); print(m.__file__)'", env, 120)
    install = str(ws / "install" / "lighthmr_ros" / "lib")
    assert all(line.startswith(install) for line in where.strip().splitlines()[-2:]), where

    # The installed executable answers an image over DDS.
    args = ["--ros-args", "-r", "image:=/cam/image", "-p", "model_config:=lighthmr_tinyvit5m",
            "-p", "body_model:=smplx", "-p", f"smplx_model_dir:={ros_smplx_dir}", "-p", "image_size:=224",
            "-p", "detection_threshold:=0.0", "-p", "max_humans:=1", "-p", "device:=cpu"]
    log = tmp_path / "node.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", "-c", f"source install/setup.bash && exec {node_exe} \"$@\"", "node",
                                 *args], cwd=ws, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        h = ros_harness
        humans = h.subscribe(HumanMeshArray, "/humans")
        pub = h.publisher(Image, "/cam/image")
        ready = h.wait_for(lambda: pub.get_subscription_count() > 0 or proc.poll() is not None, 300)
        assert ready and proc.poll() is None, log.read_text()[-3000:]
        frame = rgb_to_image_msg(np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8))
        frame.header.frame_id = "cam_optical"
        for attempt in range(30):
            frame.header.stamp.sec = 500 + attempt
            pub.publish(frame)
            if h.wait_for(lambda: len(humans) > 0, 2.0):
                break
        assert humans, log.read_text()[-3000:]
        assert humans[0].header.frame_id == "cam_optical" and len(humans[0].humans) == 1
    finally:
        stop_process(proc, sig=signal.SIGINT)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]

    # colcon test runs the registered pytest suite (a fast selection) and colcon test-result reports it.
    test_env = dict(env, PYTEST_ADDOPTS=f"-k '{COLCON_TEST_SELECTION}' -p no:cacheprovider")
    _bash(ws, "source install/setup.bash\ncolcon test --packages-select lighthmr_ros "
              "--event-handlers console_direct-", test_env, 1200)
    result = _bash(ws, "colcon test-result --verbose", env, 60)
    summary = next(line for line in result.splitlines() if line.startswith("Summary:"))
    counts = dict(part.strip().split(" ")[::-1] for part in summary[len("Summary:"):].split(","))
    assert int(counts["tests"]) >= 10 and counts["errors"] == "0" and counts["failures"] == "0", result
    assert (ws / "build" / "lighthmr_ros" / "test_results" / "lighthmr_ros" / "lighthmr_pytest.xunit.xml").is_file()


def test_colcon_symlink_install(tmp_path, colcon_env):
    """--symlink-install links the Python modules, launch and config back to the source tree."""
    ws = _workspace(tmp_path)
    _colcon_build(ws, colcon_env, "--symlink-install")
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = ws / "install" / "lighthmr_ros" / "lib" / python / "site-packages" / "lighthmr_ros"
    node_module = site / "ros" / "node.py"
    assert node_module.is_symlink() and node_module.resolve() == (REPO / "lighthmr_ros" / "ros" / "node.py")
    launch = ws / "install" / "lighthmr_ros" / "share" / "lighthmr_ros" / "launch" / "detect.launch.py"
    assert launch.resolve() == REPO / "launch" / "detect.launch.py"
    out = _bash(ws, "source install/setup.bash\ncd /\npython3 -c 'from lighthmr_ros.msg import HumanMeshArray; "
                    "import lighthmr_ros.ros.pipeline as p; print(p.__file__)'", colcon_env, 120)
    assert out.strip().splitlines()[-1].startswith(str(site)), out
