"""Dataset and model cards: Hub front matter, statistics, nothing local or secret; the
README's pandas analysis snippet run as written on a real output folder."""

import re
import warnings
from pathlib import Path

import pytest
import yaml

from rfai.card import PUBLIC_CONFIG, dataset_card, model_card, write_dataset_card
from rfai.config import Config
from rfai.config_load import config_to_dict, save_config
from rfai.dataset_schema import FIELDS
from tests.dataset_rows import make_dataset

REPO = Path(__file__).resolve().parents[1]
SECRET = "hf_abcdefghijklmnopqrstuvwxyz123456"


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _run_dir(tmp_path: Path) -> Path:
    """A run folder whose config names a local absolute path and carries a secret."""
    run = tmp_path / "run"
    run.mkdir()
    values = config_to_dict(Config())
    values["student"]["path"] = str(tmp_path / "models" / "my-student")
    values["training"]["output_dir"] = str(run)
    values["student"]["system_prompt"] = f"You are helpful. {SECRET}"
    values["huggingface"]["license"] = "mit"
    (run / "config.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    (run / "config.yaml").write_text(
        (run / "config.yaml").read_text() + f"teacher_api:\n  api_token: {SECRET}x\n"
    )
    return run


def test_dataset_card_front_matter_and_content(tmp_path):
    folder = make_dataset(
        tmp_path / "datasets",
        {"train": 24, "validation": 8, "evaluation": 0},
        student_model=str(tmp_path / "models" / "my-student"),
    )
    run = _run_dir(tmp_path)
    text = write_dataset_card(folder, run_dir=run, repo_id="me/data").read_text()
    meta = _front_matter(text)
    assert meta["license"] == "mit"
    assert meta["task_categories"] == ["text-generation"]
    assert meta["size_categories"] == ["n<1K"]
    assert {"code", "grpo", "python", "cpp", "rust"} <= set(meta["tags"])
    # No `configs:` (datasets caches a folder with one by its patterns only: stale rows).
    assert "configs" not in meta
    # train: 24 rows, i % 4 -> python, python, cpp, rust: 12 python, 6 cpp, 6 rust.
    assert "| train | 24 | 1 | 1–4 | 0.25 |" in text
    assert "| python | 12 | 4 |" in text and "| rust | 6 | 2 |" in text
    # student_score cycles 1.0, 0.5, 0.0, 0.75: mean 0.5625 (24 rows = 6 whole cycles).
    assert "| train | `student_score` | 0.562 |" in text
    for field in FIELDS:
        assert f"| `{field.name}` |" in text
    assert 'load_dataset("me/data")' in text and "```bibtex" in text
    weights = ", ".join(f"{k} {v}" for k, v in Config().scoring.weights.items())
    assert f"Scoring weights: {weights}" in text and "Reward rule: `ratio`" in text


def test_cards_hold_no_secret_and_no_local_path(tmp_path):
    folder = make_dataset(
        tmp_path / "datasets", {"train": 8}, student_model=str(tmp_path / "models" / "my-student")
    )
    run = _run_dir(tmp_path)
    (run / "adapters").mkdir()
    texts = [
        dataset_card(folder, run_dir=run),
        (folder / PUBLIC_CONFIG).read_text(),
        model_card(run, repo_id="me/model", dataset_repo_id="me/data", fused=True),
    ]
    for text in texts:
        assert SECRET not in text
        assert str(tmp_path) not in text
        assert not re.search(r"(^|[\s'\"(])/(tmp|home|Users|root)/", text), text
    assert "<local>/my-student" in texts[0] and "<redacted>" in texts[1]
    # A later export without the run folder documents the same (public) config.
    assert "<local>/my-student" in dataset_card(folder)


def _load_folder(datasets, folder: Path, cache: Path) -> dict[str, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = datasets.load_dataset(str(folder), cache_dir=str(cache))
    return {name: len(split) for name, split in loaded.items()}


def test_regression_load_dataset_on_a_folder_after_appending_rows_gives_all_rows(tmp_path):
    # Bug: the card's `configs:` front matter made `datasets` cache a local folder by its
    # patterns alone. Loading again after rows were appended gave the old rows, and another
    # folder of the same name gave the first folder's rows. Both loads share one cache here.
    datasets = pytest.importorskip("datasets")
    cache = tmp_path / "cache"
    folder = make_dataset(
        tmp_path / "a" / "datasets", {"train": 24, "validation": 8, "evaluation": 12}
    )
    write_dataset_card(folder)
    assert _load_folder(datasets, folder, cache) == {"train": 24, "validation": 8, "test": 12}
    make_dataset(folder, {"train": 3, "evaluation": 1})  # a run appends rows
    assert _load_folder(datasets, folder, cache) == {"train": 27, "validation": 8, "test": 13}
    other = make_dataset(tmp_path / "b" / "datasets", {"train": 5})
    write_dataset_card(other)
    assert _load_folder(datasets, other, cache) == {"train": 5}


def test_load_dataset_on_a_finished_folder_gives_the_three_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = make_dataset(tmp_path / "out", {"train": 24, "validation": 8, "evaluation": 12})
    text = write_dataset_card(folder).read_text()
    # The card's usage text names the splits as load_dataset gives them.
    assert "# splits: train, validation, test (evaluation.jsonl)" in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    assert {name: len(split) for name, split in loaded.items()} == {
        "train": 24,
        "validation": 8,
        "test": 12,
    }
    assert loaded["train"].features["reward"].dtype == "float64"
    assert loaded["test"][0]["split"] == "evaluation"


def test_model_card_reports_rewards_before_and_after(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_config(Config(), run / "config.yaml")
    rewards = [0.1, 0.3, 0.2, 0.6, 0.8, 1.0]
    (run / "metrics.jsonl").write_text(
        "".join(f'{{"step": {i + 1}, "reward": {r}}}\n' for i, r in enumerate(rewards))
    )
    text = model_card(run, repo_id="me/model", dataset_repo_id=None, fused=False)
    meta = _front_matter(text)
    assert meta["base_model"] == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert meta["library_name"] == "mlx"
    # 6 steps -> k = 3: first (0.1 + 0.3 + 0.2) / 3 = 0.200, last (0.6 + 0.8 + 1.0) / 3 = 0.800.
    assert "0.200 over the first 3 step(s), 0.800 over the last 3" in text
    assert "--adapter-path rfai-model" in text and "Training data: not published" in text


def test_analysis_snippet_runs_as_written(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Analysing the dataset with pandas") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S)
    make_dataset(tmp_path / "datasets", {"train": 40, "validation": 8})
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet.group(1), "README.md (pandas analysis)", "exec"), scope)
    # 40 rows, student_score cycles 1.0, 0.5, 0.0, 0.75 -> mean 0.5625.
    assert scope["means"]["student_score"] == pytest.approx(0.5625)
    assert set(scope["by_language"].index) == {"cpp", "python", "rust"}
    # "passed" rows (i % 4 == 0) with a teacher at 1.0 or 0.75: all 10 are >= the teacher.
    assert len(scope["good"]) == 10
    assert scope["top"]["reward"].iloc[0] == pytest.approx(1.0 / 0.75)
    assert scope["distribution"].sum() == 40
    assert list(scope["reward_per_step"].index) == [1, 2, 3, 4]
