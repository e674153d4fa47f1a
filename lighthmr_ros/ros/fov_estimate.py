"""One field of view per camera from the model's per-frame estimates (``fov_estimate: stable``).

Without CameraInfo and with ``fov_deg: auto``, the Multi-HMR-Anny teacher regresses the camera's
field of view from every image. Used frame by frame that K jitters, and with it every person's
distance (the teacher's depth is ``fx / exp(y)``: proportional to the focal length). A fixed-zoom
camera's intrinsics do not change between frames, so the pipeline (FramePipeline) keeps one
``FovStabiliser`` per camera and builds each frame's K from its value.

The rule, and why:

- **Median of the first N frames that hold a person, then frozen.** The median ignores the odd bad
  frame (a person cut by the border, motion blur, someone filling the view) that would pull a mean;
  freezing after N frames makes K exactly constant from then on, which an exponential average or a
  sliding-window median never is (both keep moving a little with every frame, and every distance
  with them). Until N frames are in, each frame gets the median of those so far, so K settles
  within a few frames and moves less and less until it stops.
- **Frames without a detected person do not count.** The camera head reads the image's class token
  only and answers for any image, people or not (lighthmr_ros.model.multihmr_anny); the teacher
  learnt its field of view from images of people, and a frame where it finds nobody (an empty
  corridor, a wall, a lens cap) gives it nothing it was trained to measure.
- **A new image size starts again** (another camera mode, a resized stream: other intrinsics),
  as does ``FramePipeline.reset`` (a new recording, a reactivated node). A zoom change at the same
  image size is not detected: use ``fov_estimate: per_frame`` for zoom lenses.

Cost: none. The camera head does not depend on K (it reads the image only; K enters the decoder's
distance and back-projection), so the frame is run once with the stable K and the same forward
still yields this frame's own estimate (``CameraUsed.fov_estimate_deg``) for the running median.
Only the very first frames of a camera, before any estimate exists, run with the model's own K.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

FOV_ESTIMATE_MODES = ("stable", "per_frame")
#: Frames holding a person whose median becomes the camera's field of view (then frozen).
DEFAULT_SETTLE_FRAMES = 30


@dataclass(frozen=True)
class FovValue:
    """The stable field of view (degrees across the larger image side) and what it rests on."""

    fov_deg: float
    frames: int  # frames holding a person whose median this is
    window: int  # frames after which the value is frozen

    @property
    def settled(self) -> bool:
        """The window is full: the value no longer changes."""
        return self.frames >= self.window

    def describe(self) -> str:
        """For diagnostics: "stable: median of 30 frames with people" or "settling: median of 7/30 ..."."""
        if self.settled:
            return f"stable: median of {self.frames} frame{'s' if self.frames > 1 else ''} with people"
        return f"settling: median of {self.frames}/{self.window} frames with people"


class FovStabiliser:
    """The running median of one camera's per-frame field-of-view estimates; see the module docstring.

    Per frame: ``current(width, height)`` gives the value to build this frame's K from (None before
    the first frame with a person: the frame then runs with the model's own K), then
    ``update(width, height, fov_deg, people)`` adds the frame's own estimate.
    """

    def __init__(self, settle_frames: int = DEFAULT_SETTLE_FRAMES):
        self.settle_frames = settle_frames  # may change between frames (a live node parameter)
        self._size: tuple[int, int] | None = None
        self._samples: list[float] = []

    def reset(self) -> None:
        self._size = None
        self._samples = []

    @property
    def frames(self) -> int:
        return len(self._samples)

    def _check_size(self, width: int, height: int) -> None:
        if self._size != (width, height):  # another image size: other intrinsics
            self._samples = []
            self._size = (width, height)

    @property
    def _limit(self) -> int:
        return max(1, int(self.settle_frames))

    def _window(self) -> list[float]:
        return self._samples[: self._limit]

    def current(self, width: int, height: int) -> FovValue | None:
        """The field of view for a frame of this size, or None while no frame with a person came."""
        self._check_size(width, height)
        window = self._window()
        if not window:
            return None
        return FovValue(statistics.median(window), len(window), self._limit)

    def update(self, width: int, height: int, fov_deg: float | None, people: int) -> None:
        """Count one frame's own estimate; ignored without people, once settled, or when not a valid angle."""
        self._check_size(width, height)
        if people <= 0 or fov_deg is None or not (math.isfinite(fov_deg) and 0.0 < fov_deg < 180.0):
            return
        if len(self._samples) < self._limit:  # settled: the value stays put
            self._samples.append(float(fov_deg))
