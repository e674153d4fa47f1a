"""``lighthmr rehearse CONFIG``: a shipped config run as shipped under torchrun, killed and resumed."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        help="stage config: bedlam_distill, 3dpw_finetune, agora_finetune, synthetic_anny or a YAML path",
    )
    parser.add_argument("--out", default="runs/rehearsal", help="folder for the generated data and the run")
    parser.add_argument("--image-size", type=int, default=64, help="student input size (multiple of 32)")
    parser.add_argument("--teacher-size", type=int, default=56, help="teacher input size (multiple of 14)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--ckpt-every", type=int, default=2)
    parser.add_argument("--kill-after", type=int, default=3, help="SIGKILL once this step is logged")
    parser.add_argument("--nproc", type=int, default=2, help="processes (torchrun --nproc_per_node)")
    parser.add_argument(
        "--workers", type=int, default=0, help="data.num_workers per rank (default 0; -1: as shipped)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="run.threads per rank (default 1; -1: as shipped)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per launch at most")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lighthmr_ros.training.rehearsal import RehearsalOptions, rehearse

    opt = RehearsalOptions(
        image_size=args.image_size,
        teacher_size=args.teacher_size,
        steps=args.steps,
        ckpt_every=args.ckpt_every,
        kill_after=args.kill_after,
        nproc=args.nproc,
        workers=None if args.workers < 0 else args.workers,
        threads=None if args.threads < 0 else args.threads,
        timeout_s=args.timeout,
    )
    name = Path(args.config).stem
    result = rehearse(args.config, Path(args.out) / name, opt)
    print(json.dumps(asdict(result), indent=2))
    return 0
