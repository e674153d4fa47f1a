"""process_bag: images of a recorded bag -> HumanMeshArray, MarkerArray and MeshTopology in a new bag.

One code path with the node: images are deserialised by rclpy into the message objects the node
receives and go through the node's own FramePipeline (intrinsics, Predictor, tracking, messages);
the results are serialised by rclpy and written as raw CDR by rosbags with their definitions,
hashes and QoS, so any ROS 2 tool can read the result. The steps are small functions: choose the
topics, build or take the Predictor, set up the writer, then stream the messages through.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lighthmr_ros.bag.reading import (
    CAMERA_INFO,
    CdrConverter,
    Selection,
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
class ModelOptions:
    """How to build the Predictor (the arguments of lighthmr_ros.inference.Predictor, same names)."""

    checkpoint: str | Path | None = None
    config: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    backend: str = "torch"
    onnx_dir: str | Path | None = None
    image_size: int | None = None
    body_model: str | None = None
    smplx_model_dir: str | None = None

    def build(self):
        from lighthmr_ros.inference import Predictor

        return Predictor(**vars(self))


@dataclass(frozen=True)
class InputOptions:
    """Which topics of the input bag are read and copied.

    camera_info_topic: None finds `<camera>/camera_info`; "none" uses the pipeline's `fov_deg`.
    compressed: "auto" follows the topic type (and finds `<topic>/compressed`), or True/False.
    copy_topics: "all", "none" or topic names copied unchanged into the output.
    rectified: None follows the topic name (image_rect*: CameraInfo P), True/False force it.
    """

    camera_info_topic: str | None = None
    compressed: str | bool = "auto"
    copy_topics: str | Sequence[str] = "all"
    rectified: bool | None = None


@dataclass(frozen=True)
class OutputOptions:
    """The output bag: storage format, whether an existing one may be replaced, topic namespace."""

    storage: str = "sqlite3"
    overwrite: bool = False
    namespace: str = "/lighthmr"


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


def _ros_modules():
    """rclpy and the node's modules, or a BagError saying how to get them."""
    try:
        from rclpy import serialization
        from sensor_msgs import msg as sensor_msgs

        from lighthmr_ros.ros import messages, pipeline
    except ImportError as err:
        raise BagError(
            f"processing bags needs ROS 2 Python (rclpy, sensor_msgs) and the built lighthmr_ros messages ({err}); "
            "run `make test`'s setup or source your ROS 2 workspace."
        ) from err
    return serialization, sensor_msgs, messages, pipeline


def process_bag(
    input: str | Path,
    output: str | Path,
    image_topic: str,
    *,
    topics: InputOptions | None = None,
    writing: OutputOptions | None = None,
    options=None,
    model: ModelOptions | None = None,
    predictor=None,
    progress: bool = True,
    on_frame: Callable[[int, int], None] | None = None,
) -> BagSummary:
    """Run the Predictor on every image of `image_topic` in `input` and write the results to `output`.

    input: a rosbag2 folder (sqlite3 or mcap), a .mcap/.db3 file or a ROS 1 .bag; never modified.
    output: a new rosbag2 folder in `writing.storage` format; refused if it exists unless
    `writing.overwrite`. It is written beside and renamed into place at the end, so an error or Ctrl-C
    leaves no partial bag there. Results are stamped with each image's log time and header.
    options: a lighthmr_ros.ros.pipeline.PipelineOptions (what to detect, markers, tracking).
    predictor: a ready Predictor; otherwise one is built from `model` (ModelOptions).
    on_frame(done, total) is called after each image (progress in notebooks; raising stops the run).

    Raises:
        BagError: missing ROS Python, unknown storage, topics the bag lacks, an existing output,
            or no readable image at all.
    """
    serialization, sensor_msgs, messages, pipeline_module = _ros_modules()
    topics, writing = topics or InputOptions(), writing or OutputOptions()
    options = options or pipeline_module.PipelineOptions()
    src, dst = Path(input), Path(output)
    if writing.storage not in STORAGES:
        raise BagError(f"storage must be one of {', '.join(STORAGES)}, not {writing.storage!r}.")
    reader = open_bag(src)
    try:
        selection = select_topics(reader, image_topic, topics.camera_info_topic, topics.compressed,
                                  topics.copy_topics)
        total = _check_run(reader, src, dst, selection, writing)
        predictor = predictor or (model or ModelOptions()).build()
        run = _Run(reader, selection, options, predictor, serialization, sensor_msgs, pipeline_module,
                   topics.rectified)
        return run.write(src, dst, writing, messages.topology_msg(predictor), total, progress, on_frame)
    finally:
        reader.close()


def _check_run(reader, src: Path, dst: Path, selection: Selection, writing: OutputOptions) -> int:
    """The number of images to process, after refusing runs that cannot succeed (before any model load)."""
    total = sum(c.msgcount for c in connections_of(reader, [selection.image]))
    if total == 0:
        raise BagError(f"topic {selection.image} of {src} holds no messages; pick another image topic.")
    if clash := sorted(set(output_topics(writing.namespace).values()) & set(selection.copy)):
        raise BagError(f"the input already has {', '.join(clash)}; pass another namespace or leave it out of "
                       "copy_topics.")
    check_output(dst, [src], writing.overwrite)
    return total


class _Run:
    """One pass over the bag: copies topics, feeds images to the FramePipeline, writes its messages."""

    def __init__(self, reader, selection: Selection, options, predictor, serialization, sensor_msgs,
                 pipeline_module, rectified: bool | None):
        self.reader, self.selection, self.options = reader, selection, options
        self.serialize, self.deserialize = serialization.serialize_message, serialization.deserialize_message
        self.CameraInfo = sensor_msgs.CameraInfo
        self.image_type = sensor_msgs.CompressedImage if selection.compressed else sensor_msgs.Image
        self.pipeline = pipeline_module.FramePipeline(predictor, options)
        self.Frame = pipeline_module.Frame
        self.rectified = pipeline_module.is_rectified_topic(selection.image) if rectified is None else rectified
        self.to_cdr = CdrConverter(reader)
        self.info = self._first_camera_info()
        self.frames = self.humans = self.skipped = 0
        self.first_error: Exception | None = None

    def _first_camera_info(self):
        """The first CameraInfo, so the images before it already get the calibration."""
        if not self.selection.camera_info:
            log.info("no CameraInfo topic: intrinsics from a %.0f degree field of view", self.options.fov_deg)
            return None
        first = first_message(self.reader, self.selection.camera_info)
        return None if first is None else self.deserialize(self.to_cdr(first[0], first[2]), self.CameraInfo)

    def write(self, src: Path, dst: Path, writing: OutputOptions, topology, total: int, progress: bool,
              on_frame) -> BagSummary:
        from rosbags.rosbag2 import StoragePlugin, Writer

        from lighthmr_ros import __version__

        seconds = 0.0
        with StagedOutput(dst, writing.overwrite) as staging, Writer(
            staging, version=9, storage_plugin=StoragePlugin[writing.storage.upper()]
        ) as writer:
            writer.set_custom_data("lighthmr_ros.version", __version__)
            writer.set_custom_data("lighthmr_ros.input", str(src.resolve()))
            writer.set_custom_data("lighthmr_ros.image_topic", self.selection.image)
            connections = self._connections()
            copied = _copy_connections(writer, self.to_cdr, connections, self.selection.copy)
            outputs = self._add_outputs(writer, output_topics(writing.namespace))
            topology_cdr = self.serialize(topology)
            bar = _progress_bar(total, self.selection.image, progress)
            start = time.perf_counter()
            try:
                for log_time, out in self._frames(writer, connections, copied, bar, total, on_frame):
                    if self.frames == 0:
                        writer.write(outputs["mesh_topology"], log_time, topology_cdr)
                    writer.write(outputs["humans"], log_time, self.serialize(out.humans_msg))
                    if "markers" in outputs:
                        writer.write(outputs["markers"], log_time, out.markers_cdr)
                    self.frames += 1
                    self.humans += len(out.humans)
                    bar.set_postfix(humans=self.humans, refresh=False)
                    bar.update(1)
                    if on_frame is not None:
                        on_frame(self.frames + self.skipped, total)
            finally:
                seconds = time.perf_counter() - start
                bar.close()
            if self.frames == 0:
                raise BagError(f"none of the {self.skipped} images on {self.selection.image} could be read "
                               f"({self.first_error}); no output written.")
            counts = {c.topic: writer.counts[c.id] for c in writer.connections}
        return BagSummary(input=src, output=dst, image_topic=self.selection.image, frames=self.frames,
                          humans=self.humans, skipped=self.skipped, seconds=seconds, topics=counts)

    def _add_outputs(self, writer, names: dict[str, str]) -> dict:
        def add(topic: str, msgtype: str, qos):
            msgdef, digest = message_definition(msgtype)
            return writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=digest, offered_qos_profiles=[qos])

        outputs = {"humans": add(names["humans"], HUMANS_TYPE, STREAM_QOS)}
        if self.options.markers:
            outputs["markers"] = add(names["markers"], MARKERS_TYPE, STREAM_QOS)
        outputs["mesh_topology"] = add(names["mesh_topology"], TOPOLOGY_TYPE, LATCHED_QOS)
        return outputs

    def _connections(self) -> list:
        """The input connections this run reads: the images, the CameraInfo and the copied topics."""
        sel = self.selection
        wanted = {sel.image, *sel.copy, *([sel.camera_info] if sel.camera_info else [])}
        return connections_of(self.reader, sorted(wanted))

    def _frames(self, writer, connections, copied: dict, bar, total: int, on_frame):
        """(log time, FrameOutput) per readable image, copying the other wanted topics on the way."""
        sel = self.selection
        image_ids = {c.id for c in connections_of(self.reader, [sel.image])}
        info_ids = {c.id for c in connections if c.topic == sel.camera_info and c.msgtype == CAMERA_INFO}
        for connection, log_time, raw in iter_messages(self.reader, connections):
            if connection.id in copied:
                writer.write(copied[connection.id], log_time, self.to_cdr(connection, raw))
            if connection.id in info_ids:
                self.info = self.deserialize(self.to_cdr(connection, raw), self.CameraInfo)
            if connection.id not in image_ids:
                continue
            received = time.monotonic()
            try:
                msg = self.deserialize(self.to_cdr(connection, raw), self.image_type)
            except Exception as err:  # one bad message must not end a long recording
                self._skip(log_time, err, bar, total, on_frame)
                continue
            frame = self.Frame(msg, self.info, received, fallback_stamp_s=log_time * 1e-9,
                               rectified=self.rectified)
            out = self.pipeline.process([frame])[0]
            if out.error is not None:
                self._skip(log_time, out.error, bar, total, on_frame)
                continue
            yield log_time, out

    def _skip(self, log_time: int, err: Exception, bar, total: int, on_frame) -> None:
        self.skipped += 1
        self.first_error = self.first_error or err
        log.warning("skipping image at %d ns: %s", log_time, err)
        bar.update(1)
        if on_frame is not None:
            on_frame(self.frames + self.skipped, total)


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
