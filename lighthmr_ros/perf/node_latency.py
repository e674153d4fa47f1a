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
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from lighthmr_ros.procs import stop_process


def measure_node_latency(frames: int = 10, warmup: int = 2, image_size: int = 448, persons: int = 4,
                         config: str = "lighthmr_tinyvit5m", body_model: str = "", threads: int | None = None,
                         domain_id: int | None = None, timeout_s: float = 300.0, gap_s: float = 0.25, progress=None) -> dict:
    """Run the comparison (see the module docstring); ``threads`` for both sides (restored afterwards)."""
    import torch

    say = progress or (lambda msg: None)
    threads_before = torch.get_num_threads()
    threads = threads or threads_before
    torch.set_num_threads(threads)
    try:
        return _measure(frames, warmup, image_size, persons, config, body_model, threads, domain_id, timeout_s, gap_s, say)
    finally:
        torch.set_num_threads(threads_before)


def _measure(frames, warmup, image_size, persons, config, body_model, threads, domain_id, timeout_s, gap_s, say) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from lighthmr_ros.benchmark import bench_image
    from lighthmr_ros.inference import Predictor
    from lighthmr_ros.msg import HumanMeshArray
    from lighthmr_ros.ros.image import rgb_to_image_msg

    domain = domain_id if domain_id is not None else 100 + os.getpid() % 100
    rgb = bench_image()
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS=str(threads))
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([repo, env.get("PYTHONPATH", "")])
    args = [sys.executable, "-m", "lighthmr_ros.ros.node", "--ros-args",
            "-p", f"model_config:={config}", "-p", f"image_size:={image_size}", "-p", "device:=cpu",
            "-p", "detection_threshold:=0.0", "-p", f"max_humans:={persons}", "-p", "reliability:=reliable"]
    if body_model:
        args += ["-p", f"body_model:={body_model}"]
    say("building the Predictor")
    pred = Predictor(config=config, image_size=image_size, device="cpu", body_model=body_model or None)
    context = rclpy.context.Context()
    rclpy.init(context=context, domain_id=domain)
    log = tempfile.NamedTemporaryFile(prefix="lighthmr_node_", suffix=".log", delete=False)
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    node = rclpy.create_node("lighthmr_latency_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    answers: dict[int, tuple[float, float]] = {}
    cond = threading.Condition()

    def on_humans(msg) -> None:
        with cond:
            answers[msg.header.stamp.sec] = (time.perf_counter(), float(msg.latency))
            cond.notify_all()

    node.create_subscription(HumanMeshArray, "humans", on_humans, QoSProfile(depth=5))
    pub = node.create_publisher(Image, "image", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    running = [True]

    def spin() -> None:
        while running[0] and context.ok():
            executor.spin_once(timeout_sec=0.01)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()

    def node_frame(seq: int) -> tuple[float, float] | None:
        msg = rgb_to_image_msg(rgb)
        msg.header.stamp.sec = seq
        msg.header.frame_id = "camera"
        t0 = time.perf_counter()
        pub.publish(msg)
        with cond:
            ok = cond.wait_for(lambda: seq in answers or proc.poll() is not None, timeout=timeout_s)
        if not ok or seq not in answers:
            return None
        t1, inside = answers[seq]
        return (t1 - t0) * 1000.0, inside * 1000.0

    try:
        say("waiting for the node (it builds its model)")
        end = time.monotonic() + timeout_s
        while pub.get_subscription_count() == 0 or node.count_publishers("humans") == 0:
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the detect node did not come up; see {log.name}")
            time.sleep(0.1)
        seq = 1
        for _ in range(warmup + 1):  # the first frame may arrive before the model is loaded: retry
            while node_frame(seq) is None:
                seq += 1
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"the detect node gave no answer; see {log.name}")
            seq += 1
            pred.predict(rgb, det_threshold=0.0, max_humans=persons)
        p_ms, e2e_ms, inside_ms, lost = [], [], [], 0
        for i in range(frames):
            say(f"frame {i + 1}/{frames}")
            time.sleep(gap_s)  # let the other process's worker threads go idle (busy-waiting OpenMP threads)
            t0 = time.perf_counter()
            humans = pred.predict(rgb, det_threshold=0.0, max_humans=persons)
            p_ms.append((time.perf_counter() - t0) * 1000.0)
            if len(humans) != persons:
                raise RuntimeError(f"expected {persons} persons from the Predictor, got {len(humans)}")
            time.sleep(gap_s)
            r = node_frame(seq)
            seq += 1
            if r is None:
                lost += 1
                continue
            e2e_ms.append(r[0])
            inside_ms.append(r[1])
    finally:
        running[0] = False
        spinner.join(timeout=5)
        stop_process(proc)
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        log.close()
    if not e2e_ms:
        raise RuntimeError(f"no frame came back from the node; see {log.name}")
    os.unlink(log.name)
    pm, em, im = statistics.median(p_ms), statistics.median(e2e_ms), statistics.median(inside_ms)
    return {
        "config": config, "body_model": pred.body_model_name, "image_size": image_size, "persons": persons,
        "threads": threads, "frames": frames, "lost_frames": lost, "image": f"{rgb.shape[1]}x{rgb.shape[0]} rgb8",
        "predictor_ms": pm, "node_end_to_end_ms": em, "node_internal_ms": im,
        "ratio_end_to_end": em / pm, "ratio_internal": im / pm,
        "predictor_all_ms": p_ms, "node_end_to_end_all_ms": e2e_ms, "node_internal_all_ms": inside_ms,
    }


def format_node_latency(r: dict) -> str:
    return (f"node ({r['config']}, {r['body_model']}, {r['image_size']} px, {r['persons']} persons, {r['threads']} threads, "
            f"{r['frames']} frames, {r['lost_frames']} lost): Predictor {r['predictor_ms']:.1f} ms, "
            f"node image-in to message-out {r['node_end_to_end_ms']:.1f} ms (x{r['ratio_end_to_end']:.3f}), "
            f"inside the node {r['node_internal_ms']:.1f} ms (x{r['ratio_internal']:.3f})")
