"""`config.yaml` and the README's key table, generated from the config dataclasses.

Every key's default is its dataclass field's default and its help is the field's
`metadata["help"]` (`rfai.config.key`), so the docs cannot drift from the code. `main` is
`python -m rfai.config --dump yaml|readme` (print one), `--write` (rewrite both in the
repository) and `--check` (exit 1 when a committed copy differs; tests/test_config.py checks
the same). The config is passed in (`rfai/config.py` runs `main(Config())`), so this module
never imports `rfai.config` and the entry point in that module makes no import cycle.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
README_TABLE_HEADER = "| section | keys and defaults |"
YAML_HEADER = """\
# rfai: the default run. `python train_rfai.py --config config.yaml` (or `make train`).
# Generated from rfai/config.py, where each key's default and help live: edit them there and
# run `python -m rfai.config --write` (a test fails while this file differs).
# Override any key with `--set section.key=value`; `--model` sets student.path.
# Unknown keys and wrong types are errors that name the key and the line.
"""
_COMMENT_COLUMN = 31  # where a key's one-line help starts, as in a hand-aligned YAML file
_WIDTH = 100


def _yaml_value(value: Any) -> str:
    """`value` as one line of YAML (flow style); "" rather than PyYAML's ''."""
    if value == "":
        return '""'
    # PyYAML's safe dumper has no tuples; a config's tuples are flat (tuple[str, ...]).
    plain = list(value) if isinstance(value, tuple) else value
    text = yaml.safe_dump(plain, default_flow_style=True, width=10**6, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _comment_block(doc: str, indent: str) -> list[str]:
    prefix = f"{indent}# "
    lines = []
    for paragraph in doc.split("\n"):
        lines += textwrap.wrap(
            paragraph,
            width=_WIDTH - 4,
            initial_indent=prefix,
            # A list item ("name: what it does") of a several-line help hangs under its name.
            subsequent_indent=prefix + ("  " if "\n" in doc and paragraph[:1].islower() else ""),
            break_long_words=False,
            break_on_hyphens=False,
        )
    return lines


def _yaml_lines(section: Any, depth: int) -> list[str]:
    indent = "  " * depth
    out: list[str] = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            out += [f"{indent}{f.name}:", *_yaml_lines(value, depth + 1)]
            continue
        doc = f.metadata["help"]
        if isinstance(value, dict) and value:
            head = [f"{indent}{f.name}:"]
            body = [f"{indent}  {k}: {_yaml_value(v)}" for k, v in value.items()]
        else:
            head, body = [f"{indent}{f.name}: {_yaml_value(value)}"], []
        inline = f"{head[0].ljust(_COMMENT_COLUMN - 2)}  # {doc}"
        if "\n" not in doc and len(inline) <= _WIDTH:
            out += [inline, *body]
        else:
            out += [*_comment_block(doc, indent), *head, *body]
    return out


def render_yaml(config: Any) -> str:
    """`config.yaml`: every key of `config` with its default and its help."""
    sections = [
        "\n".join([f"{f.name}:", *_yaml_lines(getattr(config, f.name), 1)])
        for f in dataclasses.fields(config)
    ]
    return YAML_HEADER + "\n" + "\n\n".join(sections) + "\n"


def render_readme_table(config: Any) -> str:
    """The README's key table: one row per section, each key with its default."""
    rows = [README_TABLE_HEADER, "|---|---|"]

    def walk(section: Any, name: str) -> None:
        values, nested = [], []
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if dataclasses.is_dataclass(value):
                nested.append((value, f"{name}.{f.name}"))
            else:
                shown = _yaml_value(value).replace("|", "\\|")
                values.append(f"{f.name} `{shown}`")
        rows.append(f"| `{name}` | {' · '.join(values)} |")
        for value, dotted in nested:
            walk(value, dotted)

    for f in dataclasses.fields(config):
        walk(getattr(config, f.name), f.name)
    return "\n".join(rows) + "\n"


def readme_with_table(readme: str, table: str) -> str:
    """`readme` with its key table (from README_TABLE_HEADER to the first non-table line)."""
    lines = readme.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == README_TABLE_HEADER]
    if len(starts) != 1:
        raise ValueError(
            f"README: expected one line {README_TABLE_HEADER!r} to place the key table after, "
            f"found {len(starts)}"
        )
    end = starts[0]
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "".join([*lines[: starts[0]], table, *lines[end:]])


def generated_files(config: Any, root: Path = REPO_ROOT) -> dict[Path, str]:
    """Each generated file under `root` and the text it must hold for `config`."""
    readme = root / "README.md"
    return {
        root / "config.yaml": render_yaml(config),
        readme: readme_with_table(readme.read_text(encoding="utf-8"), render_readme_table(config)),
    }


def main(config: Any, argv: Sequence[str] | None = None) -> int:
    """`python -m rfai.config`: dump, write or check the files generated from `config`."""
    parser = argparse.ArgumentParser(
        prog="python -m rfai.config",
        description="Generate config.yaml and the README's key table from rfai/config.py.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--dump", choices=("yaml", "readme"), help="print one to stdout")
    action.add_argument("--write", action="store_true", help="rewrite both in the repository")
    action.add_argument("--check", action="store_true", help="exit 1 if either is out of date")
    args = parser.parse_args(argv)
    if args.dump:
        print(render_yaml(config) if args.dump == "yaml" else render_readme_table(config), end="")
        return 0
    stale = []
    for path, text in generated_files(config).items():
        if path.read_text(encoding="utf-8") != text:
            stale.append(path)
            if args.write:
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        names = ", ".join(str(p) for p in stale)
        print(f"out of date: {names}; run `python -m rfai.config --write`", file=sys.stderr)
        return 1
    for path in stale if args.write else ():
        print(f"wrote {path}")
    return 0
