"""Command-line entry points; the scripts at the top level only call these."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rfai.config import Config, ConfigError
from rfai.config_load import load_config


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
    parser.add_argument(
        "--strict",
        action="store_true",
        help="a bad task record is fatal (default: skipped, counted and reported); the same "
        "as --set data.strict=true",
    )
    return parser


def train_config(args: argparse.Namespace) -> Config:
    """The run's config from parsed arguments.

    `--strict` is sugar for `--set data.strict=true`, so the saved config of a strict run says
    ``strict: true``.
    """
    overrides = [*args.overrides, "data.strict=true"] if args.strict else args.overrides
    return load_config(args.config, overrides, model=args.model)


def train_main(argv: Sequence[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    try:
        config = train_config(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    # Imported late so that config errors are reported without loading MLX.
    from rfai.dataset_schema import DatasetValidationError
    from rfai.hub import HubError
    from rfai.interrupt import RunInterrupted, aborted_message
    from rfai.run import TrainingError, build_run
    from rfai.student import StudentLoadError
    from rfai.tasks import TaskFormatError
    from rfai.teachers import TeacherError
    from rfai.trainer import train

    try:
        run = build_run(config, resume=args.resume)
    except (StudentLoadError, TaskFormatError, TrainingError, TeacherError, HubError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted before training started", file=sys.stderr)
        return 130
    try:
        train(run)
    except (TeacherError, HubError, DatasetValidationError, TrainingError) as exc:
        # Training itself is saved (checkpoints, adapter, rows); say what failed after it.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RunInterrupted as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(aborted_message(run.paths.output_dir, last_checkpoint(run)), file=sys.stderr)
        return 130
    return 0


def last_checkpoint(run) -> Path | None:
    """The checkpoint a --resume of `run` would start from (None: none, or unreadable)."""
    from rfai.checkpoint import CheckpointError, latest_checkpoint

    try:
        return latest_checkpoint(run.paths.checkpoints)
    except CheckpointError:
        return None


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export_datasets.py",
        description="Validate the dataset folder, regenerate its card and upload it to the "
        "Hugging Face Hub in one commit.",
    )
    parser.add_argument("--dataset_dir", default="./datasets", help="default: %(default)s")
    parser.add_argument("--repo_id", required=True, help="dataset repo, ORG/NAME")
    parser.add_argument(
        "--hf_token", help="Hub token (default: $HUGGINGFACE_TOKEN, then $HF_TOKEN)"
    )
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument(
        "--run_dir",
        help="run folder whose config.yaml the card documents (default: the copy a "
        "previous card left in the dataset folder)",
    )
    parser.add_argument(
        "--dry-run",
        "--dry_run",
        dest="dry_run",
        action="store_true",
        help="validate and write the card, print what would be uploaded, upload nothing",
    )
    return parser


def export_main(argv: Sequence[str] | None = None) -> int:
    args = export_parser().parse_args(argv)
    from rfai.dataset_schema import DatasetValidationError
    from rfai.hub import HubError, export_dataset

    try:
        private = args.private
        if args.run_dir is not None:
            # huggingface.private of the run's config counts as much as --private.
            run_config = load_config(Path(args.run_dir) / "config.yaml")
            private = private or run_config.huggingface.private
        export_dataset(
            args.dataset_dir,
            args.repo_id,
            cli_token=args.hf_token,
            private=private,
            dry_run=args.dry_run,
            run_dir=args.run_dir,
        )
    except (ConfigError, DatasetValidationError, HubError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def upload_model_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rfai.upload_model",
        description="Push a finished run's adapter (and optionally the fused model) with a "
        "generated model card to a Hub model repo, in one commit.",
    )
    parser.add_argument("--run_dir", required=True, help="training.output_dir of the run")
    parser.add_argument("--repo_id", required=True, help="model repo, ORG/NAME")
    parser.add_argument(
        "--hf_token", help="Hub token (default: $HUGGINGFACE_TOKEN, then $HF_TOKEN)"
    )
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument(
        "--fuse", action="store_true", help="also push the fused model (mlx_lm fuse) as fused/"
    )
    parser.add_argument("--dataset_repo_id", help="training data repo named in the card")
    parser.add_argument(
        "--dry-run",
        "--dry_run",
        dest="dry_run",
        action="store_true",
        help="build the card (and fused model), print what would be uploaded, upload nothing",
    )
    return parser


def upload_model_main(argv: Sequence[str] | None = None) -> int:
    args = upload_model_parser().parse_args(argv)
    from rfai.hub import HubError, upload_model

    try:
        config = load_config(Path(args.run_dir) / "config.yaml")
        upload_model(
            args.run_dir,
            args.repo_id,
            base_model=config.student.path,
            cli_token=args.hf_token,
            private=args.private or config.huggingface.private,
            fuse=args.fuse,
            dataset_repo_id=args.dataset_repo_id,
            dry_run=args.dry_run,
        )
    except (ConfigError, HubError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rfai.evaluate",
        description="Sample and score tasks with a model (and adapter), as training's "
        "evaluation pass does, and print per language pass@1, pass@k, reward and each "
        "criterion's mean score; with --compare-adapter-path, two models side by side.",
    )
    parser.add_argument("--model", required=True, help="base model: a folder or a Hub id")
    parser.add_argument("--adapter-path", help="adapter folder (default: the base model)")
    parser.add_argument(
        "--compare-adapter-path", help="a second adapter to evaluate and compare with the first"
    )
    parser.add_argument(
        "--data", required=True, help="task source, as data.evaluation_file accepts"
    )
    parser.add_argument("--samples", type=int, help="samples per task (default: config's)")
    parser.add_argument("--temperature", type=float, help="default: evaluation.temperature")
    parser.add_argument(
        "--config", help="teacher, scoring and rollout settings (default: rfai's defaults)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--output-dir", default="evaluation", help="rows go to OUTPUT_DIR/<model>/evaluation.jsonl"
    )
    return parser


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    args = evaluate_parser().parse_args(argv)
    overrides = list(args.set)
    if args.samples is not None:
        overrides.append(f"evaluation.samples_per_task={args.samples}")
    if args.temperature is not None:
        overrides.append(f"evaluation.temperature={args.temperature}")
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    from rfai.evaluation import evaluate_model, language_report, report_table
    from rfai.student import StudentLoadError
    from rfai.task_sources import load_task_source
    from rfai.tasks import TaskFormatError
    from rfai.teachers import TeacherError

    adapters = [args.adapter_path]
    if args.compare_adapter_path:
        adapters.append(args.compare_adapter_path)
    labels = [_model_label(a) for a in adapters]
    if len(set(labels)) != len(labels):
        print(f"error: both models are {labels[0]!r}; compare two different ones", file=sys.stderr)
        return 2
    reports = {}
    try:
        loaded = load_task_source(args.data)
        if not loaded.tasks:
            print(f"error: {args.data}: no task to evaluate", file=sys.stderr)
            return 2
        k = config.evaluation.samples_per_task
        for adapter, label in zip(adapters, labels, strict=True):
            out = Path(args.output_dir) / label
            rows = evaluate_model(config, loaded.tasks, args.model, adapter, out, print)
            print(f"{label}: {len(rows)} rows in {out / 'evaluation.jsonl'}")
            reports[label] = language_report(rows, k)
    except (StudentLoadError, TaskFormatError, TeacherError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report_table(reports))
    return 0


def _model_label(adapter: str | None) -> str:
    """A folder name for a model's rows: `base`, or the adapter path made flat."""
    if adapter is None:
        return "base"
    return "_".join(p for p in Path(adapter).resolve().parts[-2:] if p not in ("/", ""))
