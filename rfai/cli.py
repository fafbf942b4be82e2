"""Command-line entry points; the scripts at the top level only call these."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rfai.config import ConfigError, load_config


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_rfai.py",
        description="Teacher-student GRPO training of a code model on MLX.",
    )
    parser.add_argument(
        "--config", default="config.yaml", help="YAML config (default: %(default)s)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key, e.g. --set training.steps=50 (repeatable)",
    )
    parser.add_argument("--model", help="student model: a Hub id or a local folder")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in training.output_dir",
    )
    return parser


def train_main(argv: Sequence[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    try:
        config = load_config(args.config, args.overrides, model=args.model)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    # Imported late so that config errors are reported without loading MLX.
    from rfai.student import StudentLoadError
    from rfai.tasks import TaskFormatError
    from rfai.trainer import Trainer, TrainingError

    try:
        trainer = Trainer(config, resume=args.resume)
    except (StudentLoadError, TaskFormatError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    trainer.train()
    return 0
