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
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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
            samples.append(Sample(f"synthetic_{path.stem}", scene["image_rgb"], np.asarray(scene["K"], np.float64)))
    return samples


def _camera_info(K: np.ndarray, width: int, height: int, header):
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo()
    info.header = header
    info.width, info.height = width, height
    info.k = [float(v) for v in K.reshape(9)]
    info.p = [float(K[0, 0]), 0.0, float(K[0, 2]), 0.0, 0.0, float(K[1, 1]), float(K[1, 2]), 0.0, 0.0, 0.0, 1.0, 0.0]
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    return info


def _humans_from_msg(msg):
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


def run_demo(out_dir: Path, n_synthetic: int = 4, seed: int = 7, checkpoint: str = "", image_size: int = 0,
             threshold: float | None = None, timeout_s: float = 600.0) -> dict:
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer, StoragePlugin
    from sensor_msgs.msg import Image as ImageMsg
    from visualization_msgs.msg import MarkerArray

    from lighthmr_ros.bag.writing import LATCHED_QOS, STREAM_QOS, message_definition
    from lighthmr_ros.msg import HumanMeshArray, MeshTopology
    from lighthmr_ros.overlay import render_overlay
    from lighthmr_ros.ros.image import rgb_to_image_msg

    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("overlay_*.png"):
        old.unlink()
    samples = sample_sequence(out_dir / "inputs", n_synthetic, seed)
    if not samples:
        raise SystemExit("no sample images could be assembled")

    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(100, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    cmd = [sys.executable, "-m", "lighthmr_ros.ros.node", "--ros-args", "-r", "__ns:=/demo",
           "-r", "image:=/demo/camera/image", "-r", "camera_info:=/demo/camera/camera_info",
           "-p", "reliability:=reliable"]
    if checkpoint:
        cmd += ["-p", f"checkpoint:={checkpoint}"]
    if image_size:
        cmd += ["-p", f"image_size:={int(image_size)}"]
    if threshold is not None:
        cmd += ["-p", f"detection_threshold:={float(threshold)}"]
    print("[demo] starting the detect node:", " ".join(cmd[2:]))
    node_log = open(out_dir / "node.log", "w")
    node_proc = subprocess.Popen(cmd, env=env, stdout=node_log, stderr=subprocess.STDOUT)

    rclpy.init()
    player = rclpy.create_node("demo_player", namespace="/demo")
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    image_pub = player.create_publisher(ImageMsg, "/demo/camera/image", reliable)
    info_pub = player.create_publisher(type(_camera_info(np.eye(3), 1, 1, None)), "/demo/camera/camera_info", reliable)
    answers: dict[tuple[int, int], HumanMeshArray] = {}
    markers: list = []
    topology: list = []
    player.create_subscription(HumanMeshArray, "/demo/humans",
                               lambda m: answers.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec), m), reliable)
    player.create_subscription(MarkerArray, "/demo/markers", markers.append, reliable)
    player.create_subscription(MeshTopology, "/demo/mesh_topology", topology.append,
                               QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                          durability=DurabilityPolicy.TRANSIENT_LOCAL))

    bag_path = out_dir / "bag"
    if bag_path.exists():
        import shutil

        shutil.rmtree(bag_path)
    results = []
    t_start = time.monotonic()
    try:
        deadline = time.monotonic() + timeout_s
        print("[demo] waiting for the node to load its model and subscribe ...")
        while image_pub.get_subscription_count() == 0 or not topology:
            if node_proc.poll() is not None:
                raise SystemExit(f"the detect node exited with code {node_proc.returncode}; see {out_dir / 'node.log'}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the detect node did not come up in {timeout_s:.0f} s; see {out_dir / 'node.log'}")
            rclpy.spin_once(player, timeout_sec=0.1)
        topo = topology[0]
        faces = np.asarray(topo.faces, dtype=np.int64).reshape(-1, 3)

        with Writer(bag_path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            def connection(topic, msgtype, qos):
                msgdef, digest = message_definition(msgtype)
                return writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=digest, offered_qos_profiles=[qos])

            c_image = connection("/demo/camera/image", "sensor_msgs/msg/Image", STREAM_QOS)
            c_humans = connection("/demo/humans", "lighthmr_ros/msg/HumanMeshArray", STREAM_QOS)
            c_markers = connection("/demo/markers", "visualization_msgs/msg/MarkerArray", STREAM_QOS)
            c_topo = connection("/demo/mesh_topology", "lighthmr_ros/msg/MeshTopology", LATCHED_QOS)
            writer.write(c_topo, time.time_ns(), serialize_message(topo))

            for i, sample in enumerate(samples):
                height, width = sample.rgb.shape[:2]
                msg = rgb_to_image_msg(sample.rgb)
                now_ns = time.time_ns()
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
                msg.header.frame_id = "demo_camera_optical"
                key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
                if sample.K is not None:
                    info_pub.publish(_camera_info(sample.K, width, height, msg.header))
                    for _ in range(3):
                        rclpy.spin_once(player, timeout_sec=0.02)
                markers.clear()
                t0 = time.monotonic()
                image_pub.publish(msg)
                while key not in answers:
                    if node_proc.poll() is not None:
                        raise SystemExit(f"the detect node died; see {out_dir / 'node.log'}")
                    if time.monotonic() - t0 > 120:
                        raise SystemExit(f"no answer for frame {sample.name} in 120 s; see {out_dir / 'node.log'}")
                    rclpy.spin_once(player, timeout_sec=0.05)
                round_trip = time.monotonic() - t0
                for _ in range(5):  # markers follow the humans message
                    rclpy.spin_once(player, timeout_sec=0.02)
                answer = answers[key]
                writer.write(c_image, now_ns, serialize_message(msg))
                writer.write(c_humans, now_ns, serialize_message(answer))
                for m in markers:
                    writer.write(c_markers, now_ns, serialize_message(m))
                humans = _humans_from_msg(answer)
                K_used = np.asarray(answer.k, dtype=np.float64).reshape(3, 3)
                overlay = render_overlay(sample.rgb, humans, K_used, faces, list(topo.joint_parents))
                from PIL import Image

                Image.fromarray(overlay).save(out_dir / f"overlay_{i:02d}_{sample.name}.png")
                results.append({"frame": sample.name, "people": len(humans), "node_latency_s": float(answer.latency),
                                "round_trip_s": round_trip})
                print(f"[demo] {sample.name:>22}: {len(humans)} people, node latency {answer.latency * 1000:.0f} ms, "
                      f"round trip {round_trip * 1000:.0f} ms")
    finally:
        player.destroy_node()
        rclpy.try_shutdown()
        stop_process(node_proc, timeout=10)
        node_log.close()
    summary = {
        "frames": len(results),
        "people_per_frame": [r["people"] for r in results],
        "median_node_latency_s": float(np.median([r["node_latency_s"] for r in results])) if results else None,
        "median_round_trip_s": float(np.median([r["round_trip_s"] for r in results])) if results else None,
        "seconds": time.monotonic() - t_start,
        "bag": str(bag_path),
        "overlays": str(out_dir),
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lighthmr-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--synthetic", type=int, default=4, help="number of synthetic scenes in the sequence")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--checkpoint", default="", help="model checkpoint (default: the bundled model)")
    parser.add_argument("--image-size", type=int, default=0, help="network input side (0: the model's default)")
    parser.add_argument("--threshold", type=float, default=None, help="detection threshold (default: the node's)")
    args = parser.parse_args(argv)
    from lighthmr_ros.inference import DEFAULT_CHECKPOINT

    if not args.checkpoint and not DEFAULT_CHECKPOINT.is_file():
        print("\n" + "!" * 78 + "\n[demo] NO TRAINED MODEL IS BUNDLED YET: the node runs an UNTRAINED student with\n"
              "[demo] random weights. Detections and meshes are meaningless; pass --checkpoint to use\n"
              "[demo] a trained one. The pipeline (DDS, messages, bag, overlays) is real.\n" + "!" * 78 + "\n")
    summary = run_demo(args.out, args.synthetic, args.seed, args.checkpoint, args.image_size, args.threshold)
    print(f"\n[demo] {summary['frames']} frames, people per frame {summary['people_per_frame']}, median node latency "
          f"{summary['median_node_latency_s'] * 1000:.0f} ms, median round trip {summary['median_round_trip_s'] * 1000:.0f} ms")
    print(f"[demo] bag: {summary['bag']}   overlays: {summary['overlays']}/overlay_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
