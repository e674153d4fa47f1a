"""`lighthmr synth --out DIR --n N [--seed S]`: render synthetic multi-person Anny scenes."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Render N random scenes of 1-6 Anny people (children to elders, poses within joint limits, "
        "occlusions, "
        "random camera and lighting, backgrounds from photos shipped in installed packages) on the CPU, with "
        "annotations that `--dataset synthetic` reads and the true depth map of each scene (16-bit "
        "millimetres, like an RGB-D camera's aligned depth; format: lighthmr_ros/synth/format.py). "
        "A scene depends only on (seed, index): the same seed gives the same files."
    )
    parser.add_argument("--out", required=True, help="output folder (created; scenes are added or replaced)")
    parser.add_argument("--n", type=int, required=True, help="number of scenes")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--start", type=int, default=0, help="index of the first scene (to extend a folder)")
    parser.add_argument("--size", type=int, nargs="+", default=[448], metavar="PX",
                        help="image size: one value (square) or WIDTH HEIGHT (default 448)")
    parser.add_argument("--min-people", type=int, default=1)
    parser.add_argument("--max-people", type=int, default=6)
    parser.add_argument("--fov", type=float, nargs=2, default=(40.0, 75.0), metavar=("MIN", "MAX"),
                        help="field-of-view range over the larger image side, degrees (default 40 75)")
    parser.add_argument("--min-visible", type=float, default=0.2,
                        help="people less visible than this share are left out of the scene (default 0.2)")
    parser.add_argument("--with-vertices", action="store_true", help="also store mesh vertices (float16)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from lighthmr_ros.errors import ConfigError
    from lighthmr_ros.synth import SynthConfig, generate_scenes

    if len(args.size) not in (1, 2) or min(args.size) < 32:
        raise ConfigError("--size takes one value or WIDTH HEIGHT, each at least 32 pixels.")
    width, height = (args.size[0], args.size[0]) if len(args.size) == 1 else args.size
    if args.n < 1 or args.start < 0:
        raise ConfigError("--n must be at least 1 and --start at least 0.")
    if not 1 <= args.min_people <= args.max_people:
        raise ConfigError("--min-people must be at least 1 and at most --max-people.")
    if not 1.0 <= args.fov[0] <= args.fov[1] < 170.0:
        raise ConfigError("--fov takes MIN MAX degrees with 1 <= MIN <= MAX < 170.")
    config = SynthConfig(width=width, height=height, min_people=args.min_people, max_people=args.max_people,
                         fov_deg=tuple(args.fov), min_visible=args.min_visible,
                         with_vertices=args.with_vertices)
    report = generate_scenes(args.out, args.n, seed=args.seed, config=config, progress=not args.quiet,
                             start=args.start, workers=args.workers)
    print(f"wrote {report['scenes']} scenes ({report['people']} people) to {report['folder']}: "
          f"{report['seconds_per_scene']:.2f} s per scene, {report['wall_seconds']:.1f} s in all")
    return 0
