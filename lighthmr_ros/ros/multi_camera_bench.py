"""One node serving N cameras against N single-camera nodes: frames/s answered and memory.

Why: the point of ``cameras`` is one model in memory and one batched forward for all cameras;
this measures what that gives on the machine at hand. Each setup runs as real processes (as users
run them, ``python -m lighthmr_ros.ros.node``) on a DDS domain of its own; this process publishes
N camera streams (640x480 rgb8 sensor_msgs/Image, best effort) at ``rate_hz`` each and counts the
HumanMeshArray answers per camera over ``seconds`` after a warm-up. Memory is the peak resident
set (VmHWM) of the node processes, summed. Run: ``python -m lighthmr_ros.ros.multi_camera_bench``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lighthmr_ros.procs import stop_process


@dataclass(frozen=True)
class BenchOptions:
    cameras: int = 3
    rate_hz: float = 10.0
    seconds: float = 30.0
    warmup_s: float = 10.0
    config: str = ""  # empty: the default model
    image_size: int = 0
    timeout_s: float = 600.0


@dataclass
class SetupResult:
    setup: str
    frames_per_s: float  # answers per second, all cameras together
    per_camera: list[float]
    peak_rss_mb: float
    batch_size_max: int = 1


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _node(args: list[str], env: dict, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lighthmr_ros.ros.node", "--ros-args", *args], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def run_setup(opts: BenchOptions, single_node: bool, domain: int) -> SetupResult:
    """Start the node(s), stream the cameras, count answers; the processes are stopped afterwards."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data

    from lighthmr_ros.msg import HumanMeshArray
    from lighthmr_ros.ros.image import rgb_to_image_msg

    names = [f"cam{i}" for i in range(opts.cameras)]
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    model = ["-p", "publish_markers:=false"]
    if opts.config:
        model += ["-p", f"model_config:={opts.config}"]
    if opts.image_size:
        model += ["-p", f"image_size:={opts.image_size}"]
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    if single_node:
        procs = [_node(["-p", f"cameras:=[{', '.join(names)}]", *model], env, log)]
    else:
        procs = [_node(["-r", f"__ns:=/{n}", "-r", f"__node:=lighthmr_{n}", *model], env, log) for n in names]
    context = rclpy.context.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("multi_camera_bench", context=context)
    counts = dict.fromkeys(names, 0)
    counting = threading.Event()

    def counter(name):
        def take(msg):
            if counting.is_set():
                counts[name] += 1
        return take

    subs = [node.create_subscription(HumanMeshArray, f"/{n}/humans", counter(n), 10) for n in names]
    pubs = {n: node.create_publisher(type(rgb_to_image_msg(np.zeros((2, 2, 3), np.uint8))), f"/{n}/image",
                                     qos_profile_sensor_data) for n in names}
    rng = np.random.default_rng(0)
    frames = {n: rgb_to_image_msg(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for n in names}
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        while context.ok() and not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinning = threading.Thread(target=spin, daemon=True)
    spinning.start()
    try:
        end = time.monotonic() + opts.timeout_s
        while any(p.get_subscription_count() == 0 for p in pubs.values()):
            if time.monotonic() > end or any(p.poll() is not None for p in procs):
                log.seek(0)
                raise RuntimeError(f"the node(s) did not start:\n{log.read()[-3000:]}")
            time.sleep(0.2)
        start = time.monotonic()
        measured_from = start + opts.warmup_s
        tick = 0
        while time.monotonic() < measured_from + opts.seconds:
            if not counting.is_set() and time.monotonic() >= measured_from:
                counting.set()
            now_ns = time.time_ns()
            for msg in frames.values():
                msg.header.stamp.sec, msg.header.stamp.nanosec = now_ns // 10**9, now_ns % 10**9
            for n in names:
                pubs[n].publish(frames[n])
            tick += 1
            time.sleep(max(0.0, start + tick / opts.rate_hz - time.monotonic()))
        counting.clear()
        rss = sum(_peak_rss_mb(p.pid) for p in procs)
    finally:
        stop.set()
        spinning.join(timeout=5)
        for sub in subs:
            node.destroy_subscription(sub)
        node.destroy_node()
        rclpy.shutdown(context=context)
        for p in procs:
            stop_process(p)
    log.seek(0)
    text = log.read()
    batch = max((int(line.split("Batch of ")[1].split()[0]) for line in text.splitlines() if "Batch of " in line),
                default=1)
    per_camera = [counts[n] / opts.seconds for n in names]
    setup = f"one node, {opts.cameras} cameras" if single_node else f"{opts.cameras} nodes, one camera each"
    return SetupResult(setup, sum(per_camera), per_camera, rss, batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10.0, help="frames/s published per camera")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--config", default="", help="model config (default: the default model)")
    parser.add_argument("--image-size", type=int, default=0)
    args = parser.parse_args(argv)
    opts = BenchOptions(args.cameras, args.rate, args.seconds, args.warmup, args.config, args.image_size)
    domain = 100 + os.getpid() % 100
    for single in (True, False):
        r = run_setup(opts, single, domain + int(single))
        print(f"{r.setup}: {r.frames_per_s:.2f} frames/s answered "
              f"({', '.join(f'{x:.2f}' for x in r.per_camera)} per camera), peak RSS {r.peak_rss_mb:.0f} MB, "
              f"largest batch logged {r.batch_size_max}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
