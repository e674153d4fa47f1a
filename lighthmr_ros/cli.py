"""The ``lighthmr`` command: one sub-command per module in lighthmr_ros.commands.

Each sub-command module defines ``configure(parser)`` and ``run(args) -> int``; its one-line
help lives here, in SUBCOMMANDS (the one place), because modules are imported only when their
sub-command runs, so ``lighthmr --help`` stays fast and ``lighthmr serve`` never imports rclpy.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from lighthmr_ros.errors import LightHMRError

# name -> one-line help; lighthmr_ros/commands/<name>.py implements it
SUBCOMMANDS = {
    "predict": "images -> JSON, meshes and overlays",
    "bag": "rosbag2 in -> rosbag2 out with HumanMeshArray and markers",
    "serve": "browser demo (FastAPI)",
    "train": "train or fine-tune a model from a YAML config",
    "distill": "teacher-student distillation from a YAML config",
    "rehearse": "a shipped training config as shipped, on generated data, under torchrun: killed, resumed",
    "evaluate": "metrics on a data set (MPJPE, PA-MPJPE, PVE, PA-PVE, F1)",
    "synth": "render synthetic multi-person scenes with the Anny body model",
    "export": "export the network to ONNX",
    "bench": "side-by-side speed and size of student and teacher",
    "download": "fetch an official Multi-HMR checkpoint (e.g. multiHMR_672_L_anny) into the cache",
}


def _module(name: str):
    return importlib.import_module(f"lighthmr_ros.commands.{name.replace('-', '_')}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lighthmr", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, help_text in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # configure only the sub-command being run
            _module(name).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        if hasattr(args, "checkpoint") and hasattr(args, "onnx_dir"):  # runs a model: is it the demo one?
            from lighthmr_ros.model.checkpoint import planned_model_notice

            notice = planned_model_notice(args.checkpoint, getattr(args, "config", None))
            if notice:
                print(f"lighthmr {args.command}: note: {notice}", file=sys.stderr)
        return int(_module(args.command).run(args) or 0)
    except LightHMRError as exc:
        if args.verbose:
            raise
        print(f"lighthmr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lighthmr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
