"""The detect node's parameters: one table with descriptors, ranges and defaults.

``declare_all`` declares the table on a node (with ParameterDescriptor ranges, so ``ros2 param``
and rqt show and enforce them); ``read_settings`` returns a frozen snapshot in one call, so the
node never chains ``get_parameter(...).get_parameter_value()``. Defaults match config/detect.yaml.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

from lighthmr_ros.ros.fov_estimate import DEFAULT_SETTLE_FRAMES

# When a change takes effect: "live" = next frame, "activate" = next activation,
# "configure" = next configure (the model is loaded there), "start" = node start.
LIVE, ACTIVATE, CONFIGURE, START = "live", "activate", "configure", "start"


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: object
    description: str
    applies: str = LIVE
    low: float | None = None
    high: float | None = None
    step: float = 0
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    or_number: tuple[float, float] | None = None  # also a double in this range besides ``choices`` (dynamic type)


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("autostart", True, "Configure and activate at start; false waits for a lifecycle manager.", START),
    ParamSpec("checkpoint", "", "Model checkpoint (lighthmr or official Multi-HMR .pt); empty: the default model.",
              CONFIGURE),
    ParamSpec("model_config", "", "Named model config used when no checkpoint is given (e.g. lighthmr_tinyvit5m).",
              CONFIGURE),
    ParamSpec("body_model", "", "Body model: anny or smplx; empty: the checkpoint's own.", CONFIGURE,
              choices=("", "anny", "smplx")),
    ParamSpec("smplx_model_dir", "", "Folder holding SMPLX_NEUTRAL.npz (needed for SMPL-X models).", CONFIGURE),
    ParamSpec("device", "auto", "auto, cpu, cuda or cuda:N; cuda without a GPU falls back to cpu with a warning.",
              CONFIGURE, pattern=r"auto|cpu|cuda(:\d+)?"),
    ParamSpec("precision", "fp32", "Inference precision: fp32; auto (bf16 where the CPU multiplies bf16 natively: "
              "AVX512-BF16 / AMX, fp16 on CUDA, fp32 otherwise); fp16 or bf16 (torch autocast); or int8 "
              "(onnxruntime backend only).", CONFIGURE, choices=("auto", "fp32", "fp16", "bf16", "int8")),
    ParamSpec("backend", "torch", "Network runtime: torch, or onnxruntime (CPU; the fastest choice without a GPU, "
              "with precision int8 most of all).", CONFIGURE, choices=("torch", "onnxruntime")),
    ParamSpec("onnx_dir", "", "A `lighthmr export --onnx` folder for the onnxruntime backend; empty: export the "
              "model at configure (a few seconds).", CONFIGURE),
    ParamSpec("image_size", 0, "Network input side in pixels (multiple of 32); 0: the model's default.",
              CONFIGURE, 0, 2048, 32),
    ParamSpec("detection_threshold", 0.5, "Minimum detection score of a person.", LIVE, 0.0, 1.0),
    ParamSpec("nms_kernel_size", 0, "Max-pool window of the peak search on the token grid (odd); 0: the model's "
              "own (3 for Multi-HMR, 1 plus duplicate suppression for the default model).", LIVE, 0, 15, 1,
              pattern=r"0|1?[13579]"),
    ParamSpec("max_humans", 20, "Most persons reported per image.", LIVE, 1, 100, 1),
    ParamSpec("fov_deg", "auto", "Field of view of the larger image side (degrees, a double such as 70.0), "
              "used when no valid CameraInfo arrives; auto: the model's own estimate from the image where it "
              "has one (the Multi-HMR-Anny teacher), 60 degrees otherwise.", LIVE, choices=("auto",),
              or_number=(10.0, 170.0)),
    ParamSpec("fov_estimate", "stable", "With fov_deg auto and a model that estimates its camera: stable (one "
              "field of view per camera, the median of the estimates of the first fov_estimate_frames frames "
              "holding a person, then fixed; reset by a new image size or a reactivation) or per_frame (each "
              "frame's own estimate: K and every distance jitter).", LIVE, choices=("stable", "per_frame")),
    ParamSpec("fov_estimate_frames", DEFAULT_SETTLE_FRAMES, "fov_estimate stable: frames holding a person whose "
              "median becomes the camera's field of view (each frame before uses the median so far).", LIVE,
              1, 1000, 1),
    ParamSpec("publish_vertices", True, "Fill HumanMesh.vertices (the largest part of each message).", LIVE),
    ParamSpec("publish_markers", True, "Publish RViz markers (meshes, skeletons, id labels).", LIVE),
    ParamSpec("marker_decimation", 8, "Show about 1/N of the mesh triangles in RViz (1: full mesh).", LIVE,
              1, 64, 1),
    ParamSpec("publish_debug_image", False, "Publish debug_image: the input with meshes and skeletons drawn.", LIVE),
    ParamSpec("compressed", False, "Subscribe to image/compressed (CompressedImage) instead of image.", ACTIVATE),
    ParamSpec("reliability", "best_effort", "Image subscription reliability: best_effort (matches every "
              "publisher) or reliable (only reliable publishers; no lost fragments on weak links).", ACTIVATE,
              choices=("best_effort", "reliable")),
    ParamSpec("rectified", "auto", "Whether the image is rectified, so CameraInfo.P describes it (K and D "
              "otherwise, raw images undistorted first); auto: true for image_rect* topics.", LIVE,
              choices=("auto", "true", "false")),
    ParamSpec("tracking", True, "Give persons ids that stay stable across frames (0 when off).", LIVE),
    ParamSpec("tracking_gate_m", 0.6, "Largest root displacement (metres, depth counted half) between frames "
              "for the same person.", LIVE, 0.05, 5.0),
    ParamSpec("tracking_max_age_s", 1.0, "How long an unseen person keeps its id (seconds).", LIVE, 0.0, 10.0),
    ParamSpec("diagnostics_period_s", 1.0, "Period of the /diagnostics status (seconds).", CONFIGURE, 0.1, 60.0),
    # Several cameras, TF, point cloud, depth fusion, smoothing (docs/ros.md, "Robot outputs")
    ParamSpec("cameras", [], "Camera namespaces served by this node with one model and one batched forward: "
              "camera NAME reads NAME/image (or NAME/image/compressed), NAME/camera_info and NAME/depth and "
              "publishes NAME/humans, NAME/markers, NAME/debug_image, NAME/human_points; empty: one camera "
              "with the plain topic names.", CONFIGURE),
    ParamSpec("batch_window_s", 0.02, "With several cameras: how long after the first frame the worker waits "
              "for the other cameras' frames to run them in the same batch (seconds).", LIVE, 0.0, 1.0),
    ParamSpec("publish_tf", False, "Broadcast each tracked person as TF frame body_<id> (REP-155), child of the "
              "image's optical frame; with several cameras the frames are NAME/body_<id>.", LIVE),
    ParamSpec("tf_head_frames", False, "Also broadcast head_<id> (the head joint, oriented like the head).", LIVE),
    ParamSpec("tf_prefix", "", "Put before every person frame name (e.g. robot1/).", LIVE,
              pattern=r"([A-Za-z0-9_]+/?)*"),
    ParamSpec("publish_points", False, "Publish human_points: all people's vertices as one PointCloud2 (x, y, z, "
              "id) in the optical frame, for costmaps and obstacle layers.", LIVE),
    ParamSpec("points_voxel_m", 0.05, "Voxel size that thins the cloud (metres; one point per voxel and person; "
              "0: every vertex).", LIVE, 0.0, 1.0),
    ParamSpec("depth_fusion", False, "Subscribe to the aligned depth image `depth` (16UC1 mm or 32FC1 m, "
              "registered to the colour image) and correct each person's distance with it.", ACTIVATE),
    ParamSpec("depth_max_dt_s", 0.1, "Largest stamp difference between a colour frame and the depth image used "
              "with it (seconds); older depth is not used.", LIVE, 0.0, 5.0),
    ParamSpec("depth_max_m", 10.0, "Farthest depth reading trusted (metres).", LIVE, 0.5, 100.0),
    ParamSpec("smoothing", False, "One-Euro filter per track on translation, shape and joint rotations "
              "(steadier meshes, a little lag).", LIVE),
    ParamSpec("smoothing_translation_min_cutoff", 0.5, "Translation filter cut-off at rest (Hz; lower: "
              "steadier).", LIVE, 0.01, 30.0),
    ParamSpec("smoothing_translation_beta", 2.0, "Translation filter: rise of the cut-off with speed (higher: "
              "less lag).", LIVE, 0.0, 100.0),
    ParamSpec("smoothing_rotation_min_cutoff", 1.5, "Joint rotation filter cut-off at rest (Hz).", LIVE,
              0.01, 30.0),
    ParamSpec("smoothing_rotation_beta", 0.5, "Joint rotation filter: rise of the cut-off with angular speed.",
              LIVE, 0.0, 100.0),
)
SPECS = {spec.name: spec for spec in PARAMS}


@dataclass(frozen=True)
class Settings:
    """A snapshot of every parameter (field names = parameter names)."""

    autostart: bool
    checkpoint: str
    model_config: str
    body_model: str
    smplx_model_dir: str
    device: str
    precision: str
    backend: str
    onnx_dir: str
    image_size: int
    detection_threshold: float
    nms_kernel_size: int
    max_humans: int
    fov_deg: float | str
    fov_estimate: str
    fov_estimate_frames: int
    publish_vertices: bool
    publish_markers: bool
    marker_decimation: int
    publish_debug_image: bool
    compressed: bool
    reliability: str
    rectified: str
    tracking: bool
    tracking_gate_m: float
    tracking_max_age_s: float
    diagnostics_period_s: float
    cameras: list[str]
    batch_window_s: float
    publish_tf: bool
    tf_head_frames: bool
    tf_prefix: str
    publish_points: bool
    points_voxel_m: float
    depth_fusion: bool
    depth_max_dt_s: float
    depth_max_m: float
    smoothing: bool
    smoothing_translation_min_cutoff: float
    smoothing_translation_beta: float
    smoothing_rotation_min_cutoff: float
    smoothing_rotation_beta: float



def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    when = {LIVE: "changes apply to the next frame", ACTIVATE: "applies at the next activation",
            CONFIGURE: "applies at the next configure", START: "read at start"}[spec.applies]
    desc = ParameterDescriptor(description=f"{spec.description} ({when})")
    if spec.or_number:  # a string or a double: the range is checked by validate_value
        low, high = spec.or_number
        desc.dynamic_typing = True
        desc.additional_constraints = ", ".join(repr(c) for c in spec.choices) + f", or a double in [{low:g}, {high:g}]"
        return desc
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(repr(c) for c in spec.choices)
    elif spec.pattern:
        desc.additional_constraints = f"matches {spec.pattern}"
    if spec.low is not None:
        if isinstance(spec.default, float):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(spec.low), to_value=float(spec.high), step=float(spec.step))]
        else:
            desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=int(spec.step))]
    return desc


def declare_all(node) -> None:
    """Declare every parameter (overrides from --params-file / -p apply) and install validation."""
    # An empty list has no ROS type of its own: declare it as a string array (unset until given).
    node.declare_parameters("", [(spec.name, _declared_value(spec), descriptor(spec)) for spec in PARAMS])
    node.add_on_set_parameters_callback(validate)
    bad = [validate_value(SPECS[n], _value(SPECS[n], node.get_parameter_or(n))) for n in SPECS]
    bad = [reason for reason in bad if reason]
    if bad:
        from lighthmr_ros.errors import ConfigError

        raise ConfigError("; ".join(bad))


def _declared_value(spec: ParamSpec):
    if isinstance(spec.default, list) and not spec.default:
        from rclpy.parameter import Parameter

        return Parameter.Type.STRING_ARRAY
    return spec.default


def _value(spec: ParamSpec, parameter):
    """A parameter's value; an unset string array (declared without a default) reads as its empty default."""
    value = parameter.value
    if isinstance(spec.default, list):
        return list(spec.default) if value is None else list(value)
    return value


def validate_value(spec: ParamSpec, value) -> str | None:
    """Reason why ``value`` is not allowed for ``spec`` (ranges are checked by rclpy itself)."""
    if spec.name == "cameras":
        from lighthmr_ros.ros.cameras import check_camera_names

        return check_camera_names(list(value or []))
    if spec.or_number:
        return _string_or_number(spec, value)
    if spec.choices and value not in spec.choices:
        return f"parameter {spec.name} must be one of {', '.join(map(repr, spec.choices))}, not {value!r}"
    if spec.pattern and not re.fullmatch(spec.pattern, str(value)):
        return f"parameter {spec.name} must match {spec.pattern}, not {value!r}"
    return None


def _string_or_number(spec: ParamSpec, value) -> str | None:
    """Reason why ``value`` is neither one of the strings nor a double within the range (an int is refused,
    as for every double parameter: 70.0, not 70)."""
    if isinstance(value, str):
        return None if value in spec.choices else (
            f"parameter {spec.name} must be {' or '.join(map(repr, spec.choices))} or a number, not {value!r}")
    if not isinstance(value, float):
        return (f"parameter {spec.name} must be {' or '.join(map(repr, spec.choices))} or a double with a "
                f"decimal point (e.g. 70.0), not {value!r}")
    low, high = spec.or_number
    if not low <= value <= high:
        return f"parameter {spec.name} must lie in [{low:g}, {high:g}], not {value:g}"
    return None


def validate(parameters) -> SetParametersResult:
    """on-set callback: reject unknown choices before they are stored."""
    for parameter in parameters:
        spec = SPECS.get(parameter.name)
        reason = validate_value(spec, parameter.value) if spec else None
        if reason:
            return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


def read_settings(node) -> Settings:
    """Current values of every parameter as one frozen Settings object."""
    values = [node.get_parameter_or(spec.name) for spec in PARAMS]
    return Settings(**{spec.name: _value(spec, p) for spec, p in zip(PARAMS, values, strict=True)})
