"""process_bag: images of a recorded bag -> HumanMeshArray, MarkerArray and MeshTopology in a new bag.

One code path with the node: images are deserialised by rclpy into the message objects the node
receives, converted and turned into messages by lighthmr_ros.ros, serialised by rclpy and written
as raw CDR by rosbags with their definitions, hashes and QoS, so any ROS 2 tool can read the result.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lighthmr_ros.bag.reading import (
    CAMERA_INFO,
    CdrConverter,
    connections_of,
    first_message,
    iter_messages,
    open_bag,
    select_topics,
)
from lighthmr_ros.bag.writing import (
    HUMANS_TYPE,
    LATCHED_QOS,
    MARKERS_TYPE,
    STREAM_QOS,
    TOPOLOGY_TYPE,
    StagedOutput,
    check_output,
    message_definition,
)
from lighthmr_ros.errors import BagError

log = logging.getLogger(__name__)
STORAGES = ("sqlite3", "mcap")


@dataclass(frozen=True)
class BagSummary:
    """What one process_bag run did. `fps` counts processed frames per second of processing time."""

    input: Path
    output: Path
    image_topic: str
    frames: int
    humans: int
    skipped: int
    seconds: float
    topics: dict[str, int] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        skipped = f", {self.skipped} unreadable images skipped" if self.skipped else ""
        return (
            f"{self.frames} frames, {self.humans} humans, {self.fps:.2f} frames/s "
            f"({self.seconds:.1f} s){skipped} -> {self.output}"
        )


def output_topics(namespace: str) -> dict[str, str]:
    """The node's output topics under `namespace` ("/lighthmr" -> /lighthmr/humans, ...)."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return {name: f"{ns}/{name}" for name in ("humans", "markers", "mesh_topology")}


def _stamp_seconds(header, log_time_ns: int) -> float:
    stamp = header.stamp.sec + header.stamp.nanosec * 1e-9
    return stamp if stamp > 0 else log_time_ns * 1e-9


def process_bag(
    input: str | Path,
    output: str | Path,
    image_topic: str,
    *,
    camera_info_topic: str | None = None,
    compressed: str | bool = "auto",
    copy_topics: str | Sequence[str] = "all",
    storage: str = "sqlite3",
    overwrite: bool = False,
    predictor=None,
    checkpoint: str | Path | None = None,
    config: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
    backend: str = "torch",
    onnx_dir: str | Path | None = None,
    image_size: int | None = None,
    body_model: str | None = None,
    smplx_model_dir: str | None = None,
    det_threshold: float = 0.5,
    nms_kernel: int | None = None,
    max_humans: int = 20,
    fov_deg: float = 60.0,
    publish_vertices: bool = True,
    markers: bool = True,
    marker_decimation: int = 8,
    track: bool = True,
    namespace: str = "/lighthmr",
    progress: bool = True,
    on_frame: Callable[[int, int], None] | None = None,
) -> BagSummary:
    """Run the Predictor on every image of `image_topic` in `input` and write the results to `output`.

    input: a rosbag2 folder (sqlite3 or mcap), a .mcap/.db3 file or a ROS 1 .bag; never modified.
    output: a new rosbag2 folder in `storage` format; refused if it exists unless `overwrite`.
    It is written beside and renamed into place at the end, so an error or Ctrl-C leaves no
    partial bag there. Results are stamped with each image's log time and header.
    camera_info_topic: None finds `<camera>/camera_info`; "none" uses `fov_deg` instead.
    copy_topics: "all", "none" or topic names copied unchanged into the output.
    predictor: a ready lighthmr_ros.inference.Predictor; otherwise one is built from
    checkpoint/config/device/precision/backend/onnx_dir/image_size/body_model/smplx_model_dir.
    on_frame(done, total) is called after each image (progress in notebooks; raising stops the run).
    """
    try:  # the node's own message code: rclpy, sensor_msgs and the built lighthmr_ros messages
        from rclpy.serialization import deserialize_message, serialize_message
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from lighthmr_ros.ros.image import compressed_msg_to_rgb, image_msg_to_rgb
        from lighthmr_ros.ros.intrinsics import k_from_camera_info
        from lighthmr_ros.ros.markers import humans_to_markers_cdr
        from lighthmr_ros.ros.messages import humans_to_msg, topology_msg
        from lighthmr_ros.ros.tracking import Tracker
    except ImportError as err:
        raise BagError(
            f"processing bags needs ROS 2 Python (rclpy, sensor_msgs) and the built lighthmr_ros messages ({err}); "
            "run `make test`'s setup or source your ROS 2 workspace."
        ) from err
    from rosbags.rosbag2 import StoragePlugin, Writer

    src, dst = Path(input), Path(output)
    if storage not in STORAGES:
        raise BagError(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}.")
    reader = open_bag(src)
    try:
        selection = select_topics(reader, image_topic, camera_info_topic, compressed, copy_topics)
        image_connections = connections_of(reader, [selection.image])
        total = sum(c.msgcount for c in image_connections)
        if total == 0:
            raise BagError(f"topic {selection.image} of {src} holds no messages; pick another image topic.")
        names = output_topics(namespace)
        if clash := sorted(set(names.values()) & set(selection.copy)):
            raise BagError(f"the input already has {', '.join(clash)}; pass another namespace or leave it out of copy_topics.")
        check_output(dst, [src], overwrite)
        if predictor is None:
            from lighthmr_ros.inference import Predictor

            predictor = Predictor(
                checkpoint=checkpoint, config=config, device=device, precision=precision,
                body_model=body_model, smplx_model_dir=smplx_model_dir, image_size=image_size,
                backend=backend, onnx_dir=onnx_dir,
            )
        to_cdr = CdrConverter(reader)
        image_type, to_rgb = (CompressedImage, compressed_msg_to_rgb) if selection.compressed else (Image, image_msg_to_rgb)
        tracker = Tracker() if track else None

        info = None
        if selection.camera_info:
            first = first_message(reader, selection.camera_info)
            if first is not None:
                info = deserialize_message(to_cdr(first[0], first[2]), CameraInfo)
        else:
            log.info("no CameraInfo topic: intrinsics from a %.0f degree field of view", fov_deg)

        wanted = {selection.image, *selection.copy, *([selection.camera_info] if selection.camera_info else [])}
        connections = connections_of(reader, sorted(wanted))
        image_ids = {c.id for c in image_connections}
        info_ids = {c.id for c in connections if c.topic == selection.camera_info and c.msgtype == CAMERA_INFO}
        frames = humans_count = skipped = 0
        first_error: Exception | None = None
        seconds = 0.0
        counts: dict[str, int] = {}

        with StagedOutput(dst, overwrite) as staging, Writer(
            staging, version=9, storage_plugin=StoragePlugin[storage.upper()]
        ) as writer:
            from lighthmr_ros import __version__

            writer.set_custom_data("lighthmr_ros.version", __version__)
            writer.set_custom_data("lighthmr_ros.input", str(src.resolve()))
            writer.set_custom_data("lighthmr_ros.image_topic", selection.image)
            copied = _copy_connections(writer, to_cdr, connections, selection.copy)

            def add(topic: str, msgtype: str, qos):
                msgdef, digest = message_definition(msgtype)
                return writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=digest, offered_qos_profiles=[qos])

            out_humans = add(names["humans"], HUMANS_TYPE, STREAM_QOS)
            out_markers = add(names["markers"], MARKERS_TYPE, STREAM_QOS) if markers else None
            out_topology = add(names["mesh_topology"], TOPOLOGY_TYPE, LATCHED_QOS)
            topology = serialize_message(topology_msg(predictor))
            faces, parents = predictor.faces, predictor.joint_parents

            def annotate(msg, rgb, info, log_time: int, received: float) -> tuple[bytes, bytes | None, int]:
                """One image -> (HumanMeshArray CDR, MarkerArray CDR or None, humans found), as the node does."""
                height, width = rgb.shape[:2]
                k = k_from_camera_info(info, width, height) if info is not None else None
                if k is None:
                    k = predictor.default_K(width, height, fov_deg)
                humans = predictor.predict(
                    rgb, K=k, fov_deg=fov_deg, det_threshold=det_threshold, nms_kernel=nms_kernel,
                    max_humans=max_humans, with_vertices=publish_vertices or markers,
                )
                if tracker is not None:
                    humans = tracker.update(humans, _stamp_seconds(msg.header, log_time))
                else:
                    humans = [dataclasses.replace(h, id=0) for h in humans]  # HumanMesh: 0 = not tracked
                result = humans_to_msg(
                    humans, msg.header, k, predictor.body_model_name, width, height, publish_vertices,
                    latency=time.perf_counter() - received,
                )
                drawn = humans_to_markers_cdr(humans, msg.header, faces, parents, marker_decimation) if markers else None
                return serialize_message(result), drawn, len(humans)

            bar = _progress_bar(total, selection.image, progress)
            start = time.perf_counter()
            try:
                for connection, log_time, raw in iter_messages(reader, connections):
                    if connection.id in copied:
                        writer.write(copied[connection.id], log_time, to_cdr(connection, raw))
                    if connection.id in info_ids:
                        info = deserialize_message(to_cdr(connection, raw), CameraInfo)
                    if connection.id not in image_ids:
                        continue
                    received = time.perf_counter()
                    try:
                        msg = deserialize_message(to_cdr(connection, raw), image_type)
                        rgb = to_rgb(msg)
                    except Exception as err:  # one bad message must not end a long recording
                        skipped += 1
                        first_error = first_error or err
                        log.warning("skipping image at %d ns: %s", log_time, err)
                        bar.update(1)
                        if on_frame is not None:
                            on_frame(frames + skipped, total)
                        continue
                    humans_cdr, markers_cdr, found = annotate(msg, rgb, info, log_time, received)
                    if frames == 0:
                        writer.write(out_topology, log_time, topology)
                    writer.write(out_humans, log_time, humans_cdr)
                    if out_markers is not None:
                        writer.write(out_markers, log_time, markers_cdr)
                    frames += 1
                    humans_count += found
                    bar.set_postfix(humans=humans_count, refresh=False)
                    bar.update(1)
                    if on_frame is not None:
                        on_frame(frames + skipped, total)
            finally:
                seconds = time.perf_counter() - start
                bar.close()
            if frames == 0:
                raise BagError(
                    f"none of the {skipped} images on {selection.image} could be read ({first_error}); no output written."
                )
            counts = {c.topic: writer.counts[c.id] for c in writer.connections}
    finally:
        reader.close()
    return BagSummary(
        input=src, output=dst, image_topic=selection.image, frames=frames, humans=humans_count,
        skipped=skipped, seconds=seconds, topics=counts,
    )


def _copy_connections(writer, to_cdr: CdrConverter, connections, topics: Sequence[str]) -> dict:
    """Output connections for the copied topics, keyed by input connection id (definitions and QoS kept)."""
    wanted, mapping, made = set(topics), {}, {}
    for connection in connections:
        if connection.topic not in wanted:
            continue
        try:
            msgdef, digest, fmt, qos = to_cdr.definition(connection)
        except BagError as err:
            log.warning("not copying %s: %s", connection.topic, err)
            continue
        key = (connection.topic, connection.msgtype, fmt, repr(qos))
        if key not in made:
            made[key] = writer.add_connection(
                connection.topic, connection.msgtype, msgdef=msgdef, rihs01=digest,
                serialization_format=fmt, offered_qos_profiles=qos,
            )
        mapping[connection.id] = made[key]
    return mapping


def _progress_bar(total: int, topic: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=topic, unit="frame", disable=not enabled, dynamic_ncols=True)
