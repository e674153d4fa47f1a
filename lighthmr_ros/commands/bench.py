"""``lighthmr bench``: student and teacher side by side (size, GFLOPs, stage latencies, memory)."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[448, 672], help="network input sizes (default: 448 672)"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument("--markdown", metavar="OUT", help="also write the table and ratios as Markdown to OUT")
    parser.add_argument("--params", action="store_true", help="only print parameter counts per config and exit")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards per model (median reported; default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards per model first (default 2)")
    parser.add_argument("--persons", type=int, default=4, help="persons reconstructed per forward (default 4)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--checkpoint", help="a student checkpoint to time instead of the untrained student")
    parser.add_argument("--no-teacher", action="store_true", help="skip the teacher")
    parser.add_argument(
        "--no-smplx-student", action="store_true", help="skip the student with the (synthetic) SMPL-X body"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument(
        "--node",
        action="store_true",
        help="also time the ROS detect node (image in -> message out over DDS) against the Predictor (first size)",
    )
    parser.add_argument("--node-frames", type=int, default=10, help="frames sent to the node (default 10)")
    parser.add_argument("--only-node", action="store_true", help="time only the node against the Predictor")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="also time the student without the model rewrites (BatchNorm folding, channels_last, "
        "written-out attention, oneDNN linears)",
    )
    parser.add_argument("--onnx", action="store_true", help="also time the student on onnxruntime, fp32 and int8")
    parser.add_argument(
        "--fp16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time fp16 (default: on when CUDA is used)",
    )
    parser.add_argument(
        "--anny-teacher",
        nargs="+",
        choices=("s", "b", "l"),
        help="also time the Multi-HMR-Anny teacher ViT-S/B/L (random weights, its own FOV; fp32; ViT-L is slow)",
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="also time bf16 autocast, student and teacher (on the CPU it pays off only with native bf16: "
        "AVX512-BF16 or AMX)",
    )


def run(args: argparse.Namespace) -> int:
    from lighthmr_ros.errors import ConfigError

    if args.params:
        from lighthmr_ros.model import print_param_counts

        print_param_counts()
        return 0
    if args.repeats < 1 or args.warmup < 0 or args.persons < 1:
        raise ConfigError("--repeats and --persons must be at least 1 and --warmup at least 0")
    bad = [s for s in args.sizes if s <= 0 or s % 32 or ((not args.no_teacher or args.anny_teacher) and s % 14)]
    if bad:
        raise ConfigError(
            f"input sizes {bad} do not fit: use multiples of 32 (student) and of 14 (teacher), e.g. 448 or 672"
        )
    from lighthmr_ros.benchmark import BenchOptions, format_table, machine_info, run_bench, write_json

    progress = lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    if args.only_node:
        result = {"machine": machine_info(), "node": _node(args, progress)}
        if args.json:
            print(f"wrote {write_json(result, args.json)}")
        return 0
    options = BenchOptions(
        sizes=tuple(args.sizes),
        repeats=args.repeats,
        warmup=args.warmup,
        persons=args.persons,
        threads=args.threads,
        device=args.device,
        include_teacher=not args.no_teacher,
        include_student_smplx=not args.no_smplx_student,
        onnx=args.onnx,
        fp16=args.fp16,
        bf16=args.bf16,
        checkpoint=args.checkpoint,
        memory=not args.no_memory,
        plain=args.plain,
        anny_teachers=tuple(args.anny_teacher or ()),
    )
    result = run_bench(options, progress=progress)
    print(format_table(result))
    if args.node:
        result["node"] = _node(args, progress)
    if args.json:
        print(f"wrote {write_json(result, args.json)}")
    if args.markdown:
        from pathlib import Path

        from lighthmr_ros.benchmark import markdown_table

        Path(args.markdown).write_text(markdown_table(result) + "\n")
        print(f"wrote {args.markdown}")
    return 0


def _node(args: argparse.Namespace, progress) -> dict:
    try:
        from lighthmr_ros.ros.latency_bench import NodeLatencyOptions, format_node_latency, measure_node_latency
    except ImportError as exc:
        from lighthmr_ros.errors import ConfigError

        raise ConfigError(
            f"--node needs ROS 2 (rclpy) and the built messages ({exc}); run `make test` once to set them up"
        ) from exc
    options = NodeLatencyOptions(
        frames=args.node_frames, image_size=args.sizes[0], persons=args.persons, threads=args.threads
    )
    r = measure_node_latency(options, progress=progress)
    print(format_node_latency(r))
    return r
