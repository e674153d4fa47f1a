"""``lighthmr distill CONFIG``: the training engine with a required ``teacher`` section."""

from __future__ import annotations

import argparse

from lighthmr_ros.commands import train as _train


def configure(parser: argparse.ArgumentParser) -> None:
    _train.configure(parser)


def run(args: argparse.Namespace) -> int:
    return _train.run(args, distill=True)
