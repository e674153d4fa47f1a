"""`lighthmr bag INPUT OUTPUT --image-topic T`: a recorded bag in, a bag with human meshes out."""
from __future__ import annotations

import argparse
import signal

from lighthmr_ros.commands import add_model_arguments, model_arguments
from lighthmr_ros.commands.predict import _fov  # degrees or "auto", as `lighthmr predict --fov`
from lighthmr_ros.ros.fov_estimate import DEFAULT_SETTLE_FRAMES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the model on every image of a recorded bag (rosbag2 sqlite3/mcap, .mcap/.db3 file, ROS 1 .bag) "
        "and write a new rosbag2 with HumanMeshArray, MarkerArray and MeshTopology stamped like the images. "
        "The input is never modified; OUTPUT appears only when the run completes."
    )
    parser.add_argument("input", help="input bag: rosbag2 folder, .mcap or .db3 file, or ROS 1 .bag")
    parser.add_argument("output", help="output rosbag2 folder (must not exist unless --overwrite)")
    parser.add_argument("--image-topic", required=True, nargs="+", action="extend", metavar="TOPIC",
                        help="sensor_msgs/Image or CompressedImage topic; several (one per camera) run in batches "
                             "and each camera gets its own output topics (<namespace>/<camera>/humans, ...)")
    parser.add_argument("--depth-topic", nargs="+", action="extend", default=[], metavar="TOPIC",
                        help="aligned depth image topics (16UC1 mm or 32FC1 m), one per image topic: correct each "
                             "person's distance with them (depth fusion, as the node's depth_fusion)")
    parser.add_argument("--batch-window", type=float, default=0.05, metavar="S",
                        help="with several image topics: images logged this close together form one batch")
    parser.add_argument(
        "--camera-info-topic", default=None,
        help="CameraInfo topic (default: <camera>/camera_info when present; 'none': use --fov)",
    )
    parser.add_argument("--compressed", choices=("auto", "true", "false"), default="auto",
                        help="image transport: auto follows the topic type and finds <topic>/compressed")
    parser.add_argument("--copy-topics", default="all", metavar="all|none|T1,T2",
                        help="input topics copied unchanged into the output (default: all)")
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3", help="output storage format")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT bag")
    model = parser.add_argument_group("model")
    add_model_arguments(model)
    model.add_argument("--det-threshold", type=float, default=0.5, help="detection score threshold")
    model.add_argument("--max-humans", type=int, default=20)
    model.add_argument("--fov", type=_fov, default="auto",
                       help="field of view across the larger side without CameraInfo, degrees or 'auto' (default): "
                            "the model's own estimate when it has one (Anny teacher), else 60")
    model.add_argument("--fov-estimate", choices=("stable", "per_frame"), default="stable",
                       help="with --fov auto and a model that estimates its camera: stable (default; one field of "
                            "view per camera, the median of the first --fov-estimate-frames frames holding a "
                            "person, then fixed; the frames before use the median so far) or per_frame (each "
                            "frame's own estimate: K and every distance jitter)")
    model.add_argument("--fov-estimate-frames", type=_positive_int, default=DEFAULT_SETTLE_FRAMES, metavar="N",
                       help=f"with --fov-estimate stable: frames in the median (default {DEFAULT_SETTLE_FRAMES})")
    out = parser.add_argument_group("output")
    out.add_argument("--namespace", default="/lighthmr", help="namespace of the output topics (default /lighthmr)")
    out.add_argument("--no-vertices", action="store_true", help="leave mesh vertices out of HumanMeshArray")
    out.add_argument("--no-markers", action="store_true", help="write no MarkerArray")
    out.add_argument("--marker-decimation", type=int, default=8, help="markers show about 1/N of the mesh triangles")
    out.add_argument("--no-tracking", action="store_true", help="leave track ids at 0")
    out.add_argument("--tf", action="store_true", help="write each tracked person as TF frame body_<id> on /tf")
    out.add_argument("--tf-head-frames", action="store_true", help="with --tf: also head_<id>")
    out.add_argument("--tf-prefix", default="", help="with --tf: put before every person frame (e.g. robot1/)")
    out.add_argument("--points", action="store_true",
                     help="write <namespace>/human_points: the people as one PointCloud2 (x, y, z, id) per image")
    out.add_argument("--points-voxel", type=float, default=0.05, metavar="M",
                     help="voxel size thinning the point cloud (metres; 0: every vertex)")
    out.add_argument("--smoothing", action="store_true", help="One-Euro filter per track (steadier meshes)")
    out.add_argument("--quiet", action="store_true", help="no progress bar")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _interrupt_on_sigterm() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt, so Ctrl-C and `kill` clean up the staged output.

    Set explicitly: a process can inherit SIGINT ignored (started with `&` from a script or by nohup)
    or blocked (the signal mask survives exec), and would then finish or hang instead of stopping.
    """

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass


def run(args: argparse.Namespace) -> int:
    from lighthmr_ros.bag import InputOptions, ModelOptions, OutputOptions, process_bag
    from lighthmr_ros.ros.pipeline import PipelineOptions

    _interrupt_on_sigterm()
    model = ModelOptions(**model_arguments(args))
    predictor = None
    tf = None
    if args.tf:
        from lighthmr_ros.ros.tf_frames import FrameOptions, head_options

        tf = FrameOptions(prefix=args.tf_prefix)
        if args.tf_head_frames:  # head frames need the body model's skeleton: build the model first
            predictor = model.build()
            tf = head_options(predictor.model.body.spec, args.tf_prefix)
    depth = None
    if args.depth_topic:
        from lighthmr_ros.depth_fusion import DepthFusionParams

        depth = DepthFusionParams()
    smoothing = None
    if args.smoothing:
        from lighthmr_ros.smoothing import SmoothingParams

        smoothing = SmoothingParams()
    summary = process_bag(
        args.input,
        args.output,
        args.image_topic[0] if len(args.image_topic) == 1 else args.image_topic,
        topics=InputOptions(camera_info_topic=args.camera_info_topic, compressed=args.compressed,
                            copy_topics=args.copy_topics, batch_window_s=args.batch_window,
                            depth_topics=args.depth_topic),
        writing=OutputOptions(storage=args.storage, overwrite=args.overwrite, namespace=args.namespace),
        options=PipelineOptions(det_threshold=args.det_threshold, max_humans=args.max_humans, fov_deg=args.fov,
                                fov_estimate=args.fov_estimate, fov_estimate_frames=args.fov_estimate_frames,
                                publish_vertices=not args.no_vertices, markers=not args.no_markers,
                                marker_decimation=args.marker_decimation, tracking=not args.no_tracking, tf=tf,
                                points_voxel_m=args.points_voxel if args.points else None, smoothing=smoothing,
                                depth=depth),
        model=model,
        predictor=predictor,
        progress=not args.quiet,
    )
    print(f"lighthmr bag: {summary}")
    if summary.largest_batch > 1:
        print(f"  batches of up to {summary.largest_batch} images (one per camera)")
    for topic, count in sorted(summary.topics.items()):
        print(f"  {topic}: {count} messages")
    for topic, label in sorted(summary.estimated_fov.items()):
        print(f"  {topic}: last frame's {label}")
    return 0
