"""The per-frame pipeline: image message + CameraInfo + stamp -> HumanMeshArray, markers, debug image,
TF frames and the people's point cloud.

One code path for every caller: the detect node (one frame at a time from its worker), the bag tool
(frames of a recording) and the multi-camera node (one frame per camera, one Predictor call for the
batch). Each frame keeps its own intrinsics, tracker (by ``stream``) and stamp rule; what is the
same for all of them lives here and nowhere else.

Per frame, after the Predictor: depth fusion (an aligned depth image moves each person along its
camera ray), tracking, smoothing (One-Euro per track), then the messages. Depth comes before
tracking so that tracks follow the corrected distance; smoothing needs the track ids.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lighthmr_ros.depth_fusion import DepthCorrection, DepthFusionParams, fuse_depth
from lighthmr_ros.errors import ConfigError, ImageError
from lighthmr_ros.human import Human
from lighthmr_ros.model.camera import fov_from_K
from lighthmr_ros.overlay import render_overlay
from lighthmr_ros.ros.fov_estimate import DEFAULT_SETTLE_FRAMES, FOV_ESTIMATE_MODES, FovStabiliser, FovValue
from lighthmr_ros.ros.image import compressed_msg_to_rgb, image_msg_to_rgb, rgb_to_image_msg
from lighthmr_ros.ros.intrinsics import CameraModel, Undistorter, camera_model, distort_points, supported
from lighthmr_ros.ros.markers import humans_to_markers_cdr
from lighthmr_ros.ros.messages import humans_to_msg
from lighthmr_ros.ros.tf_frames import FrameOptions, human_transforms
from lighthmr_ros.ros.tracking import Tracker
from lighthmr_ros.smoothing import Smoother, SmoothingParams, rebuild_meshes

#: Markers live this many frame periods, so RViz drops people when frames stop coming.
MARKER_LIFETIME_PERIODS = 3.0
MARKER_LIFETIME_MIN_S, MARKER_LIFETIME_MAX_S = 0.2, 5.0


@dataclass(frozen=True)
class PipelineOptions:
    """What to detect and what to publish; the node rebuilds it from its live parameters per frame."""

    fov_deg: float | str = "auto"  # without CameraInfo: degrees, or "auto" (the model's estimate, else 60)
    # With "auto" and a model that estimates its camera: "stable" (one field of view per camera, the median of
    # the first fov_estimate_frames frames holding a person: lighthmr_ros.ros.fov_estimate) or "per_frame".
    fov_estimate: str = "stable"
    fov_estimate_frames: int = DEFAULT_SETTLE_FRAMES
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
    tf: FrameOptions | None = None  # body_<id> (and head_<id>) transforms; None: none
    points_voxel_m: float | None = None  # the people's PointCloud2 thinned by this voxel; None: none
    depth: DepthFusionParams | None = None  # correct distances with Frame.depth; None: ignore depth
    depth_max_dt_s: float = 0.1  # a depth image farther than this from the colour stamp is not used
    smoothing: SmoothingParams | None = None  # One-Euro per track; None: off

    def __post_init__(self) -> None:
        if self.fov_estimate not in FOV_ESTIMATE_MODES:
            raise ConfigError(f"fov_estimate must be one of {', '.join(FOV_ESTIMATE_MODES)}, not {self.fov_estimate!r}")
        if int(self.fov_estimate_frames) < 1:
            raise ConfigError(f"fov_estimate_frames must be at least 1, not {self.fov_estimate_frames!r}")


@dataclass
class Frame:
    """One image to process.

    image: sensor_msgs/Image or CompressedImage. camera_info: the camera's CameraInfo or None
    (then ``fov_deg``, or with ``fov_deg="auto"`` the model's own estimate). received:
    time.monotonic() when the image arrived (latency is measured from it). fallback_stamp_s: the
    time used for tracking when the header stamp is zero (the node's clock, or the bag's log time).
    rectified: the image is rectified (P describes it, not K and D). stream: the tracker key (one
    per camera). options: this frame's own outputs (markers, debug image, ...) when they differ
    from the batch's (the node asks for markers only where someone listens); detection settings
    always come from the batch's options.
    """

    image: object
    camera_info: object | None = None
    received: float = dataclasses.field(default_factory=time.monotonic)
    fallback_stamp_s: float = 0.0
    rectified: bool = False
    stream: str = ""
    options: PipelineOptions | None = None
    depth: object | None = None  # the newest aligned depth Image of this camera (16UC1 mm, 32FC1 m)


@dataclass
class FrameOutput:
    """The messages of one frame; ``error`` (and no messages) when its image could not be read."""

    humans_msg: object | None = None  # lighthmr_ros/HumanMeshArray
    markers_cdr: bytes | None = None  # visualization_msgs/MarkerArray, serialised
    debug_image: object | None = None  # sensor_msgs/Image
    humans: list[Human] = dataclasses.field(default_factory=list)
    transforms: list = dataclasses.field(default_factory=list)  # geometry_msgs/TransformStamped
    points_msg: object | None = None  # sensor_msgs/PointCloud2
    depth_note: str = "off"  # depth fusion: "off", "no depth", "depth too old", "error: ...", "used"
    intrinsics: str = "none"  # where K came from (diagnostics): intrinsics_label
    k_source: str = "none"  # "camera_info", "fov_deg" or "estimated" (the model's own field of view)
    fov_estimate: FovValue | None = None  # estimated K, fov_estimate "stable": the value K was built from
    latency: float = 0.0
    error: ImageError | None = None


def needs_vertices(opts: PipelineOptions) -> bool:
    """Whether these outputs need the meshes (the body model pass is skipped otherwise)."""
    return (opts.publish_vertices or opts.markers or opts.debug_image or opts.points_voxel_m is not None
            or opts.depth is not None)


def is_rectified_topic(topic: str) -> bool:
    """image_proc's naming: image_rect, image_rect_color (and their /compressed) are rectified."""
    parts = [p for p in topic.split("/") if p]
    if parts and parts[-1] == "compressed":
        parts = parts[:-1]
    return bool(parts) and parts[-1].startswith("image_rect")


def stamp_seconds(header) -> float:
    return header.stamp.sec + 1e-9 * header.stamp.nanosec


def is_auto(fov_deg) -> bool:
    """Whether a ``fov_deg`` setting asks for the model's own estimate ("auto", or None)."""
    return fov_deg is None or (isinstance(fov_deg, str) and fov_deg.strip().lower() == "auto")


def intrinsics_label(model: CameraModel | None, estimated_fov: float | None = None, basis: str = "") -> str:
    """Where a frame's K came from, for diagnostics (``estimated_fov``: the model estimated it; ``basis``:
    from what, e.g. "stable: median of 30 frames with people" or "per frame")."""
    if estimated_fov is not None:
        return f"estimated K (fov {estimated_fov:.1f} deg{', ' + basis if basis else ''})"
    if model is None:
        return "fov_deg"
    if model.source == "P":
        return "camera_info P (rectified)"
    return f"camera_info K+D ({model.distortion_model}, undistorted)" if model.distorted else "camera_info"


class FramePipeline:
    """Runs the Predictor on frames and turns its Humans into the node's messages.

    State kept between calls: one Tracker and one marker-lifetime clock per stream, the cached
    undistortion maps per stream, and one FovStabiliser per stream (``fov_estimate: stable``). Not
    thread-safe: one caller thread (the node's worker).
    """

    def __init__(self, predictor, options: PipelineOptions | None = None):
        self.predictor = predictor
        self.options = options or PipelineOptions()
        self._trackers: dict[str, Tracker] = {}
        self._undistorters: dict[str, Undistorter] = {}
        self._last_stamp: dict[str, float] = {}
        self._period: dict[str, float] = {}
        self._smoothers: dict[str, Smoother] = {}
        self._fovs: dict[str, FovStabiliser] = {}

    def reset(self) -> None:
        """Forget tracks, frame timing and estimated fields of view (a new recording, a reactivated node)."""
        self._fovs.clear()
        self._trackers.clear()
        self._smoothers.clear()
        self._last_stamp.clear()
        self._period.clear()

    def process(self, frames: Sequence[Frame], options: PipelineOptions | None = None) -> list[FrameOutput]:
        """One FrameOutput per frame, in order; the readable images go through the Predictor in one call."""
        opts = options or self.options
        outputs = [FrameOutput() for _ in frames]
        ready: list[tuple[int, np.ndarray, np.ndarray | None, CameraModel | None]] = []
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
        kwargs = dict(det_threshold=opts.det_threshold, nms_kernel=opts.nms_kernel, max_humans=opts.max_humans,
                      with_vertices=want_vertices)
        images, Ks = [rgb for _, rgb, _, _ in ready], [k for _, _, k, _ in ready]
        estimated = [k is None for k in Ks]
        stable = opts.fov_estimate != "per_frame"
        fovs: list[FovValue | None] = [None] * len(ready)
        if stable and any(estimated):  # each camera's stable field of view, where it has one yet
            for j, (index, rgb, _, _) in enumerate(ready):
                height, width = rgb.shape[:2]
                fov = self._stabiliser(frames[index].stream, opts).current(width, height) if estimated[j] else None
                if fov is not None:
                    fovs[j], Ks[j] = fov, np.asarray(self.predictor.estimated_K(width, height, fov.fov_deg), np.float64)
        if any(estimated):  # the model builds K from its own field of view where there is none
            # One forward: the camera head reads the image only, so frames run with their stable K still
            # bring their own estimate (CameraUsed.fov_estimate_deg) for the running median.
            results, cameras = self.predictor.predict_with_camera(images, K=Ks, fov_deg="auto", **kwargs)
            Ks = [np.asarray(c.K, np.float64) if k is None else k for c, k in zip(cameras, Ks, strict=True)]
            if stable:
                for j, (index, rgb, _, _) in enumerate(ready):
                    if estimated[j]:
                        self._stabiliser(frames[index].stream, opts).update(
                            rgb.shape[1], rgb.shape[0], cameras[j].fov_estimate_deg, len(results[j]))
        else:  # every K known: plain predict (predictors without a camera head need nothing else)
            results = self.predictor.predict(images, K=Ks, **kwargs)
        for j, ((index, rgb, _, model), humans, k) in enumerate(zip(ready, results, Ks, strict=True)):
            basis = None
            if estimated[j]:
                basis = ("per frame" if not stable else fovs[j].describe() if fovs[j] is not None
                         else "this frame's own: no frame with people yet")
            outputs[index] = self._finish(frames[index], rgb, k, model, humans, frames[index].options or opts,
                                          basis, fovs[j])
        return outputs

    def _stabiliser(self, stream: str, opts: PipelineOptions) -> FovStabiliser:
        """This camera's FovStabiliser, with the window of the current options (a live parameter)."""
        stabiliser = self._fovs.setdefault(stream, FovStabiliser())
        stabiliser.settle_frames = opts.fov_estimate_frames
        return stabiliser

    # -- steps --------------------------------------------------------------------------------
    def _prepare(self, frame: Frame,
                 opts: PipelineOptions) -> tuple[np.ndarray, np.ndarray | None, CameraModel | None]:
        """Decoded RGB (undistorted when the camera distorts), the pinhole K and its CameraModel.

        Without CameraInfo: K from ``fov_deg``; with ``fov_deg="auto"`` None (the model estimates
        it) for models that estimate their camera, a 60 degree K for the others.
        """
        msg = frame.image
        rgb = compressed_msg_to_rgb(msg) if hasattr(msg, "format") else image_msg_to_rgb(msg)
        height, width = rgb.shape[:2]
        model = camera_model(frame.camera_info, width, height, frame.rectified)
        if model is not None and not supported(model):
            raise ImageError(
                f"CameraInfo distortion_model {model.distortion_model!r} is not supported; publish plumb_bob, "
                "rational_polynomial or equidistant, or subscribe to the rectified image (image_rect).")
        if model is None:
            if is_auto(opts.fov_deg) and getattr(self.predictor, "estimates_camera", False):
                return rgb, None, None
            fov = 60.0 if is_auto(opts.fov_deg) else float(opts.fov_deg)
            return rgb, np.asarray(self.predictor.default_K(width, height, fov), np.float64), None
        rgb = self._undistorters.setdefault(frame.stream, Undistorter()).image(rgb, model)
        return rgb, model.k, model

    def _finish(self, frame: Frame, rgb: np.ndarray, k: np.ndarray, model: CameraModel | None,
                humans: list[Human], opts: PipelineOptions, estimated: str | None = None,
                fov: FovValue | None = None) -> FrameOutput:
        """The messages of one predicted frame. estimated: K is the model's estimate, from this basis
        (intrinsics_label); fov: the stable field of view it was built from."""
        header = frame.image.header
        stamp = stamp_seconds(header)
        stamp = stamp if stamp > 0 else frame.fallback_stamp_s
        lifetime = self._marker_lifetime(frame.stream, stamp)
        height, width = rgb.shape[:2]
        humans, depth_note = self._fuse_depth(frame, humans, k, width, height, stamp, opts)
        if opts.tracking:
            tracker = self._trackers.setdefault(frame.stream, Tracker())
            tracker.gate_m, tracker.max_age_s = opts.tracking_gate_m, opts.tracking_max_age_s
            humans = tracker.update(humans, stamp)
        else:
            humans = [dataclasses.replace(h, id=0) for h in humans]  # HumanMesh: 0 = not tracked
        if opts.smoothing is not None and opts.tracking:
            humans = self._smooth(frame.stream, humans, k, stamp, opts.smoothing)
        else:
            self._smoothers.pop(frame.stream, None)  # switched off: start afresh when switched on
        debug = None
        if opts.debug_image:  # drawn on the image the network saw (undistorted), with its K
            drawn = render_overlay(rgb, humans, k, joint_parents=self.predictor.joint_parents, alpha=0.6,
                                   mesh="points")
            debug = rgb_to_image_msg(drawn, header)
        if model is not None and model.distorted:  # 2D outputs in the raw image's pixels
            humans = [dataclasses.replace(h, center_2d=distort_points(h.center_2d, model),
                                          joints_2d=distort_points(h.joints_2d, model)) for h in humans]
        latency = time.monotonic() - frame.received
        msg = humans_to_msg(humans, header, k, self.predictor.body_model_name, width, height,
                            opts.publish_vertices, latency)
        for human, human_msg in zip(humans, msg.humans, strict=True):
            correction = human.extras.get("depth_correction")
            if isinstance(correction, DepthCorrection):  # HumanMesh's depth fields
                human_msg.depth_corrected = bool(correction.corrected)
                human_msg.depth_correction_m = float(correction.delta_m)
        markers = None
        if opts.markers:  # serialised bytes: no Python object per point
            markers = humans_to_markers_cdr(humans, header, self.predictor.faces, self.predictor.joint_parents,
                                            opts.marker_decimation, lifetime)
        estimated_fov = fov_from_K(k, width, height) if estimated is not None else None
        label = intrinsics_label(model, estimated_fov, estimated or "")
        source = "estimated" if estimated is not None else ("fov_deg" if model is None else "camera_info")
        out = FrameOutput(msg, markers, debug, humans, intrinsics=label, k_source=source, latency=latency,
                          depth_note=depth_note, fov_estimate=fov)
        if opts.tf is not None:
            out.transforms = human_transforms(humans, header, opts.tf)
        if opts.points_voxel_m is not None:
            from lighthmr_ros.ros.pointcloud import people_cloud

            out.points_msg = people_cloud(humans, header, opts.points_voxel_m)
        return out

    def _fuse_depth(self, frame: Frame, humans: list[Human], k: np.ndarray, width: int, height: int,
                    stamp: float, opts: PipelineOptions) -> tuple[list[Human], str]:
        """Humans moved along their rays by the aligned depth image, and what happened (FrameOutput.depth_note).

        A depth image that cannot be read or is not aligned leaves the people as predicted: depth is
        an improvement, never a reason to lose a frame.
        """
        if opts.depth is None:
            return humans, "off"
        if frame.depth is None:
            return humans, "no depth"
        depth_stamp = stamp_seconds(frame.depth.header)
        if depth_stamp > 0 and abs(depth_stamp - stamp) > opts.depth_max_dt_s:
            return humans, "depth too old"
        if not humans:
            return humans, "used"
        from lighthmr_ros.ros.depth import depth_msg_to_metres

        try:
            metres = depth_msg_to_metres(frame.depth)
            fused, _ = fuse_depth(humans, metres, k, self.predictor.faces, width, height, opts.depth)
        except ImageError as exc:
            return humans, f"error: {exc}"
        return fused, "used"

    def _smooth(self, stream: str, humans: list[Human], k: np.ndarray, stamp: float,
                params: SmoothingParams) -> list[Human]:
        """One-Euro per track; meshes rebuilt from the filtered pose so that they match the message's pose."""
        smoother = self._smoothers.setdefault(stream, Smoother(params))
        smoother.params = params  # live parameters: the filter states are kept
        smoothed = smoother.update(humans, stamp)
        moved = [i for i, h in enumerate(smoothed) if h.extras.get("smoothed")]
        body = getattr(getattr(self.predictor, "model", None), "body", None)
        if moved and body is not None:
            rebuilt = rebuild_meshes([smoothed[i] for i in moved], body, k)
            for i, human in zip(moved, rebuilt, strict=True):
                smoothed[i] = human
        return smoothed

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
