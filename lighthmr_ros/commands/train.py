"""``lighthmr train CONFIG``: train or fine-tune from a YAML stage config (resumes by default)."""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        help="YAML stage config (path, or a bundled name: bedlam_distill, 3dpw_finetune, agora_finetune)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set run.max_steps=100 (repeatable)",
    )
    parser.add_argument("--output-dir", help="shortcut for --set run.output_dir=DIR")
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="start over even if the output folder holds a checkpoint (an old log.csv and tb/ are moved "
        "to log.csv.N.bak and tb.N.bak)",
    )


def run(args: argparse.Namespace, distill: bool = False) -> int:
    from lighthmr_ros.training import config_path
    from lighthmr_ros.training.config import load_config
    from lighthmr_ros.training.train import train

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"run.output_dir={args.output_dir}")
    if args.no_resume:
        overrides.append("run.resume=false")
    cfg = load_config(config_path(args.config), overrides)
    summary = train(cfg, distill=distill)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return 0
