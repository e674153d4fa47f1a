"""Several cameras, one model, one forward: per-camera topics and state, and the frame batcher.

Why: a robot with three cameras should not load three models nor run three forwards one after
another; a batch of three letterboxed images costs much less than three single passes (one set of
weights read from memory, one set of kernel launches on a GPU). So one node serves N cameras:
each camera keeps its own topics, CameraInfo, tracker (the pipeline's ``stream``) and newest-frame
slot, and the worker takes the newest frame of every camera that has one as ONE batch.

Topic names: camera ``""`` (the default, ``cameras: []``) keeps the node's plain names (``image``,
``camera_info``, ``humans``, ...); camera ``front`` uses ``front/image``, ``front/camera_info``,
``front/humans`` and so on, all relative to the node's namespace (remappable as usual).

Batching rule (``FrameBatcher.take``): wait for a first frame; then wait until every camera has a
frame or ``window_s`` has passed since that first frame *arrived* (a busy worker does not wait
again: frames that queued up while it ran are taken at once). Each camera keeps only its newest
frame: a frame replaced before the worker took it counts as dropped for that camera.
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from lighthmr_ros.errors import ConfigError

#: A camera name: a relative or absolute ROS namespace (letters, digits, underscores, slashes).
CAMERA_NAME = re.compile(r"/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*/?")


@dataclass(frozen=True)
class CameraTopics:
    """The topic names of one camera, relative to the node's namespace unless the name is absolute."""

    name: str
    image: str
    camera_info: str
    depth: str
    humans: str
    markers: str
    debug_image: str
    points: str


def camera_topics(name: str) -> CameraTopics:
    """Topics of camera ``name`` ("" = the single default camera with today's topic names)."""
    prefix = f"{name.rstrip('/')}/" if name else ""
    return CameraTopics(name, f"{prefix}image", f"{prefix}camera_info", f"{prefix}depth", f"{prefix}humans",
                        f"{prefix}markers", f"{prefix}debug_image", f"{prefix}human_points")


def check_camera_names(names: Sequence[str]) -> str | None:
    """Why ``names`` is not a valid ``cameras`` parameter (None when it is)."""
    bad = [n for n in names if not CAMERA_NAME.fullmatch(n)]
    if bad:
        return (f"parameter cameras holds names that are not ROS namespaces: {', '.join(map(repr, bad))} "
                "(use letters, digits, underscores and slashes, e.g. front or arm/wrist)")
    stripped = [n.rstrip("/") for n in names]
    if len(set(stripped)) != len(stripped):
        return f"parameter cameras names a camera twice: {list(names)}"
    return None


def camera_names(names: Sequence[str]) -> list[str]:
    """The cameras a node serves: the given names, or the one default camera ``""`` when none are given."""
    reason = check_camera_names(names)
    if reason:
        raise ConfigError(reason)
    return list(names) or [""]


@dataclass
class Camera:
    """What the node keeps per camera: its topics, newest CameraInfo and depth image, publishers."""

    topics: CameraTopics
    image_topic: str = ""  # the resolved image topic (decides ``rectified: auto``)
    camera_info: object | None = None
    depth: object | None = None  # newest sensor_msgs/Image of the aligned depth topic
    publishers: dict = field(default_factory=dict)
    subscriptions: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.topics.name


class BatchStats:
    """Batch sizes for /diagnostics and the log (thread-safe: worker writes, diagnostics timer reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batches = 0
        self.frames = 0
        self.largest = 0
        self.last = 0

    def add(self, size: int) -> None:
        with self._lock:
            self.batches += 1
            self.frames += size
            self.largest = max(self.largest, size)
            self.last = size

    def values(self) -> dict[str, str]:
        """Key/values for the diagnostics status."""
        with self._lock:
            mean = self.frames / self.batches if self.batches else 0.0
            return {"batches": str(self.batches), "batch_size_last": str(self.last),
                    "batch_size_mean": f"{mean:.2f}", "batch_size_max": str(self.largest)}


class FrameBatcher:
    """One newest-frame slot per camera; ``take`` hands the worker one batch (see the module docstring).

    Frames are any objects with a ``received`` attribute (time.monotonic() of arrival).
    """

    def __init__(self, names: Sequence[str] = ("",)):
        self._cond = threading.Condition()
        self._slots: dict[str, object | None] = {}
        self._stopped = False
        self.reset(names)

    def reset(self, names: Sequence[str]) -> None:
        """Serve these cameras, with empty slots, and accept frames again."""
        with self._cond:
            self._slots = dict.fromkeys(names)
            self._stopped = False

    def stop(self) -> None:
        """Empty the slots and wake the worker: ``take`` returns None from now on."""
        with self._cond:
            self._stopped = True
            self._slots = dict.fromkeys(self._slots)
            self._cond.notify_all()

    def offer(self, name: str, frame) -> bool:
        """Put ``frame`` in camera ``name``'s slot; True when it replaced a frame not yet taken (a drop)."""
        with self._cond:
            if name not in self._slots:
                raise KeyError(f"unknown camera {name!r}")
            dropped = self._slots[name] is not None
            self._slots[name] = frame
            self._cond.notify_all()
        return dropped

    def take(self, window_s: float) -> list[tuple[str, object]] | None:
        """The next batch as (camera, frame) pairs in camera order, or None once stopped."""
        with self._cond:
            while not self._stopped and all(f is None for f in self._slots.values()):
                self._cond.wait()
            if self._stopped:
                return None
            first = min(f.received for f in self._slots.values() if f is not None)  # type: ignore[attr-defined]
            deadline = first + max(0.0, window_s)
            while not self._stopped and any(f is None for f in self._slots.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._stopped:
                return None
            batch = [(name, frame) for name, frame in self._slots.items() if frame is not None]
            self._slots = dict.fromkeys(self._slots)
            return batch


def robot_options(settings, camera: str, body_spec=None, tf: bool = True, points: bool = True) -> dict:
    """The TF, point cloud, depth fusion and smoothing fields of PipelineOptions for one camera.

    settings: the node's Settings (or anything with the same fields, e.g. the bag tool's). TF frames
    of camera ``front`` are ``<tf_prefix>front/body_<id>`` when the node serves several cameras
    (each camera tracks its own ids, so plain ``body_3`` would name two people). Head frames need
    the body model's BodySpec; without one only body frames are sent. tf/points: whether anyone
    can receive them (a broadcaster exists, someone subscribes).
    """
    from lighthmr_ros.depth_fusion import DepthFusionParams
    from lighthmr_ros.ros.tf_frames import FrameOptions, head_options
    from lighthmr_ros.smoothing import params_from_flat

    s = settings
    out: dict = {}
    if s.publish_tf and tf:
        prefix = s.tf_prefix + (f"{camera.strip('/')}/" if camera else "")
        out["tf"] = head_options(body_spec, prefix) if s.tf_head_frames and body_spec else FrameOptions(prefix)
    if s.publish_points and points:
        out["points_voxel_m"] = float(s.points_voxel_m)
    if s.depth_fusion:
        out["depth"] = DepthFusionParams(max_depth_m=float(s.depth_max_m))
        out["depth_max_dt_s"] = float(s.depth_max_dt_s)
    if s.smoothing:
        names = ("translation_min_cutoff", "translation_beta", "rotation_min_cutoff", "rotation_beta")
        out["smoothing"] = params_from_flat({name: getattr(s, f"smoothing_{name}") for name in names})
    return out
