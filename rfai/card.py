"""Dataset and model cards: the README.md the Hub shows, generated from the files themselves.

Everything a card says is computed from the rows (sizes, languages, statistics, models) and
from the run's saved `config.yaml`. Cards are public, so every value taken from a config or a
row goes through `public_value`: secrets (keys named like tokens, values that look like Hub or
API tokens) are redacted and local absolute paths are cut to their last component.
`check_public` then refuses a card that still names this machine's home or working folder.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from rfai.dataset_schema import (
    FIELDS,
    PANDAS_DTYPES,
    SCORER_ERROR,
    read_rows,
    split_files,
    validate_folder,
)

CARD = "README.md"
# The run's config, made public, kept next to the rows so that a later export (without the
# run folder) still documents the config the rows came from.
PUBLIC_CONFIG = "rfai_config.yaml"
PLACEHOLDER_REPO = "ORG/NAME"

_SECRET_KEY = re.compile(r"token|secret|password|passwd|api_?key|credential", re.I)
_SECRET_VALUE = re.compile(r"\b(hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{16,})")
_ABSOLUTE = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")


def rfai_version() -> str:
    try:
        return importlib.metadata.version("rfai")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def public_value(value: Any, key: str = "") -> Any:
    """`value` with secrets redacted and local absolute paths reduced to `<local>/name`."""
    if isinstance(value, dict):
        return {k: public_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [public_value(v, key) for v in value]
    if not isinstance(value, str):
        return value
    if value and _SECRET_KEY.search(key):
        return "<redacted>"
    value = _SECRET_VALUE.sub("<redacted>", value)
    if _ABSOLUTE.match(value):
        name = Path(value.rstrip("/\\")).name
        return f"<local>/{name}"
    return value


def check_public(text: str, folder: Path) -> None:
    """Refuse a card that names a local folder of this machine or the token in use."""
    leaks = [str(Path.home()), str(Path.cwd()), str(folder.resolve())]
    leaks = [p for p in leaks if len(p) > 1 and p in text]
    for var in ("HUGGINGFACE_TOKEN", "HF_TOKEN"):
        if os.environ.get(var) and os.environ[var] in text:
            leaks.append(f"${var}")
    if leaks:
        raise ValueError(f"card would publish local paths or secrets: {leaks}")


def load_public_config(folder: Path, run_dir: str | Path | None) -> dict[str, Any] | None:
    """The run's config with secrets and local paths removed; saved into `folder` for later."""
    if run_dir is not None:
        source = Path(run_dir) / "config.yaml"
        if not source.is_file():
            raise FileNotFoundError(f"{source} does not exist: is {run_dir} an rfai run folder?")
    else:
        source = folder / PUBLIC_CONFIG
        if not source.is_file():
            return None
    config = public_value(yaml.safe_load(source.read_text()) or {})
    (folder / PUBLIC_CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M" if n < 1_000_000 else "1M<n<10M"


def _stats(values: list[float]) -> str:
    if not values:
        return "| – | – | – | – | – |"
    std = statistics.pstdev(values)
    cells = (statistics.fmean(values), std, min(values), statistics.median(values), max(values))
    return "| " + " | ".join(f"{v:.3f}" for v in cells) + " |"


# The name `datasets.load_dataset` gives each split file. A folder (local or on the Hub) is
# read by file-name convention, which maps `evaluation.jsonl` to the `test` split.
LOAD_DATASET_SPLIT = {"train": "train", "validation": "validation", "evaluation": "test"}


def front_matter(splits: dict[str, int], languages: list[str], license_id: str) -> dict:
    """Hub metadata. Deliberately no `configs:` section naming the split files.

    With `configs:`, `datasets` (5.2) keys its cache for a local folder on the patterns alone,
    not on the files' paths or modification times: loading the folder again after rows were
    appended returned the old rows, and another folder with the same name and card returned
    the first folder's rows. Without it, split files are found by name (evaluation.jsonl
    becomes `test`, see LOAD_DATASET_SPLIT) and the cache key holds each file's path and mtime.
    """
    return {
        "license": license_id,
        "pretty_name": "rfai teacher-student code samples",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["code", "reinforcement-learning", "grpo", "mlx", "rfai", *sorted(languages)],
        "size_categories": [size_category(sum(splits.values()))],
    }


def _summary(rows: dict[str, list[dict]]) -> list[str]:
    out = ["## Splits", "", "| split | rows | runs | steps | pass rate |", "|---|---|---|---|---|"]
    for split, rs in rows.items():
        steps = [r["step"] for r in rs]
        passed = sum(r["status"] == "passed" for r in rs) / len(rs)
        runs = len({r["run_id"] for r in rs})
        out.append(f"| {split} | {len(rs)} | {runs} | {min(steps)}–{max(steps)} | {passed:.2f} |")
    langs = sorted({r["language"] for rs in rows.values() for r in rs})
    out += ["", "## Languages", "", "| language | " + " | ".join(rows) + " |"]
    out.append("|---" * (len(rows) + 1) + "|")
    counts = {s: Counter(r["language"] for r in rs) for s, rs in rows.items()}
    out += [
        f"| {lang} | " + " | ".join(str(counts[s][lang]) for s in rows) + " |" for lang in langs
    ]
    out += ["", "## Scores and rewards", ""]
    out += ["| split | value | mean | std | min | median | max |", "|---|---|---|---|---|---|---|"]
    for split, rs in rows.items():
        for name in ("student_score", "teacher_score", "reward"):
            values = [float(r[name]) for r in rs if r[name] is not None]
            out.append(f"| {split} | `{name}` " + _stats(values))
    errors = {s: sum(r["status"] == SCORER_ERROR for r in rs) for s, rs in rows.items()}
    if any(errors.values()):
        counts = ", ".join(f"{n} in {s}" for s, n in errors.items() if n)
        out += ["", f"Rows with status `scorer_error` (scoring failed; no score): {counts}."]
    return out


def _models(rows: dict[str, list[dict]], config: dict | None) -> list[str]:
    every = [r for rs in rows.values() for r in rs]
    students = sorted({public_value(r["student_model"]) for r in every})
    teachers = sorted({public_value(r["teacher"]) for r in every})
    out = ["## Models and scoring", "", f"- Student model(s): {', '.join(students)}"]
    out.append(f"- Teacher(s): {', '.join(teachers)}")
    scoring = (config or {}).get("scoring")
    if scoring:
        weights = ", ".join(f"{k} {v}" for k, v in scoring.get("weights", {}).items())
        out.append(f"- Scoring weights: {weights}")
        floor, cap = scoring.get("teacher_floor"), scoring.get("reward_cap")
        out.append(
            f"- Reward rule: `{scoring.get('reward')}` (teacher_floor {floor}, reward_cap {cap})"
        )
    else:
        used = sorted({k for r in every for k in r["scoring_breakdown"]})
        out.append(f"- Scoring criteria: {', '.join(used)} (run config not available)")
    return out


def _usage(repo_id: str, splits: list[str]) -> list[str]:
    files = ", ".join(f'"{s}": "{s}.jsonl"' for s in splits)
    names = ", ".join(
        LOAD_DATASET_SPLIT[s] + ("" if LOAD_DATASET_SPLIT[s] == s else f" ({s}.jsonl)")
        for s in splits
    )
    dtypes = ",\n    ".join(f'"{k}": "{v}"' for k, v in PANDAS_DTYPES.items())
    return [
        "## Usage",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("{repo_id}")  # from the Hub',
        'ds = load_dataset("path/to/folder")  # a local copy of this folder',
        f"# splits: {names}",
        f'ds = load_dataset("json", data_files={{{files}}})  # the file names as split names',
        "```",
        "",
        "Loaded by repository or folder, a split is named by its file as the Hub's convention",
        "has it: `evaluation.jsonl` is the `test` split.",
        "",
        "pandas: pass the dtypes, or a float column whose values are all whole numbers",
        "(every reward 0.0, say) is read as int64:",
        "",
        "```python",
        "import pandas as pd",
        "",
        f"dtypes = {{\n    {dtypes},\n}}",
        f'train = pd.read_json("{splits[0]}.jsonl", lines=True, dtype=dtypes)',
        "```",
    ]


def _fields() -> list[str]:
    out = ["## Fields", "", "Every split has the same fields.", ""]
    out += ["| field | type | description |", "|---|---|---|"]
    for f in FIELDS:
        kind = f"{f.type} | null" if f.nullable else f.type
        # A bare "|" would end the table cell.
        kind = kind.replace("|", "\\|")
        out.append(f"| `{f.name}` | {kind} | {f.description} |")
    return out


CITATION = """## Citation

```bibtex
@software{rfai,
  title  = {rfai: teacher-student GRPO training of small code models on MLX},
  year   = {2026},
  note   = {version VERSION}
}
```"""


def dataset_card(
    folder: str | Path, *, run_dir: str | Path | None = None, repo_id: str | None = None
) -> str:
    """The README.md of a dataset folder; validates every split first (`validate_folder`)."""
    folder = Path(folder)
    validate_folder(folder)
    rows = {s: read_rows(p) for s, p in split_files(folder).items()}
    config = load_public_config(folder, run_dir)
    license_id = ((config or {}).get("huggingface") or {}).get("license", "apache-2.0")
    languages = sorted({r["language"] for rs in rows.values() for r in rs})
    meta = front_matter({s: len(r) for s, r in rows.items()}, languages, license_id)
    repo = repo_id or PLACEHOLDER_REPO
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).rstrip(),
        "---",
        "",
        "# rfai teacher-student code samples",
        "",
        "Code written by a student model while it was trained with GRPO against a teacher, "
        "each sample scored by running it (tests in a sandbox) next to the teacher's code for "
        "the same task. Made with rfai version "
        f"{rfai_version()}; regenerate this card with `python export_datasets.py`.",
        "",
        *_summary(rows),
        "",
        *_models(rows, config),
        "",
        *_fields(),
        "",
        *_usage(repo, list(rows)),
        "",
        "## Config used",
        "",
    ]
    if config is None:
        lines.append("The run's config.yaml was not available when this card was written.")
    else:
        lines += ["```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```"]
    lines += ["", CITATION.replace("VERSION", rfai_version()), ""]
    text = "\n".join(lines)
    check_public(text, folder)
    return text


def write_dataset_card(
    folder: str | Path, *, run_dir: str | Path | None = None, repo_id: str | None = None
) -> Path:
    path = Path(folder) / CARD
    path.write_text(dataset_card(folder, run_dir=run_dir, repo_id=repo_id), encoding="utf-8")
    return path


def reward_before_after(metrics_path: str | Path) -> tuple[float, float, int] | None:
    """Mean training reward over the first and the last k steps of metrics.jsonl, and k.

    k = min(10, steps // 2), at least 1: single steps are too noisy to compare.
    """
    path = Path(metrics_path)
    if not path.is_file():
        return None
    rewards = []
    for line in path.read_text().splitlines():
        value = json.loads(line).get("reward") if line.strip() else None
        if isinstance(value, int | float):
            rewards.append(float(value))
    if not rewards:
        return None
    k = max(1, min(10, len(rewards) // 2))
    return statistics.fmean(rewards[:k]), statistics.fmean(rewards[-k:]), k


def _hub_model_id(path: str) -> str | None:
    """`path` when it names a Hub model (not a folder on this machine), else None."""
    if Path(path).expanduser().exists() or _ABSOLUTE.match(path) or path.count("/") != 1:
        return None
    return path


def model_card(
    run_dir: str | Path,
    *,
    repo_id: str,
    dataset_repo_id: str | None,
    fused: bool,
) -> str:
    """README.md of the model repo: the adapter (and `fused/`) trained in `run_dir`."""
    run_dir = Path(run_dir)
    config = public_value(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    student = config.get("student", {})
    base = str(student.get("path", "unknown"))
    hub_base = _hub_model_id(base)
    adapter = student.get("adapter", {})
    lines = [
        "---",
        _model_card_meta(config, hub_base, dataset_repo_id),
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"A {adapter.get('fine_tune_type', 'lora')} adapter (rank {adapter.get('rank')}) for "
        f"`{base}`, trained with rfai {rfai_version()} (teacher-student GRPO on MLX) for "
        f"{config.get('training', {}).get('steps')} steps.",
        "",
        f"- Base model: `{base}`",
        f"- Training data: {f'`{dataset_repo_id}`' if dataset_repo_id else 'not published'}",
    ]
    before_after = reward_before_after(run_dir / "metrics.jsonl")
    if before_after:
        before, after, k = before_after
        lines.append(
            f"- Training reward: {before:.3f} over the first {k} step(s), {after:.3f} over the "
            f"last {k} (mean of each step's samples; metrics.jsonl)"
        )
    lines += _files_and_usage(repo_id, hub_base or "path/to/base-model", fused)
    text = "\n".join(lines)
    check_public(text, run_dir)
    return text


def _model_card_meta(config: dict, hub_base: str | None, dataset_repo_id: str | None) -> str:
    """The model card's YAML front matter (without its `---` lines)."""
    license_id = config.get("huggingface", {}).get("license", "apache-2.0")
    meta: dict[str, Any] = {"license": license_id, "library_name": "mlx"}
    if hub_base:
        meta["base_model"] = hub_base
    if dataset_repo_id:
        meta["datasets"] = [dataset_repo_id]
    meta["pipeline_tag"] = "text-generation"
    meta["tags"] = ["mlx", "lora", "grpo", "rfai", "code"]
    return yaml.safe_dump(meta, sort_keys=False).rstrip()


def _files_and_usage(repo_id: str, base_arg: str, fused: bool) -> list[str]:
    """The model card's "Files" and "Run it" sections and its citation."""
    lines = [
        "",
        "## Files",
        "",
        "- `adapters.safetensors`, `adapter_config.json`: the adapter, in mlx-lm's format.",
    ]
    if fused:
        lines.append("- `fused/`: the base model with the adapter merged in (mlx_lm fuse).")
    lines += [
        "",
        "## Run it",
        "",
        "```bash",
        "pip install mlx-lm huggingface_hub",
        f"hf download {repo_id} --local-dir rfai-model",
        f"mlx_lm.generate --model {base_arg} --adapter-path rfai-model \\",
        '  --prompt "Write a Python function that reverses a string."',
    ]
    if fused:
        lines.append('mlx_lm.generate --model rfai-model/fused --prompt "..."')
    return [*lines, "```", "", CITATION.replace("VERSION", rfai_version()), ""]
