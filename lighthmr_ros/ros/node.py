"""The detect node: images in, tracked human meshes, RViz markers and diagnostics out.

A LifecycleNode (configure: load the model, make publishers; activate: subscribe and start the
worker) that drives itself to active unless ``autostart:=false``. The image callback only puts the
message into a one-frame slot; a worker thread converts, infers and publishes the newest frame,
so the executor never blocks on the network and a slow model drops frames instead of lagging.
Run: ``ros2 run lighthmr_ros detect_node`` or ``lighthmr-detect --ros-args -r image:=/cam/image``.
"""
from __future__ import annotations

import dataclasses
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.exceptions import InvalidParameterTypeException, ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from lighthmr_ros.errors import ImageError, LightHMRError
from lighthmr_ros.msg import HumanMeshArray, MeshTopology
from lighthmr_ros.overlay import render_overlay
from lighthmr_ros.ros.diagnostics import Stats
from lighthmr_ros.ros.image import compressed_msg_to_rgb, image_msg_to_rgb, rgb_to_image_msg
from lighthmr_ros.ros.intrinsics import k_from_camera_info
from lighthmr_ros.ros.markers import humans_to_markers_cdr
from lighthmr_ros.ros.messages import humans_to_msg, topology_msg
from lighthmr_ros.ros.params import Settings, declare_all, read_settings
from lighthmr_ros.ros.tracking import Tracker

NODE_NAME = "lighthmr_detect"
WARN_PERIOD_S = 5.0


@dataclass
class Frame:
    msg: Image | CompressedImage
    compressed: bool
    received: float  # time.monotonic() when the callback got it


def sensor_qos(reliability: str) -> QoSProfile:
    """Sensor-data QoS, depth 1: only the newest image matters."""
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=policy,
                      durability=DurabilityPolicy.VOLATILE)


def resolve_device(requested: str) -> tuple[str, str | None]:
    """(device to use, warning or None): cuda without a usable GPU becomes cpu."""
    import torch

    if requested == "auto":
        return ("cuda" if torch.cuda.is_available() else "cpu"), None
    if requested.startswith("cuda"):
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            return "cpu", f"device '{requested}' was requested but CUDA is not available here; running on CPU."
    return requested, None


class DetectNode(LifecycleNode):
    """Lifecycle node wrapping a Predictor; see the module docstring and docs/ros.md.

    ``predictor``: an already built Predictor to use instead of loading one from the model
    parameters at configure (embedding the node in a process that holds the model already).
    """

    def __init__(self, node_name: str = NODE_NAME, predictor=None, **kwargs):
        super().__init__(node_name, **kwargs)
        declare_all(self)
        self.stats = Stats()
        self._given_predictor = predictor
        self.predictor = None
        self.tracker: Tracker | None = None
        self._pubs: dict = {}
        self._diag_pub = None
        self._diag_timer = None
        self._subs: list = []
        self._camera_info: CameraInfo | None = None
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._stop = False
        self._worker: threading.Thread | None = None
        self._device_warned = False

    @property
    def settings(self) -> Settings:
        return read_settings(self)

    # -- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        device, warning = resolve_device(s.device)
        if warning and not self._device_warned:
            self.get_logger().warning(warning)
            self._device_warned = True
        try:
            from lighthmr_ros.inference import Predictor

            from lighthmr_ros.perf import build_off_main_thread

            # Built in a short-lived thread: torch work in the main thread would slow every forward
            # of the inference worker by about a third (OpenMP pools; see lighthmr_ros.perf).
            self.predictor = self._given_predictor or build_off_main_thread(lambda: Predictor(
                checkpoint=s.checkpoint or None,
                config=s.model_config or None,
                device=device,
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
        self.tracker = Tracker(s.tracking_gate_m, s.tracking_max_age_s)
        reliable = QoSProfile(depth=5)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self._pubs = {
            "humans": self.create_lifecycle_publisher(HumanMeshArray, "humans", reliable),
            "markers": self.create_lifecycle_publisher(MarkerArray, "markers", reliable),
            "debug_image": self.create_lifecycle_publisher(Image, "debug_image", sensor_qos("reliable")),
            "mesh_topology": self.create_lifecycle_publisher(MeshTopology, "mesh_topology", latched),
        }
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(s.diagnostics_period_s, self._publish_diagnostics)
        self.get_logger().info(
            f"Model ready on {self.predictor.device} (body model {self.predictor.body_model_name}, "
            f"{self.predictor.num_vertices} vertices).")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        result = super().on_activate(state)  # activates the lifecycle publishers
        qos = sensor_qos(s.reliability)
        if s.compressed:
            self._subs.append(self.create_subscription(
                CompressedImage, "image/compressed", lambda m: self._offer(m, True), qos))
        else:
            self._subs.append(self.create_subscription(Image, "image", lambda m: self._offer(m, False), qos))
        self._subs.append(self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                                   sensor_qos("best_effort")))
        self._start_worker()
        self._pubs["mesh_topology"].publish(topology_msg(self.predictor))
        topic = self._subs[0].topic_name
        self.get_logger().info(f"Listening on {topic} ({s.reliability}, depth 1).")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        if self.predictor is not None:
            self.predictor = None
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # deactivated nodes should not hold GPU memory

    def close(self) -> None:
        """Stop the worker and destroy the node (safe in any state)."""
        self._stop_worker()
        self.destroy_node()

    # -- input ----------------------------------------------------------------------------------
    def _offer(self, msg, compressed: bool) -> None:
        """Subscription callback: keep only the newest frame for the worker."""
        frame = Frame(msg, compressed, time.monotonic())
        with self._cond:
            dropped = self._slot is not None
            self._slot = frame
            self._cond.notify()
        self.stats.add(received=1, dropped=int(dropped))

    def _on_camera_info(self, info: CameraInfo) -> None:
        if k_from_camera_info(info, int(info.width), int(info.height)) is None:
            self.stats.add(bad_camera_info=1)
            self.get_logger().warning(
                "Ignoring CameraInfo with an unusable K (zero, negative or NaN focal length); "
                "using fov_deg until a valid one arrives.", throttle_duration_sec=WARN_PERIOD_S)
            self._camera_info = None
        else:
            self._camera_info = info

    # -- worker ---------------------------------------------------------------------------------
    def _start_worker(self) -> None:
        self._stop_worker()
        self._stop = False
        self._worker = threading.Thread(target=self._work, name="lighthmr_inference", daemon=True)
        self._worker.start()

    def _stop_worker(self) -> None:
        with self._cond:
            self._stop = True
            self._slot = None
            self._cond.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join()
        self._worker = None

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._slot is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                frame, self._slot = self._slot, None
            try:
                self._process(frame)
            except Exception as exc:  # a frame must never take the node down
                self.stats.add(errors=1)
                self.get_logger().error(f"Processing a frame failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=WARN_PERIOD_S)

    def _process(self, frame: Frame) -> None:
        s = self.settings
        markers_pub, debug_pub = self._pubs["markers"], self._pubs["debug_image"]
        want_markers = s.publish_markers and markers_pub.get_subscription_count() > 0
        want_debug = s.publish_debug_image and debug_pub.get_subscription_count() > 0
        try:
            rgb = compressed_msg_to_rgb(frame.msg) if frame.compressed else image_msg_to_rgb(frame.msg)
            height, width = rgb.shape[:2]
            k = k_from_camera_info(self._camera_info, width, height)
            k_source = "camera_info"
            if k is None:
                k, k_source = np.asarray(self.predictor.default_K(width, height, s.fov_deg), np.float64), "fov_deg"
            humans = self.predictor.predict(
                rgb, K=k, fov_deg=s.fov_deg, det_threshold=s.detection_threshold, nms_kernel=s.nms_kernel_size or None,
                max_humans=s.max_humans, with_vertices=s.publish_vertices or want_markers or want_debug)
        except ImageError as exc:
            self.stats.add(rejected=1)
            self.get_logger().warning(f"Rejected an image: {exc}", throttle_duration_sec=WARN_PERIOD_S)
            return
        header = frame.msg.header
        if s.tracking:
            self.tracker.gate_m, self.tracker.max_age_s = s.tracking_gate_m, s.tracking_max_age_s
            stamp = header.stamp.sec + 1e-9 * header.stamp.nanosec
            humans = self.tracker.update(humans, stamp if stamp > 0 else self.get_clock().now().nanoseconds * 1e-9)
        else:
            humans = [dataclasses.replace(h, id=0) for h in humans]  # HumanMesh: 0 = not tracked
        latency = time.monotonic() - frame.received
        self._pubs["humans"].publish(humans_to_msg(
            humans, header, k, self.predictor.body_model_name, width, height, s.publish_vertices, latency))
        if want_markers:
            markers_pub.publish(humans_to_markers_cdr(  # serialised bytes: no Python object per point
                humans, header, self.predictor.faces, self.predictor.joint_parents, s.marker_decimation))
        if want_debug:
            drawn = render_overlay(rgb, humans, k, joint_parents=self.predictor.joint_parents, alpha=0.6, mesh="points")
            debug_pub.publish(rgb_to_image_msg(drawn, header))
        self.stats.frame_done(latency, len(humans), k_source)

    # -- diagnostics ----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        p = self.predictor
        extra = {"device": str(p.device) if p else "none", "body_model": p.body_model_name if p else "none",
                 "state": "active" if self._worker is not None else "inactive"}
        self._diag_pub.publish(self.stats.report(
            f"{self.get_fully_qualified_name()}: human mesh detection", extra["device"], extra))


def main(args: list[str] | None = None) -> int:
    """Entry point of ``detect_node`` and ``lighthmr-detect``."""
    rclpy.init(args=args)
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
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (LightHMRError, ParameterException) as exc:
        hint = " (give doubles with a decimal point, e.g. 70.0)" if isinstance(exc, InvalidParameterTypeException) else ""
        print(f"lighthmr-detect: {exc}{hint}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            node.close()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
