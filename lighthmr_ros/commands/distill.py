"""``lighthmr distill CONFIG``: the training engine with a required ``teacher`` section.

``lighthmr distill --unlabelled PATH --teacher NAME_OR_CHECKPOINT [CONFIG]``: distil on your own footage
(a folder of images, a video, or a bag's image topic with ``--topic``): the Anny teacher labels every
frame once, then the student trains on those labels (lighthmr_ros/training/unlabelled.py). Without
CONFIG the student and schedule are the bundled model's (``synthetic_anny``) with ``UNLABELLED_DEFAULTS``.
"""

from __future__ import annotations

import argparse
import json

from lighthmr_ros.commands import train as _train

# On top of synthetic_anny (the bundled student: Anny body, 192 px) when no CONFIG is given. The phenotypes
# are a direct output of the teacher, as trustworthy as its joints; at the default weight 0.5 the 3-D joint
# term (5.0) bends them out of Anny's [0, 1] range to fit the teacher's joints.
UNLABELLED_DEFAULTS = [
    "run.output_dir=runs/unlabelled_distill",
    "data.train.0.root=pseudo",  # both replaced by the pseudo-labels (unlabelled.distill_unlabelled)
    "data.val.0.root=pseudo",
    "loss.shape=5.0",
    "run.device=auto",
    "run.threads=0",
    "run.amp=auto",
]


def configure(parser: argparse.ArgumentParser) -> None:
    _train.configure(parser)
    for action in parser._actions:  # CONFIG is optional with --unlabelled (bundled unlabelled_distill)
        if action.dest == "config":
            action.nargs = "?"
            action.default = None
    own = parser.add_argument_group("distil on unlabelled footage")
    own.add_argument(
        "--unlabelled",
        metavar="PATH",
        help="a folder of images, a video file, or a rosbag (with --topic): the teacher's pseudo-labels "
        "of these frames are the only supervision",
    )
    own.add_argument("--topic", help="the bag's image topic (sensor_msgs/Image or CompressedImage)")
    own.add_argument(
        "--teacher",
        default="multiHMR_672_L_anny",
        help="the Anny teacher: a checkpoint path or download name (default multiHMR_672_L_anny; "
        "`lighthmr download` it first), or an architecture name (multihmr_anny_vits14 ...: random weights)",
    )
    own.add_argument("--teacher-size", type=int, help="input size of a random-weight teacher (a multiple of 14)")
    own.add_argument("--every", type=int, default=1, help="take every N-th frame (default 1)")
    own.add_argument("--max-frames", type=int, help="label at most this many frames")
    own.add_argument("--max-people", type=int, default=20, help="the teacher's people per frame at most")
    own.add_argument("--det-threshold", type=float, default=0.5, help="the teacher's detection threshold (default 0.5)")


def run(args: argparse.Namespace) -> int:
    from lighthmr_ros.errors import ConfigError

    if not getattr(args, "unlabelled", None):
        if args.config is None:
            raise ConfigError("lighthmr distill needs a CONFIG, or --unlabelled PATH to distil on your own footage")
        if args.topic:
            raise ConfigError("--topic goes with --unlabelled BAG")
        return _train.run(args, distill=True)
    from lighthmr_ros.training import config_path
    from lighthmr_ros.training.config import load_config
    from lighthmr_ros.training.unlabelled import PseudoLabelSettings, distill_unlabelled

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"run.output_dir={args.output_dir}")
    if args.no_resume:
        overrides.append("run.resume=false")
    if args.config is None:
        cfg = load_config(config_path("synthetic_anny"), UNLABELLED_DEFAULTS + overrides)
        cfg.name = "unlabelled_distill"
    else:
        cfg = load_config(config_path(args.config), overrides)
    settings = PseudoLabelSettings(
        det_threshold=args.det_threshold,
        max_people=args.max_people,
        every=args.every,
        max_frames=args.max_frames,
        topic=args.topic,
    )
    summary = distill_unlabelled(cfg, args.unlabelled, args.teacher, args.teacher_size, settings)
    print(json.dumps(summary, indent=2))
    return 0
