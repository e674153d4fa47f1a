// One field of view per webcam stream from the model's per-frame estimates: the rule of the ROS node's
// `fov_estimate: stable` (lighthmr_ros/ros/fov_estimate.py, FovStabiliser), kept by the page because
// every /api/predict call is stateless.
//
// The median of the estimates of the first N frames that hold a person, then frozen (N: the server's
// `fov_estimate_frames` from /api/health, the node's default). Until N frames are in, each frame is sent
// with the median of those so far; before the first one, with fov_deg=auto (the frame's own estimate).
// Frames without people do not count; a new video size starts again, as does `reset()` (auto FOV
// turned off or on, the webcam restarted).

const LOW = 10; // the fov_deg range /api/predict accepts
const HIGH = 170;

export class FovStabiliser {
  constructor(settleFrames) {
    this.settleFrames = settleFrames;
    this.size = null;
    this.samples = [];
    this.epoch = 0; // bumped by every reset: answers to frames sent before it are not counted
  }

  reset() {
    this.size = null;
    this.samples = [];
    this.epoch += 1;
  }

  get window() {
    return Math.max(1, Math.floor(this.settleFrames));
  }

  checkSize(width, height) {
    const size = `${width}x${height}`;
    if (this.size !== size) {
      // another video size: other intrinsics
      this.size = size;
      this.samples = [];
      this.epoch += 1;
    }
  }

  /** The value to send with a frame of this size: {fovDeg, frames, window, settled}, fovDeg null before any. */
  current(width, height) {
    this.checkSize(width, height);
    const window = this.window;
    const used = this.samples.slice(0, window);
    if (!used.length) return { fovDeg: null, frames: 0, window, settled: false };
    const ordered = [...used].sort((a, b) => a - b);
    const mid = Math.floor(ordered.length / 2);
    const median = ordered.length % 2 ? ordered[mid] : 0.5 * (ordered[mid - 1] + ordered[mid]);
    return { fovDeg: median, frames: used.length, window, settled: used.length >= window };
  }

  /** Count one answered frame's own estimate; ignored without people, once settled, or when not an angle. */
  update(width, height, fovDeg, people) {
    this.checkSize(width, height);
    if (!(people > 0) || typeof fovDeg !== 'number' || !Number.isFinite(fovDeg) || fovDeg <= 0 || fovDeg >= 180) return;
    if (this.samples.length < this.window) this.samples.push(fovDeg);
  }
}

/** The fov_deg field for a value of `current()`: its median (within what the API accepts), else "auto". */
export function fovField(value) {
  return value && value.fovDeg !== null ? String(Math.min(HIGH, Math.max(LOW, value.fovDeg))) : 'auto';
}

/**
 * One line for the status area about the K a frame was answered with: "FOV 54.3° (estimated, settling 7/30)",
 * "... (estimated, stable)" (a webcam frame sent with its stream's value `stable`), "... (estimated, this
 * frame)" (the frame's own estimate) or "FOV 60.0°" (a given angle, or a model without a camera head).
 */
export function describeFov(result, stable) {
  if (!result) return '';
  const degrees = `FOV ${result.fov_deg.toFixed(1)}\u00b0`;
  if (stable && typeof result.fov_estimate_deg === 'number') {
    return stable.settled
      ? `${degrees} (estimated, stable)`
      : `${degrees} (estimated, settling ${stable.frames}/${stable.window})`;
  }
  return result.K_source === 'estimated' ? `${degrees} (estimated, this frame)` : degrees;
}
