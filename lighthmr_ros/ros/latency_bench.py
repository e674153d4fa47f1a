"""Image-in to message-out latency of the detect node, next to the Predictor's own latency.

The node runs as its own process (as users run it, ``python -m lighthmr_ros.ros.node``) with the
same model settings as a Predictor built here. Frames are sent one at a time over DDS (640x480
rgb8 sensor_msgs/Image, reliable, depth 1); each HumanMeshArray answer is matched by its header
stamp. Predictor calls (here) and node frames (there) alternate, so machine load affects both, with
``gap_s`` of idle time before each (OpenMP worker threads busy-wait for a while after a forward; without
the gap one process's spinning threads slow the other's forward, which no single-node deployment sees).
Reported: medians of the Predictor's predict(), of the node's end-to-end time (publish here ->
answer received here: DDS both ways, image conversion, predict, tracking, message building) and
of the latency the node writes into each message (receive -> publish inside the node).
Used by ``lighthmr bench --node``.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lighthmr_ros.procs import stop_process


@dataclass(frozen=True)
class NodeLatencyOptions:
    """What to run and how long; ``threads`` (None: torch's current count) applies to both sides."""

    frames: int = 10
    warmup: int = 2
    image_size: int = 448
    persons: int = 4
    config: str = "lighthmr_tinyvit5m"
    body_model: str = ""
    threads: int | None = None
    domain_id: int | None = None
    timeout_s: float = 300.0
    gap_s: float = 0.25


@dataclass
class _Samples:
    predictor_ms: list[float]
    end_to_end_ms: list[float]
    internal_ms: list[float]
    lost: int = 0


def measure_node_latency(options: NodeLatencyOptions, progress: Callable[[str], None] | None = None) -> dict:
    """Run the comparison (see the module docstring); torch's thread count is restored afterwards."""
    import torch

    from lighthmr_ros.perf import torch_threads

    threads = options.threads or torch.get_num_threads()
    with torch_threads(threads):
        return _measure(options, threads, progress or (lambda msg: None))


def _node_process(opts: NodeLatencyOptions, threads: int, domain: int, log: Any) -> subprocess.Popen:
    """Start the detect node on ``domain`` with the Predictor's model settings, output to ``log``."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads))
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([repo, env.get("PYTHONPATH", "")])
    args = [sys.executable, "-m", "lighthmr_ros.ros.node", "--ros-args",
            "-p", f"model_config:={opts.config}", "-p", f"image_size:={opts.image_size}", "-p", "device:=cpu",
            "-p", "detection_threshold:=0.0", "-p", f"max_humans:={opts.persons}",
            "-p", "reliability:=reliable"]
    if opts.body_model:
        args += ["-p", f"body_model:={opts.body_model}"]
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


class _Probe:
    """A node of our own on ``domain``: publishes frames and collects the answers in a spinner thread."""

    def __init__(self, domain: int, proc: subprocess.Popen, timeout_s: float):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from lighthmr_ros.msg import HumanMeshArray

        self.proc, self.timeout_s = proc, timeout_s
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("lighthmr_latency_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.answers: dict[int, tuple[float, float]] = {}
        self.cond = threading.Condition()
        self.node.create_subscription(HumanMeshArray, "humans", self._on_humans, QoSProfile(depth=5))
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, "image", reliable)
        self.running = True
        self.spinner = threading.Thread(target=self._spin, daemon=True)
        self.spinner.start()

    def _on_humans(self, msg: Any) -> None:
        with self.cond:
            self.answers[msg.header.stamp.sec] = (time.perf_counter(), float(msg.latency))
            self.cond.notify_all()

    def _spin(self) -> None:
        while self.running and self.context.ok():
            self.executor.spin_once(timeout_sec=0.01)

    def node_ready(self) -> bool:
        return self.pub.get_subscription_count() > 0 and self.node.count_publishers("humans") > 0

    def send(self, rgb: np.ndarray, seq: int) -> tuple[float, float] | None:
        """Publish one frame stamped ``seq``; (end-to-end ms, node-internal ms), or None when lost."""
        from lighthmr_ros.ros.image import rgb_to_image_msg

        msg = rgb_to_image_msg(rgb)
        msg.header.stamp.sec = seq
        msg.header.frame_id = "camera"
        t0 = time.perf_counter()
        self.pub.publish(msg)
        with self.cond:
            answered = lambda: seq in self.answers or self.proc.poll() is not None  # noqa: E731
            self.cond.wait_for(answered, timeout=self.timeout_s)
        if seq not in self.answers:
            return None
        t1, inside = self.answers[seq]
        return (t1 - t0) * 1000.0, inside * 1000.0

    def close(self) -> None:
        import rclpy

        self.running = False
        self.spinner.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _measure(opts: NodeLatencyOptions, threads: int, say: Callable[[str], None]) -> dict:
    from lighthmr_ros.benchmark import bench_image
    from lighthmr_ros.inference import Predictor

    domain = opts.domain_id if opts.domain_id is not None else 100 + os.getpid() % 100
    rgb = bench_image()
    say("building the Predictor")
    pred = Predictor(config=opts.config, image_size=opts.image_size, device="cpu",
                     body_model=opts.body_model or None)
    log = tempfile.NamedTemporaryFile(prefix="lighthmr_node_", suffix=".log", delete=False)
    proc = _node_process(opts, threads, domain, log)
    probe = None
    try:
        probe = _Probe(domain, proc, opts.timeout_s)
        end = time.monotonic() + opts.timeout_s
        seq = _warm_up(probe, pred, rgb, opts, end, log.name, say)
        samples = _timed_frames(probe, pred, rgb, opts, seq, say)
    finally:
        stop_process(proc)
        if probe is not None:
            probe.close()
        log.close()
    if not samples.end_to_end_ms:
        raise RuntimeError(f"no frame came back from the node; see {log.name}")
    os.unlink(log.name)
    return _report(opts, threads, str(pred.body_model_name), rgb, samples)


def _warm_up(probe: _Probe, pred: Any, rgb: np.ndarray, opts: NodeLatencyOptions, end: float, log_name: str,
             say: Callable[[str], None]) -> int:
    """Wait for the node, then run ``warmup + 1`` answered frames on both sides; returns the next stamp."""
    say("waiting for the node (it builds its model)")
    while not probe.node_ready():
        if probe.proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"the detect node did not come up; see {log_name}")
        time.sleep(0.1)
    seq = 1
    for _ in range(opts.warmup + 1):  # the first frame may arrive before the model is loaded: retry
        while probe.send(rgb, seq) is None:
            seq += 1
            if probe.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the detect node gave no answer; see {log_name}")
        seq += 1
        pred.predict(rgb, det_threshold=0.0, max_humans=opts.persons)
    return seq


def _timed_frames(probe: _Probe, pred: Any, rgb: np.ndarray, opts: NodeLatencyOptions, seq: int,
                  say: Callable[[str], None]) -> _Samples:
    """Alternate one timed predict() here and one timed node frame there, ``gap_s`` of idle before each."""
    samples = _Samples([], [], [])
    for i in range(opts.frames):
        say(f"frame {i + 1}/{opts.frames}")
        time.sleep(opts.gap_s)  # let the other process's worker threads go idle (busy-waiting OpenMP threads)
        t0 = time.perf_counter()
        humans = pred.predict(rgb, det_threshold=0.0, max_humans=opts.persons)
        samples.predictor_ms.append((time.perf_counter() - t0) * 1000.0)
        if len(humans) != opts.persons:
            raise RuntimeError(f"expected {opts.persons} persons from the Predictor, got {len(humans)}")
        time.sleep(opts.gap_s)
        r = probe.send(rgb, seq + i)
        if r is None:
            samples.lost += 1
            continue
        samples.end_to_end_ms.append(r[0])
        samples.internal_ms.append(r[1])
    return samples


def _report(opts: NodeLatencyOptions, threads: int, body_model: str, rgb: np.ndarray, s: _Samples) -> dict:
    pm, em, im = (statistics.median(x) for x in (s.predictor_ms, s.end_to_end_ms, s.internal_ms))
    return {
        "config": opts.config, "body_model": body_model, "image_size": opts.image_size, "persons": opts.persons,
        "threads": threads, "frames": opts.frames, "lost_frames": s.lost,
        "image": f"{rgb.shape[1]}x{rgb.shape[0]} rgb8",
        "predictor_ms": pm, "node_end_to_end_ms": em, "node_internal_ms": im,
        "ratio_end_to_end": em / pm, "ratio_internal": im / pm,
        "predictor_all_ms": s.predictor_ms, "node_end_to_end_all_ms": s.end_to_end_ms,
        "node_internal_all_ms": s.internal_ms,
    }


def format_node_latency(r: dict) -> str:
    """One line for the terminal: both medians and their ratios."""
    return (f"node ({r['config']}, {r['body_model']}, {r['image_size']} px, {r['persons']} persons, "
            f"{r['threads']} threads, {r['frames']} frames, {r['lost_frames']} lost): "
            f"Predictor {r['predictor_ms']:.1f} ms, "
            f"node image-in to message-out {r['node_end_to_end_ms']:.1f} ms (x{r['ratio_end_to_end']:.3f}), "
            f"inside the node {r['node_internal_ms']:.1f} ms (x{r['ratio_internal']:.3f})")
