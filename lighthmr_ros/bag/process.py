"""process_bag: images of a recorded bag -> HumanMeshArray, MarkerArray, MeshTopology (and optionally
the people's PointCloud2 and /tf frames) in a new bag.

One code path with the node: images are deserialised by rclpy into the message objects the node
receives and go through the node's own FramePipeline (intrinsics, Predictor, tracking, messages);
the results are serialised by rclpy and written as raw CDR by rosbags with their definitions,
hashes and QoS, so any ROS 2 tool can read the result. The steps are small functions: choose the
topics, build or take the Predictor, set up the writer, then stream the messages through.

Several image topics are several cameras, as in the node with ``cameras``: images of different
cameras logged within ``batch_window_s`` of each other go through the Predictor as one batch, and
camera ``front`` (the namespace of ``/front/image_raw``) gets ``<namespace>/front/humans`` and so on.
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
POINTS_TYPE = "sensor_msgs/msg/PointCloud2"
TF_TYPE = "tf2_msgs/msg/TFMessage"


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

    camera_info_topic: None finds `<camera>/camera_info`; "none" uses the pipeline's `fov_deg` ("auto":
    the model's own field of view where it estimates one, 60 degrees otherwise).
    compressed: "auto" follows the topic type (and finds `<topic>/compressed`), or True/False.
    copy_topics: "all", "none" or topic names copied unchanged into the output.
    rectified: None follows the topic name (image_rect*: CameraInfo P), True/False force it.
    batch_window_s: with several image topics, images logged this close to the first one of a
    batch (and of other cameras) run through the Predictor together.
    depth_topics: aligned depth image topics (16UC1 mm / 32FC1 m), one per image topic, in the same
    order; used when the pipeline options ask for depth fusion (the newest depth image at each
    colour image, as in the node).
    """

    camera_info_topic: str | None = None
    compressed: str | bool = "auto"
    copy_topics: str | Sequence[str] = "all"
    rectified: bool | None = None
    batch_window_s: float = 0.05
    depth_topics: Sequence[str] = ()


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
    largest_batch: int = 1  # most images (of different cameras) run in one Predictor call
    # how each image topic's K was obtained: {topic: {"camera_info" | "fov_deg" | "estimated": frames}}
    intrinsics: dict[str, dict[str, int]] = field(default_factory=dict)
    # per image topic whose K the model estimated: the last frame's intrinsics label (the field of view and
    # what it rests on, e.g. "estimated K (fov 54.3 deg, stable: median of 30 frames with people)")
    estimated_fov: dict[str, str] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        skipped = f", {self.skipped} unreadable images skipped" if self.skipped else ""
        estimated = sum(counts.get("estimated", 0) for counts in self.intrinsics.values())
        camera = f", K estimated by the model on {estimated} frames (no CameraInfo)" if estimated else ""
        return (
            f"{self.frames} frames, {self.humans} humans, {self.fps:.2f} frames/s "
            f"({self.seconds:.1f} s){skipped}{camera} -> {self.output}"
        )


def output_topics(namespace: str, camera: str = "") -> dict[str, str]:
    """The node's output topics under `namespace` ("/lighthmr" -> /lighthmr/humans, ...).

    camera: with several cameras, each one's topics are under ``<namespace>/<camera>/``
    (mesh_topology stays one, under the namespace); /tf is absolute, as in the node.
    """
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    cam = f"{ns}/{camera.strip('/')}" if camera.strip("/") else ns
    out = {name: f"{cam}/{name}" for name in ("humans", "markers", "human_points")}
    return {**out, "mesh_topology": f"{ns}/mesh_topology", "tf": "/tf"}


def camera_name(image_topic: str) -> str:
    """A camera's name from its image topic: its namespace (/front/image_raw -> front; /image -> image)."""
    parts = [p for p in image_topic.split("/") if p]
    if parts and parts[-1] == "compressed":
        parts = parts[:-1]
    return "/".join(parts[:-1]) if len(parts) > 1 else "/".join(parts)


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
    image_topic: str | Sequence[str],
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

    image_topic: one topic, or several (one per camera: their images run in batches, each camera
    gets its own output topics, see output_topics).

    input: a rosbag2 folder (sqlite3 or mcap), a .mcap/.db3 file or a ROS 1 .bag; never modified.
    output: a new rosbag2 folder in `writing.storage` format; refused if it exists unless
    `writing.overwrite`. It is written beside and renamed into place at the end, so an error or Ctrl-C
    leaves no partial bag there. Results are stamped with each image's log time and header.
    options: a lighthmr_ros.ros.pipeline.PipelineOptions (what to detect, markers, tracking, TF frames,
    point cloud, smoothing), as in the node.
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
    image_topics = [image_topic] if isinstance(image_topic, str) else list(image_topic)
    if not image_topics:
        raise BagError("give at least one image topic.")
    if len(image_topics) > 1 and (topics.camera_info_topic or "none").lower() not in {"", "none"}:
        raise BagError("with several image topics each camera's CameraInfo is found beside its images "
                       "(<camera>/camera_info); leave camera_info_topic unset, or 'none' for fov_deg.")
    reader = open_bag(src)
    try:
        selections = [select_topics(reader, topic, topics.camera_info_topic, topics.compressed, topics.copy_topics)
                      for topic in image_topics]
        cameras = _camera_names(selections)
        _check_depth(reader, src, topics.depth_topics, len(selections), options.depth is not None)
        total = _check_run(reader, src, dst, selections, cameras, writing)
        tf_type = _tf_type() if options.tf is not None else None
        predictor = predictor or (model or ModelOptions()).build()
        run = _Run(reader, selections, cameras, options, predictor, serialization, sensor_msgs, pipeline_module,
                   topics, tf_type)
        return run.write(src, dst, writing, messages.topology_msg(predictor), total, progress, on_frame)
    finally:
        reader.close()


def _tf_type():
    """tf2_msgs/TFMessage for writing /tf, or a BagError saying where it comes from."""
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError as err:
        raise BagError(f"writing TF frames needs tf2_msgs ({err}); source your ROS 2 workspace, or leave TF out.") \
            from err
    return TFMessage


def _check_depth(reader, src: Path, depth_topics: Sequence[str], cameras: int, fusing: bool) -> None:
    """Refuse depth settings that cannot work: fusion without depth, a count or topic that does not fit."""
    if fusing and not depth_topics:
        raise BagError("depth fusion needs the aligned depth topics (one per image topic).")
    if depth_topics and len(depth_topics) != cameras:
        raise BagError(f"give one depth topic per image topic: {cameras} image topics, {len(depth_topics)} depth "
                       "topics.")
    types = {topic: info.msgtype for topic, info in reader.topics.items()}
    for topic in depth_topics:
        if types.get(topic) != "sensor_msgs/msg/Image":
            raise BagError(f"{src} has no depth image topic {topic} (sensor_msgs/msg/Image); image topics: "
                           f"{', '.join(sorted(t for t, m in types.items() if m == 'sensor_msgs/msg/Image'))}.")


def _camera_names(selections: Sequence[Selection]) -> list[str]:
    """"" for one camera (today's topic names); the image topics' namespaces for several."""
    if len(selections) == 1:
        return [""]
    names = [camera_name(s.image) for s in selections]
    if len(set(names)) != len(names):  # e.g. /cam/left and /cam/right/.. collide: use the whole topic
        names = [s.image.strip("/") for s in selections]
    if len(set(names)) != len(names):
        raise BagError(f"image topics given twice: {', '.join(s.image for s in selections)}.")
    return names


def _check_run(reader, src: Path, dst: Path, selections: Sequence[Selection], cameras: Sequence[str],
               writing: OutputOptions) -> int:
    """The number of images to process, after refusing runs that cannot succeed (before any model load)."""
    total = 0
    for selection in selections:
        count = sum(c.msgcount for c in connections_of(reader, [selection.image]))
        if count == 0:
            raise BagError(f"topic {selection.image} of {src} holds no messages; pick another image topic.")
        total += count
    written = {t for camera in cameras for t in output_topics(writing.namespace, camera).values()} - {"/tf"}
    copied = {t for selection in selections for t in selection.copy}
    if clash := sorted(written & copied):
        raise BagError(f"the input already has {', '.join(clash)}; pass another namespace or leave it out of "
                       "copy_topics.")
    check_output(dst, [src], writing.overwrite)
    return total


@dataclass
class _Camera:
    """One image topic of the run: its name, topics, message type, newest CameraInfo and frame options."""

    name: str
    selection: Selection
    image_type: type
    rectified: bool
    info: object | None = None
    options: object | None = None  # PipelineOptions with this camera's TF prefix
    depth_topic: str | None = None
    depth: object | None = None  # the newest depth Image
    outputs: dict = field(default_factory=dict)  # output connections by kind


class _Run:
    """One pass over the bag: copies topics, feeds images to the FramePipeline, writes its messages."""

    def __init__(self, reader, selections: Sequence[Selection], cameras: Sequence[str], options, predictor,
                 serialization, sensor_msgs, pipeline_module, topics: InputOptions, tf_type):
        self.reader, self.selections, self.options = reader, list(selections), options
        self.selection = selections[0]  # one camera: what the summary and metadata name
        self.serialize, self.deserialize = serialization.serialize_message, serialization.deserialize_message
        self.CameraInfo = sensor_msgs.CameraInfo
        self.pipeline = pipeline_module.FramePipeline(predictor, options)
        self.Frame = pipeline_module.Frame
        self.is_auto = pipeline_module.is_auto
        self.tf_type = tf_type
        self.window_ns = int(max(0.0, topics.batch_window_s) * 1e9)
        self.to_cdr = CdrConverter(reader)
        self.cameras = []
        for name, sel in zip(cameras, selections, strict=True):
            rectified = pipeline_module.is_rectified_topic(sel.image) if topics.rectified is None else topics.rectified
            opts = options
            if options.tf is not None and name:  # each camera tracks its own ids: name/body_<id>
                opts = dataclasses.replace(options, tf=dataclasses.replace(options.tf,
                                                                          prefix=f"{options.tf.prefix}{name}/"))
            image_type = sensor_msgs.CompressedImage if sel.compressed else sensor_msgs.Image
            self.cameras.append(_Camera(name, sel, image_type, rectified, self._first_camera_info(sel), opts))
        self.Image = sensor_msgs.Image
        if options.depth is not None:
            for camera, depth_topic in zip(self.cameras, topics.depth_topics, strict=True):
                camera.depth_topic = depth_topic
        self.frames = self.humans = self.skipped = 0
        self.intrinsics: dict[str, dict[str, int]] = {}
        self.estimated_fov: dict[str, str] = {}
        self.largest_batch = 0
        self.first_error: Exception | None = None

    def _first_camera_info(self, selection: Selection):
        """The first CameraInfo, so the images before it already get the calibration."""
        if not selection.camera_info:
            fov = self.options.fov_deg
            if not self.is_auto(fov):
                how = f"a {float(fov):.0f} degree field of view"
            elif getattr(self.pipeline.predictor, "estimates_camera", False):
                how = ("the model's own field-of-view estimate (fov_deg auto; "
                       + ("each frame's own)" if self.options.fov_estimate == "per_frame" else
                          f"one per camera: median of the first {self.options.fov_estimate_frames} frames "
                          "holding a person)"))
            else:
                how = "a 60 degree field of view (fov_deg auto; this model does not estimate its camera)"
            log.info("no CameraInfo topic for %s: intrinsics from %s", selection.image, how)
            return None
        first = first_message(self.reader, selection.camera_info)
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
            writer.set_custom_data("lighthmr_ros.image_topic", ",".join(s.image for s in self.selections))
            connections = self._connections()
            copy = sorted({t for s in self.selections for t in s.copy})
            copied = _copy_connections(writer, self.to_cdr, connections, copy)
            shared = self._add_outputs(writer, writing.namespace)
            topology_cdr = self.serialize(topology)
            bar = _progress_bar(total, ", ".join(s.image for s in self.selections), progress)
            start = time.perf_counter()
            try:
                for log_time, camera, out in self._frames(writer, connections, copied, bar, total, on_frame):
                    if self.frames == 0:
                        writer.write(shared["mesh_topology"], log_time, topology_cdr)
                    writer.write(camera.outputs["humans"], log_time, self.serialize(out.humans_msg))
                    if "markers" in camera.outputs and out.markers_cdr is not None:
                        writer.write(camera.outputs["markers"], log_time, out.markers_cdr)
                    if "human_points" in camera.outputs and out.points_msg is not None:
                        writer.write(camera.outputs["human_points"], log_time, self.serialize(out.points_msg))
                    if "tf" in shared and out.transforms:
                        tf_msg = self.tf_type(transforms=list(out.transforms))
                        writer.write(shared["tf"], log_time, self.serialize(tf_msg))
                    self.frames += 1
                    self.humans += len(out.humans)
                    counts = self.intrinsics.setdefault(camera.selection.image, {})
                    counts[out.k_source] = counts.get(out.k_source, 0) + 1
                    if out.k_source == "estimated":
                        self.estimated_fov[camera.selection.image] = out.intrinsics
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
        return BagSummary(input=src, output=dst, image_topic=", ".join(s.image for s in self.selections),
                          frames=self.frames, humans=self.humans, skipped=self.skipped, seconds=seconds,
                          topics=counts, largest_batch=max(1, self.largest_batch), intrinsics=self.intrinsics,
                          estimated_fov=self.estimated_fov)

    def _add_outputs(self, writer, namespace: str) -> dict:
        """Each camera's output connections (in camera.outputs) and the shared ones (returned)."""
        def add(topic: str, msgtype: str, qos):
            msgdef, digest = message_definition(msgtype)
            return writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=digest, offered_qos_profiles=[qos])

        for camera in self.cameras:
            names = output_topics(namespace, camera.name)
            camera.outputs = {"humans": add(names["humans"], HUMANS_TYPE, STREAM_QOS)}
            if self.options.markers:
                camera.outputs["markers"] = add(names["markers"], MARKERS_TYPE, STREAM_QOS)
            if self.options.points_voxel_m is not None:
                camera.outputs["human_points"] = add(names["human_points"], POINTS_TYPE, STREAM_QOS)
        names = output_topics(namespace)
        shared = {"mesh_topology": add(names["mesh_topology"], TOPOLOGY_TYPE, LATCHED_QOS)}
        if self.options.tf is not None:
            shared["tf"] = add(names["tf"], TF_TYPE, STREAM_QOS)
        return shared

    def _connections(self) -> list:
        """The input connections this run reads: the images, the CameraInfo and the copied topics."""
        wanted = {c.depth_topic for c in self.cameras if c.depth_topic}
        for sel in self.selections:
            wanted |= {sel.image, *sel.copy, *([sel.camera_info] if sel.camera_info else [])}
        return connections_of(self.reader, sorted(wanted))

    def _frames(self, writer, connections, copied: dict, bar, total: int, on_frame):
        """(log time, camera, FrameOutput) per readable image, copying the other wanted topics on the way.

        Images of different cameras within the batch window are held back and run as one batch.
        """
        by_image = {c.id: cam for cam in self.cameras for c in connections_of(self.reader, [cam.selection.image])}
        by_info = {c.id: cam for cam in self.cameras for c in connections
                   if c.topic == cam.selection.camera_info and c.msgtype == CAMERA_INFO}
        by_depth = {c.id: cam for cam in self.cameras for c in connections if c.topic == cam.depth_topic}
        pending: list[tuple[int, _Camera, object]] = []
        for connection, log_time, raw in iter_messages(self.reader, connections):
            if connection.id in copied:
                writer.write(copied[connection.id], log_time, self.to_cdr(connection, raw))
            if connection.id in by_info:
                by_info[connection.id].info = self.deserialize(self.to_cdr(connection, raw), self.CameraInfo)
            if connection.id in by_depth:
                try:
                    by_depth[connection.id].depth = self.deserialize(self.to_cdr(connection, raw), self.Image)
                except Exception as err:  # a bad depth image: the people stay as predicted
                    log.warning("skipping depth image at %d ns: %s", log_time, err)
            camera = by_image.get(connection.id)
            if camera is None:
                continue
            if pending and (log_time - pending[0][0] > self.window_ns or any(c is camera for _, c, _ in pending)):
                yield from self._run_batch(pending, bar, total, on_frame)
                pending = []
            received = time.monotonic()
            try:
                msg = self.deserialize(self.to_cdr(connection, raw), camera.image_type)
            except Exception as err:  # one bad message must not end a long recording
                self._skip(log_time, err, bar, total, on_frame)
                continue
            frame = self.Frame(msg, camera.info, received, fallback_stamp_s=log_time * 1e-9,
                               rectified=camera.rectified, stream=camera.name, options=camera.options,
                               depth=camera.depth)
            pending.append((log_time, camera, frame))
            if len(pending) == len(self.cameras):
                yield from self._run_batch(pending, bar, total, on_frame)
                pending = []
        if pending:
            yield from self._run_batch(pending, bar, total, on_frame)

    def _run_batch(self, pending: list, bar, total: int, on_frame):
        """One Predictor call for the held-back images; (log time, camera, FrameOutput) of the readable ones."""
        self.largest_batch = max(self.largest_batch, len(pending))
        outputs = self.pipeline.process([frame for _, _, frame in pending])
        for (log_time, camera, _), out in zip(pending, outputs, strict=True):
            if out.error is not None:
                self._skip(log_time, out.error, bar, total, on_frame)
                continue
            yield log_time, camera, out

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
