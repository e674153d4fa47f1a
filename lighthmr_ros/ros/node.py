"""The detect node: images in, tracked human meshes, RViz markers and diagnostics out.

A LifecycleNode (configure: load the model, make publishers; activate: subscribe and start the
worker) that drives itself to active unless ``autostart:=false``. The image callback only puts the
message into a one-frame slot; a worker thread converts, infers and publishes the newest frame,
so the executor never blocks on the network and a slow model drops frames instead of lagging.
Run: ``ros2 run lighthmr_ros detect_node`` or ``lighthmr-detect --ros-args -r image:=/cam/image``.
"""
from __future__ import annotations

import signal
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.exceptions import InvalidParameterTypeException, ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from lighthmr_ros.device import resolve_device
from lighthmr_ros.errors import LightHMRError
from lighthmr_ros.msg import HumanMeshArray, MeshTopology
from lighthmr_ros.ros.cameras import (
    BatchStats,
    Camera,
    FrameBatcher,
    camera_names,
    camera_topics,
    robot_options,
)
from lighthmr_ros.ros.diagnostics import Stats
from lighthmr_ros.ros.image import conversion_path
from lighthmr_ros.ros.intrinsics import camera_model, supported
from lighthmr_ros.ros.markers import clear_markers
from lighthmr_ros.ros.messages import topology_msg
from lighthmr_ros.ros.params import Settings, declare_all, read_settings
from lighthmr_ros.ros.pipeline import Frame, FramePipeline, PipelineOptions, is_rectified_topic
from lighthmr_ros.ros.tf_frames import head_options, make_broadcaster

NODE_NAME = "lighthmr_detect"
WARN_PERIOD_S = 5.0


def sensor_qos(reliability: str) -> QoSProfile:
    """Sensor-data QoS, depth 1: only the newest image matters."""
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=policy,
                      durability=DurabilityPolicy.VOLATILE)


def compressed_topic(image_topic: str) -> str:
    """image_transport's rule: the compressed stream of ``/cam/image`` is ``/cam/image/compressed``."""
    return image_topic.rstrip("/") + "/compressed"


def pipeline_options(s: Settings, markers: bool, debug_image: bool, **robot) -> PipelineOptions:
    """The node's live parameters as the pipeline's options (markers/debug only when someone listens).

    robot: the TF, point cloud, depth and smoothing options (lighthmr_ros.ros.cameras.robot_options).
    """
    return PipelineOptions(
        fov_deg=s.fov_deg, fov_estimate=s.fov_estimate, fov_estimate_frames=s.fov_estimate_frames,
        det_threshold=s.detection_threshold, nms_kernel=s.nms_kernel_size or None,
        max_humans=s.max_humans, publish_vertices=s.publish_vertices, markers=markers,
        marker_decimation=s.marker_decimation, debug_image=debug_image, tracking=s.tracking,
        tracking_gate_m=s.tracking_gate_m, tracking_max_age_s=s.tracking_max_age_s, **robot)


class DetectNode(LifecycleNode):
    """Lifecycle node wrapping a Predictor and a FramePipeline; see the module docstring and docs/ros.md.

    ``predictor``: an already built Predictor to use instead of loading one from the model
    parameters at configure (embedding the node in a process that holds the model already).
    """

    def __init__(self, node_name: str = NODE_NAME, predictor=None, **kwargs):
        super().__init__(node_name, **kwargs)
        declare_all(self)
        self.stats = Stats()
        self._given_predictor = predictor
        self.predictor = None
        self.pipeline: FramePipeline | None = None
        self._pubs: dict = {}
        self._diag_pub = None
        self._diag_timer = None
        self._subs: list = []
        self._cameras: dict[str, Camera] = {}  # by name; "" is the single default camera
        self._batcher = FrameBatcher()
        self.batches = BatchStats()
        self._send_tf = None  # sends TransformStampeds on /tf (tf2_ros, or a TFMessage publisher)
        self._tf_tried = False  # the broadcaster is made when publish_tf is first on
        self._depth_note = "off"  # what depth fusion did with the last frame (diagnostics)
        self._k_notes: dict[str, tuple[str, str]] = {}  # per camera: (K source, label) of its last frame
        self._fov_settled: frozenset[str] = frozenset()  # cameras whose estimated field of view has settled
        self._body_spec = None  # the body model's joints (head frames)
        self._worker: threading.Thread | None = None
        self._active = False

    @property
    def settings(self) -> Settings:
        return read_settings(self)

    @property
    def publishers(self) -> dict:
        """The output publishers by topic name (humans, markers, debug_image, mesh_topology); empty unconfigured."""
        return dict(self._pubs)

    @property
    def cameras(self) -> dict[str, Camera]:
        """The cameras served, by name ("" is the single default camera); empty unconfigured."""
        return dict(self._cameras)

    @property
    def _camera_info(self) -> CameraInfo | None:
        """The first camera's newest valid CameraInfo (None: fov_deg is used)."""
        return next(iter(self._cameras.values())).camera_info if self._cameras else None

    # -- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        try:
            device = resolve_device(s.device, fallback=True)  # cuda without a GPU: one warning, then the CPU
            from lighthmr_ros.inference import Predictor
            from lighthmr_ros.perf import build_off_main_thread

            # Built in a short-lived thread: torch work in the main thread would slow every forward
            # of the inference worker by about a third (OpenMP pools; see lighthmr_ros.perf).
            self.predictor = self._given_predictor or build_off_main_thread(lambda: Predictor(
                checkpoint=s.checkpoint or None,
                config=s.model_config or None,
                device=str(device),
                precision=s.precision,
                backend=s.backend,
                onnx_dir=s.onnx_dir or None,
                body_model=s.body_model or None,
                smplx_model_dir=s.smplx_model_dir or None,
                image_size=s.image_size or None,
            ))
        except LightHMRError as exc:
            self.get_logger().error(f"Cannot load the model: {exc}")
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # e.g. CUDA out of memory: report it instead of rclpy's silent ERROR
            self.get_logger().error(f"Cannot load the model: {type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.pipeline = FramePipeline(self.predictor)
        reliable = QoSProfile(depth=5)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self._cameras = {name: Camera(camera_topics(name)) for name in camera_names(s.cameras)}
        self._pubs = {}
        for camera in self._cameras.values():  # one set of outputs per camera, one model for all
            t = camera.topics
            camera.publishers = {
                "humans": self.create_lifecycle_publisher(HumanMeshArray, t.humans, reliable),
                "markers": self.create_lifecycle_publisher(MarkerArray, t.markers, reliable),
                "debug_image": self.create_lifecycle_publisher(Image, t.debug_image, sensor_qos("reliable")),
                "human_points": self.create_lifecycle_publisher(PointCloud2, t.points, reliable),
            }
            prefix = f"{camera.name}/" if camera.name else ""
            self._pubs.update({prefix + kind: pub for kind, pub in camera.publishers.items()})
        self._pubs["mesh_topology"] = self.create_lifecycle_publisher(MeshTopology, "mesh_topology", latched)
        self._body_spec = getattr(getattr(getattr(self.predictor, "model", None), "body", None), "spec", None)
        try:  # head frames need the skeleton from the root down to the head
            head_options(self._body_spec) if self._body_spec is not None else None
        except LightHMRError as exc:
            self.get_logger().warning(f"tf_head_frames cannot work with this body model: {exc}")
            self._body_spec = None
        self._make_tf_broadcaster(s)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # A steady clock: with use_sim_time a /clock timer would stop while a bag is paused.
        self._diag_timer = self.create_timer(s.diagnostics_period_s, self._publish_diagnostics,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"Model ready on {self.predictor.device} (body model {self.predictor.body_model_name}, "
            f"{self.predictor.num_vertices} vertices); images converted by {conversion_path()}; "
            f"precision {self.predictor.precision_reason}.")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        result = super().on_activate(state)  # activates the lifecycle publishers
        qos = sensor_qos(s.reliability)
        listening = []
        for camera in self._cameras.values():
            # One remap of `image` moves both streams: the compressed one is derived from the resolved
            # name, as image_transport does.
            camera.image_topic = self.resolve_topic_name(camera.topics.image)
            camera.camera_info = None

            def offer(msg, name=camera.name):
                self._offer(name, msg)

            def on_info(msg, camera=camera):
                self._on_camera_info(camera, msg)

            if s.compressed:
                sub = self.create_subscription(CompressedImage, compressed_topic(camera.image_topic), offer, qos)
            else:
                sub = self.create_subscription(Image, camera.image_topic, offer, qos)
            listening.append(sub.topic_name)
            self._subs += [sub, self.create_subscription(CameraInfo, camera.topics.camera_info, on_info,
                                                         sensor_qos("best_effort"))]
            camera.depth = None
            if s.depth_fusion:  # aligned depth: only the newest image is kept, used with the next frame

                def on_depth(msg, camera=camera):
                    camera.depth = msg

                depth_sub = self.create_subscription(Image, camera.topics.depth, on_depth, sensor_qos("best_effort"))
                self._subs.append(depth_sub)
                listening.append(f"{depth_sub.topic_name} (depth)")
        self.pipeline.reset()
        self._batcher.reset(list(self._cameras))
        self._start_worker()
        self._active = True
        self._pubs["mesh_topology"].publish(topology_msg(self.predictor))
        self.get_logger().info(f"Listening on {', '.join(listening)} ({s.reliability}, depth 1).")
        if getattr(self.predictor, "notice", None):  # the synthetic-only demo model: say so, once
            self.get_logger().warning(self.predictor.notice)
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_input(self) -> None:
        """Unsubscribe, stop the worker and clear RViz (markers of a stopped node must not linger)."""
        self._stop_worker()
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()
        if self._active:
            for camera in self._cameras.values():
                if "markers" in camera.publishers:
                    clear = clear_markers(Header(stamp=self.get_clock().now().to_msg()))
                    camera.publishers["markers"].publish(clear)
                    # On shutdown the node is destroyed right after: let reliable subscribers (RViz) get
                    # the DELETEALL first, or it can be lost with the process (bounded wait).
                    camera.publishers["markers"].wait_for_all_acked(Duration(seconds=1.0))
        self._active = False

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        self._cameras = {}
        self._k_notes = {}
        self._fov_settled = frozenset()
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self.pipeline = None
        if self.predictor is not None:
            self.predictor = None
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # deactivated nodes should not hold GPU memory

    def close(self) -> None:
        """Stop the worker, clear the markers when active, and destroy the node (safe in any state)."""
        if self.context.ok():
            self._stop_input()
        else:
            self._stop_worker()
        self.destroy_node()

    def _make_tf_broadcaster(self, s: Settings) -> None:
        """The /tf sender, made once publish_tf is first on (at configure, or when set at run time)."""
        if s.publish_tf and not self._tf_tried:
            self._tf_tried = True
            self._send_tf = make_broadcaster(self)
            if self._send_tf is None:
                self.get_logger().warning("publish_tf is on but neither tf2_ros nor tf2_msgs imports: no TF frames.")

    # -- input ----------------------------------------------------------------------------------
    def _offer(self, camera: str, msg) -> None:
        """Subscription callback: keep only each camera's newest frame for the worker."""
        dropped = self._batcher.offer(camera, Frame(msg, received=time.monotonic(), stream=camera))
        self.stats.add(received=1, dropped=int(dropped))

    def _on_camera_info(self, camera: Camera, info: CameraInfo) -> None:
        rectified = self._rectified(camera)
        model = camera_model(info, int(info.width), int(info.height), rectified)
        if model is None or not supported(model):
            self.stats.add(bad_camera_info=1)
            reason = ("an unusable K (zero, negative or NaN focal length)" if model is None else
                      f"the unsupported distortion_model {model.distortion_model!r}")
            self.get_logger().warning(f"Ignoring CameraInfo with {reason}; using fov_deg until a valid one arrives.",
                                      throttle_duration_sec=WARN_PERIOD_S)
            camera.camera_info = None
        else:
            camera.camera_info = info

    def _rectified(self, camera: Camera) -> bool:
        choice = self.settings.rectified
        return is_rectified_topic(camera.image_topic) if choice == "auto" else choice == "true"

    # -- worker ---------------------------------------------------------------------------------
    def _start_worker(self) -> None:
        self._stop_worker()
        self._batcher.reset(list(self._cameras))
        self._worker = threading.Thread(target=self._work, name="lighthmr_inference", daemon=True)
        self._worker.start()

    def _stop_worker(self) -> None:
        self._batcher.stop()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join()
        self._worker = None

    def _work(self) -> None:
        while True:
            batch = self._batcher.take(self.settings.batch_window_s)
            if batch is None:
                return
            try:
                self._process([frame for _, frame in batch])
            except Exception as exc:  # a frame must never take the node down
                self.stats.add(errors=len(batch))
                self.get_logger().error(f"Processing a frame failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=WARN_PERIOD_S)

    def _process(self, frames: list[Frame]) -> None:
        """One Predictor call for the newest frame of every camera that had one; each camera's own outputs."""
        s = self.settings
        now = self.get_clock().now().nanoseconds * 1e-9  # for images stamped 0
        self._make_tf_broadcaster(s)
        for frame in frames:
            camera = self._cameras[frame.stream]
            markers_pub, debug_pub = camera.publishers["markers"], camera.publishers["debug_image"]
            want_markers = s.publish_markers and markers_pub.get_subscription_count() > 0
            want_debug = s.publish_debug_image and debug_pub.get_subscription_count() > 0
            want_points = s.publish_points and camera.publishers["human_points"].get_subscription_count() > 0
            robot = robot_options(s, camera.name, self._body_spec, tf=self._send_tf is not None, points=want_points)
            frame.options = pipeline_options(s, want_markers, want_debug, **robot)
            frame.camera_info = camera.camera_info
            frame.depth = camera.depth
            frame.rectified = self._rectified(camera)
            frame.fallback_stamp_s = now
        self.batches.add(len(frames))
        if len(self._cameras) > 1:
            self.get_logger().info(f"Batch of {len(frames)} frames ({', '.join(f.stream for f in frames)}).",
                                   throttle_duration_sec=WARN_PERIOD_S)
        outputs = self.pipeline.process(frames, pipeline_options(s, False, False))
        for frame, out in zip(frames, outputs, strict=True):
            if out.error is not None:
                self.stats.add(rejected=1)
                self.get_logger().warning(f"Rejected an image: {out.error}", throttle_duration_sec=WARN_PERIOD_S)
                continue
            # Counted before publishing: whoever has a frame's messages sees it counted (diagnostics, tests).
            self.stats.frame_done(out.latency, len(out.humans), out.intrinsics)
            pubs = self._cameras[frame.stream].publishers
            pubs["humans"].publish(out.humans_msg)
            if out.markers_cdr is not None:
                pubs["markers"].publish(out.markers_cdr)
            if out.debug_image is not None:
                pubs["debug_image"].publish(out.debug_image)
            if out.points_msg is not None:
                pubs["human_points"].publish(out.points_msg)
            if out.transforms and self._send_tf is not None:
                self._send_tf(out.transforms)
            if out.depth_note.startswith("error"):
                self.get_logger().warning(f"Depth not used: {out.depth_note}", throttle_duration_sec=WARN_PERIOD_S)
            self._depth_note = out.depth_note
            self._note_camera(frame.stream, out)  # after the counters: it may log

    def _note_camera(self, camera: str, out) -> None:
        """Keep each camera's K source for diagnostics; say once when it changes (e.g. to the model's estimate)
        and once when the estimated field of view settles (fov_estimate stable)."""
        before = self._k_notes.get(camera, ("none", ""))[0]
        self._k_notes = {**self._k_notes, camera: (out.k_source, out.intrinsics)}  # copied: read by the timer
        where = f"camera {camera}" if camera else "the camera"
        settled = out.fov_estimate is not None and out.fov_estimate.settled
        if settled and camera not in self._fov_settled:
            self.get_logger().info(f"Field of view of {where} settled at {out.fov_estimate.fov_deg:.1f} deg "
                                   f"(median of {out.fov_estimate.frames} frames with people): K is fixed now.")
        self._fov_settled = (self._fov_settled | {camera}) if settled else (self._fov_settled - {camera})
        if out.k_source != before:
            text = {"estimated": f"no CameraInfo for {where}: K from the model's own field of view ({out.intrinsics})",
                    "fov_deg": f"no CameraInfo for {where}: K from fov_deg",
                    "camera_info": f"{where}: K from its CameraInfo"}.get(out.k_source, out.intrinsics)
            self.get_logger().info(text + ".")

    def _camera_values(self) -> dict[str, str]:
        """Diagnostics: how each camera's K was obtained ("camera" alone, or "camera NAME" for several)."""
        if not self._k_notes:
            return {"camera": "no frame yet"}
        notes = self._k_notes
        return {(f"camera {name}" if name else "camera"): label for name, (_, label) in notes.items()}

    # -- diagnostics ----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        p = self.predictor
        extra = {"device": str(p.device) if p else "none", "body_model": p.body_model_name if p else "none",
                 "precision": getattr(p, "precision_reason", "") if p else "none",
                 "state": "active" if self._active else "inactive",
                 "cameras": ", ".join(self._cameras) if len(self._cameras) > 1 else "1", **self.batches.values(),
                 "depth_fusion": self._depth_note, **self._camera_values()}
        report = self.stats.report(f"{self.get_fully_qualified_name()}: human mesh detection", extra["device"],
                                   extra, active=self._active, notice=getattr(p, "notice", None))
        report.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(report)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> int:
    """Entry point of ``detect_node`` and ``lighthmr-detect``.

    SIGINT and SIGTERM end the spin with KeyboardInterrupt (rclpy's own handler would shut the
    context down first), so the node can still publish its DELETEALL markers on the way out.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    node = None
    code = 0
    try:
        node = DetectNode()
        if node.settings.autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("Configuration failed; see the message above. Exiting.")
                return 1
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error("Activation failed. Exiting.")
                return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while node.context.ok():  # a timeout, so the Python signal handler gets to run
            executor.spin_once(timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (LightHMRError, ParameterException) as exc:
        typed = isinstance(exc, InvalidParameterTypeException)
        hint = " (give doubles with a decimal point, e.g. 70.0)" if typed else ""
        print(f"lighthmr-detect: {exc}{hint}", file=sys.stderr)
        code = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C during cleanup ends the process
        if node is not None:
            node.close()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
