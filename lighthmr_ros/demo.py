"""``make demo``: the real detect node on DDS, fed with a sample sequence, its answers recorded.

What happens:
1. A sample sequence is assembled: real photos with people that ship inside installed packages
   (scikit-image's astronaut, matplotlib's Grace Hopper) and synthetic multi-person scenes rendered
   with the bundled Anny body model (``lighthmr synth``).
2. The detect node starts as its own process (``python -m lighthmr_ros.ros.node``) on a private
   ROS_DOMAIN_ID with localhost discovery.
3. A player node publishes each frame (Image + CameraInfo), waits for the node's HumanMeshArray for
   that stamp, and records images, humans, markers and the mesh topology into a rosbag2 (mcap).
4. Every answer is rendered over its image into ``demo_out/overlay_*.png``; a summary is printed.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from lighthmr_ros.procs import stop_process


@dataclass
class Sample:
    name: str
    rgb: np.ndarray
    K: np.ndarray | None  # None: the node uses its fov_deg


def sample_sequence(workdir: Path, n_synthetic: int, seed: int) -> list[Sample]:
    """Photos shipped in installed packages, then synthetic Anny scenes (rendered into workdir)."""
    from PIL import Image

    samples: list[Sample] = []
    try:
        import skimage.data

        samples.append(Sample("astronaut", np.asarray(skimage.data.astronaut(), dtype=np.uint8), None))
    except Exception as exc:  # optional sample source
        print(f"[demo] skipping scikit-image's astronaut: {exc}")
    try:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            samples.append(Sample("grace_hopper", np.asarray(Image.open(f).convert("RGB")), None))
    except Exception as exc:
        print(f"[demo] skipping matplotlib's grace_hopper: {exc}")
    if n_synthetic > 0:
        from lighthmr_ros.synth import generate_scenes, list_scenes, load_scene

        folder = workdir / "synthetic"
        if len(list(folder.glob("[0-9]*.npz"))) < n_synthetic:
            print(f"[demo] rendering {n_synthetic} synthetic Anny scenes (seed {seed})")
            generate_scenes(folder, n_synthetic, seed=seed)
        for path in list_scenes(folder)[:n_synthetic]:
            scene = load_scene(path, with_image=True)
            K = np.asarray(scene["K"], np.float64)
            samples.append(Sample(f"synthetic_{path.stem}", scene["image_rgb"], K))
    return samples


@dataclass(frozen=True)
class DemoOptions:
    """What ``make demo`` runs; empty fields leave the node's own defaults."""

    out_dir: Path = Path("demo_out")
    n_synthetic: int = 4
    seed: int = 7
    checkpoint: str = ""
    image_size: int = 0  # 0: the model's
    threshold: float | None = None
    timeout_s: float = 600.0  # for the node to load its model and subscribe
    frame_timeout_s: float = 120.0  # for one answer


@dataclass
class _Frame:
    """One sample as sent and answered: the Image message, the node's answer and the markers after it."""

    name: str
    image: Any
    answer: Any
    markers: list
    stamp_ns: int
    round_trip_s: float


IMAGE_TOPIC = "/demo/camera/image"
INFO_TOPIC = "/demo/camera/camera_info"
HUMANS_TOPIC = "/demo/humans"
MARKERS_TOPIC = "/demo/markers"
TOPOLOGY_TOPIC = "/demo/mesh_topology"


def run_demo(options: DemoOptions) -> dict:
    """Play the sample sequence through the detect node; returns the summary ``main`` prints."""
    import rclpy

    out_dir = options.out_dir
    _prepare_out_dir(out_dir)
    samples = sample_sequence(out_dir / "inputs", options.n_synthetic, options.seed)
    if not samples:
        raise SystemExit("no sample images could be assembled")
    node_proc, node_log = _start_node(options, _private_ros_domain())
    log_path = out_dir / "node.log"
    results: list[dict] = []
    t_start = time.monotonic()
    player = None
    try:
        rclpy.init()
        player = _Player(node_proc, log_path)
        topo = player.wait_for_node(options.timeout_s)
        faces = np.asarray(topo.faces, dtype=np.int64).reshape(-1, 3)
        with _bag_recorder(out_dir / "bag", topo) as record:
            for i, sample in enumerate(samples):
                frame = player.play(sample, options.frame_timeout_s)
                record(frame)
                results.append(_render_result(frame, sample, out_dir / f"overlay_{i:02d}_{sample.name}.png",
                                              faces, list(topo.joint_parents)))
    finally:
        if player is not None:
            player.destroy()
        rclpy.try_shutdown()
        stop_process(node_proc, timeout=10)
        node_log.close()
    return _summary(results, time.monotonic() - t_start, out_dir)


def _prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` and remove the overlays and bag of an earlier run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("overlay_*.png"):
        old.unlink()
    if (out_dir / "bag").exists():
        shutil.rmtree(out_dir / "bag")


def _private_ros_domain() -> dict[str, str]:
    """A random ROS_DOMAIN_ID with localhost discovery, for this process and the node's environment."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(100, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    return env


def _start_node(options: DemoOptions, env: dict[str, str]) -> tuple[subprocess.Popen, IO[str]]:
    """The detect node as its own process in /demo, its output in ``out_dir/node.log``."""
    cmd = [sys.executable, "-m", "lighthmr_ros.ros.node", "--ros-args", "-r", "__ns:=/demo",
           "-r", f"image:={IMAGE_TOPIC}", "-r", f"camera_info:={INFO_TOPIC}", "-p", "reliability:=reliable"]
    if options.checkpoint:
        cmd += ["-p", f"checkpoint:={options.checkpoint}"]
    if options.image_size:
        cmd += ["-p", f"image_size:={int(options.image_size)}"]
    if options.threshold is not None:
        cmd += ["-p", f"detection_threshold:={float(options.threshold)}"]
    print("[demo] starting the detect node:", " ".join(cmd[2:]))
    node_log = open(options.out_dir / "node.log", "w")  # closed by run_demo
    return subprocess.Popen(cmd, env=env, stdout=node_log, stderr=subprocess.STDOUT), node_log


class _Player:
    """The demo's own node: publishes each frame (with its CameraInfo) and collects the node's answers."""

    def __init__(self, node_proc: subprocess.Popen, log_path: Path):
        import rclpy
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo
        from sensor_msgs.msg import Image as ImageMsg
        from visualization_msgs.msg import MarkerArray

        from lighthmr_ros.msg import HumanMeshArray, MeshTopology

        self.node_proc, self.log_path = node_proc, log_path
        self.node = rclpy.create_node("demo_player", namespace="/demo")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.image_pub = self.node.create_publisher(ImageMsg, IMAGE_TOPIC, reliable)
        self.info_pub = self.node.create_publisher(CameraInfo, INFO_TOPIC, reliable)
        self.answers: dict[tuple[int, int], Any] = {}
        self.markers: list = []
        self.topology: list = []
        self.node.create_subscription(HumanMeshArray, HUMANS_TOPIC, self._on_humans, reliable)
        self.node.create_subscription(MarkerArray, MARKERS_TOPIC, self.markers.append, reliable)
        self.node.create_subscription(MeshTopology, TOPOLOGY_TOPIC, self.topology.append, latched)

    def _on_humans(self, msg: Any) -> None:
        self.answers[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg

    def _spin(self, timeout_s: float, times: int = 1) -> None:
        import rclpy

        for _ in range(times):
            rclpy.spin_once(self.node, timeout_sec=timeout_s)

    def _fail(self, what: str) -> SystemExit:
        return SystemExit(f"{what}; see {self.log_path}")

    def wait_for_node(self, timeout_s: float) -> Any:
        """Spin until the node subscribes to the images and latches its MeshTopology; returns that."""
        print("[demo] waiting for the node to load its model and subscribe ...")
        deadline = time.monotonic() + timeout_s
        while self.image_pub.get_subscription_count() == 0 or not self.topology:
            if self.node_proc.poll() is not None:
                raise self._fail(f"the detect node exited with code {self.node_proc.returncode}")
            if time.monotonic() > deadline:
                raise self._fail(f"the detect node did not come up in {timeout_s:.0f} s")
            self._spin(0.1)
        return self.topology[0]

    def play(self, sample: Sample, timeout_s: float) -> _Frame:
        """Publish one sample (stamped now) and wait for its answer and the markers that follow it."""
        from lighthmr_ros.ros.image import rgb_to_image_msg

        msg = rgb_to_image_msg(sample.rgb)
        now_ns = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
        msg.header.frame_id = "demo_camera_optical"
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if sample.K is not None:
            height, width = sample.rgb.shape[:2]
            self.info_pub.publish(_camera_info(sample.K, width, height, msg.header))
            self._spin(0.02, times=3)
        self.markers.clear()
        t0 = time.monotonic()
        self.image_pub.publish(msg)
        while key not in self.answers:
            if self.node_proc.poll() is not None:
                raise self._fail("the detect node died")
            if time.monotonic() - t0 > timeout_s:
                raise self._fail(f"no answer for frame {sample.name} in {timeout_s:.0f} s")
            self._spin(0.05)
        round_trip = time.monotonic() - t0
        self._spin(0.02, times=5)  # markers follow the humans message
        return _Frame(sample.name, msg, self.answers[key], list(self.markers), now_ns, round_trip)

    def destroy(self) -> None:
        self.node.destroy_node()


def _camera_info(K: np.ndarray, width: int, height: int, header: Any) -> Any:
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo()
    info.header = header
    info.width, info.height = width, height
    info.k = [float(v) for v in K.reshape(9)]
    info.p = [float(K[0, 0]), 0.0, float(K[0, 2]), 0.0, 0.0, float(K[1, 1]), float(K[1, 2]), 0.0,
              0.0, 0.0, 1.0, 0.0]
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    return info


@contextmanager
def _bag_recorder(bag_path: Path, topology: Any) -> Iterator[Callable[[_Frame], None]]:
    """A rosbag2 (mcap) with the topology; yields ``record(frame)`` writing image, answer and markers."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    from lighthmr_ros.bag.writing import LATCHED_QOS, STREAM_QOS, message_definition

    with Writer(bag_path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        def connection(topic: str, msgtype: str, qos: Any) -> Any:
            msgdef, digest = message_definition(msgtype)
            return writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=digest, offered_qos_profiles=[qos])

        c_image = connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", STREAM_QOS)
        c_humans = connection(HUMANS_TOPIC, "lighthmr_ros/msg/HumanMeshArray", STREAM_QOS)
        c_markers = connection(MARKERS_TOPIC, "visualization_msgs/msg/MarkerArray", STREAM_QOS)
        c_topo = connection(TOPOLOGY_TOPIC, "lighthmr_ros/msg/MeshTopology", LATCHED_QOS)
        writer.write(c_topo, time.time_ns(), serialize_message(topology))

        def record(frame: _Frame) -> None:
            writer.write(c_image, frame.stamp_ns, serialize_message(frame.image))
            writer.write(c_humans, frame.stamp_ns, serialize_message(frame.answer))
            for m in frame.markers:
                writer.write(c_markers, frame.stamp_ns, serialize_message(m))

        yield record


def _humans_from_msg(msg: Any) -> list:
    """HumanMeshArray -> Human records (the node's answer, back in the form the overlay draws)."""
    from lighthmr_ros.human import Human
    from lighthmr_ros.ros.messages import msg_to_arrays

    out = []
    for h in msg.humans:
        a = msg_to_arrays(h)
        out.append(Human(id=int(h.id), score=float(h.score), center_2d=np.asarray(h.center_2d, np.float64),
                         translation=a["translation"], pose=a["pose"], shape=a["shape"],
                         expression=a["expression"], joints=a["joints"], joints_2d=a["joints_2d"],
                         vertices=a["vertices"] if len(a["vertices"]) else None, body_model=msg.body_model))
    return out


def _render_result(frame: _Frame, sample: Sample, overlay_path: Path, faces: np.ndarray,
                   joint_parents: list[int]) -> dict:
    """Draw the answer over its image into ``overlay_path``, print a line; the frame's summary row."""
    from PIL import Image

    from lighthmr_ros.overlay import render_overlay

    humans = _humans_from_msg(frame.answer)
    K_used = np.asarray(frame.answer.k, dtype=np.float64).reshape(3, 3)
    Image.fromarray(render_overlay(sample.rgb, humans, K_used, faces, joint_parents)).save(overlay_path)
    latency = float(frame.answer.latency)
    print(f"[demo] {sample.name:>22}: {len(humans)} people, node latency {latency * 1000:.0f} ms, "
          f"round trip {frame.round_trip_s * 1000:.0f} ms")
    return {"frame": sample.name, "people": len(humans), "node_latency_s": latency,
            "round_trip_s": frame.round_trip_s}


def _summary(results: list[dict], seconds: float, out_dir: Path) -> dict:
    def median(key: str) -> float | None:
        return float(np.median([r[key] for r in results])) if results else None

    return {
        "frames": len(results),
        "people_per_frame": [r["people"] for r in results],
        "median_node_latency_s": median("node_latency_s"),
        "median_round_trip_s": median("round_trip_s"),
        "seconds": seconds,
        "bag": str(out_dir / "bag"),
        "overlays": str(out_dir),
    }


UNTRAINED_WARNING = (
    "\n" + "!" * 78 + "\n[demo] NO TRAINED MODEL IS BUNDLED YET: the node runs an UNTRAINED student with\n"
    "[demo] random weights. Detections and meshes are meaningless; pass --checkpoint to use\n"
    "[demo] a trained one. The pipeline (DDS, messages, bag, overlays) is real.\n" + "!" * 78 + "\n"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lighthmr-demo", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--synthetic", type=int, default=4, help="number of synthetic scenes in the sequence")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--checkpoint", default="", help="model checkpoint (default: the bundled model)")
    parser.add_argument("--image-size", type=int, default=0, help="network input side (0: the model's default)")
    parser.add_argument("--threshold", type=float, default=None, help="detection threshold (default: the node's)")
    args = parser.parse_args(argv)
    from lighthmr_ros.inference import DEFAULT_CHECKPOINT

    if not args.checkpoint and not DEFAULT_CHECKPOINT.is_file():
        print(UNTRAINED_WARNING)
    summary = run_demo(DemoOptions(out_dir=args.out, n_synthetic=args.synthetic, seed=args.seed,
                                   checkpoint=args.checkpoint, image_size=args.image_size,
                                   threshold=args.threshold))
    print(f"\n[demo] {summary['frames']} frames, people per frame {summary['people_per_frame']}, "
          f"median node latency {summary['median_node_latency_s'] * 1000:.0f} ms, "
          f"median round trip {summary['median_round_trip_s'] * 1000:.0f} ms")
    print(f"[demo] bag: {summary['bag']}   overlays: {summary['overlays']}/overlay_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
