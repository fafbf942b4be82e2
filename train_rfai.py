"""Train a student code model against a teacher with GRPO (see README "Quick start")."""

from rfai.cli import train_main

if __name__ == "__main__":
    raise SystemExit(train_main())
