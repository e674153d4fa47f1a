"""The per-frame pipeline: image message + CameraInfo + stamp -> HumanMeshArray, markers, debug image.

One code path for every caller: the detect node (one frame at a time from its worker), the bag tool
(frames of a recording) and the multi-camera node (one frame per camera, one Predictor call for the
batch). Each frame keeps its own intrinsics, tracker (by ``stream``) and stamp rule; what is the
same for all of them lives here and nowhere else.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lighthmr_ros.errors import ImageError
from lighthmr_ros.human import Human
from lighthmr_ros.overlay import render_overlay
from lighthmr_ros.ros.image import compressed_msg_to_rgb, image_msg_to_rgb, rgb_to_image_msg
from lighthmr_ros.ros.intrinsics import CameraModel, Undistorter, camera_model, distort_points, supported
from lighthmr_ros.ros.markers import humans_to_markers_cdr
from lighthmr_ros.ros.messages import humans_to_msg
from lighthmr_ros.ros.tracking import Tracker

#: Markers live this many frame periods, so RViz drops people when frames stop coming.
MARKER_LIFETIME_PERIODS = 3.0
MARKER_LIFETIME_MIN_S, MARKER_LIFETIME_MAX_S = 0.2, 5.0


@dataclass(frozen=True)
class PipelineOptions:
    """What to detect and what to publish; the node rebuilds it from its live parameters per frame."""

    fov_deg: float = 60.0
    det_threshold: float = 0.5
    nms_kernel: int | None = None
    max_humans: int = 20
    publish_vertices: bool = True
    markers: bool = True
    marker_decimation: int = 8
    debug_image: bool = False
    tracking: bool = True
    tracking_gate_m: float = 0.6
    tracking_max_age_s: float = 1.0


@dataclass
class Frame:
    """One image to process.

    image: sensor_msgs/Image or CompressedImage. camera_info: the camera's CameraInfo or None
    (then ``fov_deg``). received: time.monotonic() when the image arrived (latency is measured from
    it). fallback_stamp_s: the time used for tracking when the header stamp is zero (the node's
    clock, or the bag's log time). rectified: the image is rectified (P describes it, not K and D).
    stream: the tracker key (one per camera). options: this frame's own outputs (markers, debug
    image, ...) when they differ from the batch's (the node asks for markers only where someone
    listens); detection settings always come from the batch's options.
    """

    image: object
    camera_info: object | None = None
    received: float = dataclasses.field(default_factory=time.monotonic)
    fallback_stamp_s: float = 0.0
    rectified: bool = False
    stream: str = ""
    options: PipelineOptions | None = None


@dataclass
class FrameOutput:
    """The messages of one frame; ``error`` (and no messages) when its image could not be read."""

    humans_msg: object | None = None  # lighthmr_ros/HumanMeshArray
    markers_cdr: bytes | None = None  # visualization_msgs/MarkerArray, serialised
    debug_image: object | None = None  # sensor_msgs/Image
    humans: list[Human] = dataclasses.field(default_factory=list)
    intrinsics: str = "none"  # where K came from (diagnostics)
    latency: float = 0.0
    error: ImageError | None = None


def needs_vertices(opts: PipelineOptions) -> bool:
    """Whether these outputs need the meshes (the body model pass is skipped otherwise)."""
    return opts.publish_vertices or opts.markers or opts.debug_image


def is_rectified_topic(topic: str) -> bool:
    """image_proc's naming: image_rect, image_rect_color (and their /compressed) are rectified."""
    parts = [p for p in topic.split("/") if p]
    if parts and parts[-1] == "compressed":
        parts = parts[:-1]
    return bool(parts) and parts[-1].startswith("image_rect")


def stamp_seconds(header) -> float:
    return header.stamp.sec + 1e-9 * header.stamp.nanosec


def intrinsics_label(model: CameraModel | None) -> str:
    if model is None:
        return "fov_deg"
    if model.source == "P":
        return "camera_info P (rectified)"
    return f"camera_info K+D ({model.distortion_model}, undistorted)" if model.distorted else "camera_info"


class FramePipeline:
    """Runs the Predictor on frames and turns its Humans into the node's messages.

    State kept between calls: one Tracker and one marker-lifetime clock per stream, and the cached
    undistortion maps per stream. Not thread-safe: one caller thread (the node's worker).
    """

    def __init__(self, predictor, options: PipelineOptions | None = None):
        self.predictor = predictor
        self.options = options or PipelineOptions()
        self._trackers: dict[str, Tracker] = {}
        self._undistorters: dict[str, Undistorter] = {}
        self._last_stamp: dict[str, float] = {}
        self._period: dict[str, float] = {}

    def reset(self) -> None:
        """Forget tracks and frame timing (a new recording, a reactivated node)."""
        self._trackers.clear()
        self._last_stamp.clear()
        self._period.clear()

    def process(self, frames: Sequence[Frame], options: PipelineOptions | None = None) -> list[FrameOutput]:
        """One FrameOutput per frame, in order; the readable images go through the Predictor in one call."""
        opts = options or self.options
        outputs = [FrameOutput() for _ in frames]
        ready: list[tuple[int, np.ndarray, np.ndarray, CameraModel | None]] = []
        for index, frame in enumerate(frames):
            try:
                rgb, k, model = self._prepare(frame, opts)
            except ImageError as exc:
                outputs[index].error = exc
                continue
            ready.append((index, rgb, k, model))
        if not ready:
            return outputs
        want_vertices = any(needs_vertices(frames[index].options or opts) for index, *_ in ready)
        results = self.predictor.predict(
            [rgb for _, rgb, _, _ in ready], K=[k for _, _, k, _ in ready], fov_deg=opts.fov_deg,
            det_threshold=opts.det_threshold, nms_kernel=opts.nms_kernel, max_humans=opts.max_humans,
            with_vertices=want_vertices)
        for (index, rgb, k, model), humans in zip(ready, results, strict=True):
            outputs[index] = self._finish(frames[index], rgb, k, model, humans, frames[index].options or opts)
        return outputs

    # -- steps --------------------------------------------------------------------------------
    def _prepare(self, frame: Frame, opts: PipelineOptions) -> tuple[np.ndarray, np.ndarray, CameraModel | None]:
        """Decoded RGB (undistorted when the camera distorts), the pinhole K and its CameraModel."""
        msg = frame.image
        rgb = compressed_msg_to_rgb(msg) if hasattr(msg, "format") else image_msg_to_rgb(msg)
        height, width = rgb.shape[:2]
        model = camera_model(frame.camera_info, width, height, frame.rectified)
        if model is not None and not supported(model):
            raise ImageError(
                f"CameraInfo distortion_model {model.distortion_model!r} is not supported; publish plumb_bob, "
                "rational_polynomial or equidistant, or subscribe to the rectified image (image_rect).")
        if model is None:
            return rgb, np.asarray(self.predictor.default_K(width, height, opts.fov_deg), np.float64), None
        rgb = self._undistorters.setdefault(frame.stream, Undistorter()).image(rgb, model)
        return rgb, model.k, model

    def _finish(self, frame: Frame, rgb: np.ndarray, k: np.ndarray, model: CameraModel | None,
                humans: list[Human], opts: PipelineOptions) -> FrameOutput:
        header = frame.image.header
        stamp = stamp_seconds(header)
        stamp = stamp if stamp > 0 else frame.fallback_stamp_s
        lifetime = self._marker_lifetime(frame.stream, stamp)
        if opts.tracking:
            tracker = self._trackers.setdefault(frame.stream, Tracker())
            tracker.gate_m, tracker.max_age_s = opts.tracking_gate_m, opts.tracking_max_age_s
            humans = tracker.update(humans, stamp)
        else:
            humans = [dataclasses.replace(h, id=0) for h in humans]  # HumanMesh: 0 = not tracked
        debug = None
        if opts.debug_image:  # drawn on the image the network saw (undistorted), with its K
            drawn = render_overlay(rgb, humans, k, joint_parents=self.predictor.joint_parents, alpha=0.6,
                                   mesh="points")
            debug = rgb_to_image_msg(drawn, header)
        if model is not None and model.distorted:  # 2D outputs in the raw image's pixels
            humans = [dataclasses.replace(h, center_2d=distort_points(h.center_2d, model),
                                          joints_2d=distort_points(h.joints_2d, model)) for h in humans]
        height, width = rgb.shape[:2]
        latency = time.monotonic() - frame.received
        msg = humans_to_msg(humans, header, k, self.predictor.body_model_name, width, height,
                            opts.publish_vertices, latency)
        markers = None
        if opts.markers:  # serialised bytes: no Python object per point
            markers = humans_to_markers_cdr(humans, header, self.predictor.faces, self.predictor.joint_parents,
                                            opts.marker_decimation, lifetime)
        return FrameOutput(msg, markers, debug, humans, intrinsics_label(model), latency)

    def _marker_lifetime(self, stream: str, stamp: float) -> float:
        """A few frame periods of this stream (smoothed), within [MIN, MAX] seconds."""
        last = self._last_stamp.get(stream)
        self._last_stamp[stream] = stamp
        if last is not None and stamp > last:
            dt = min(stamp - last, MARKER_LIFETIME_MAX_S)
            previous = self._period.get(stream)
            self._period[stream] = dt if previous is None else 0.7 * previous + 0.3 * dt
        period = self._period.get(stream, 1.0)
        return float(np.clip(MARKER_LIFETIME_PERIODS * period, MARKER_LIFETIME_MIN_S, MARKER_LIFETIME_MAX_S))
