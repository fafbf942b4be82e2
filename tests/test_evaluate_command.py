"""`python -m rfai.evaluate`: pass@k by hand, the per-language report, and the command on the
tiny model with and without an adapter (a real subprocess, the real sandbox)."""

import json
import subprocess
import sys

import mlx.core as mx
import pytest
from mlx.utils import tree_unflatten

from rfai.config import AdapterConfig, StudentConfig
from rfai.dataset_schema import validate_folder
from rfai.evaluation import language_report, pass_at_k, report_table
from rfai.student import load_student
from tests.dataset_rows import make_row
from tests.helpers import REPO, SHORT_TASKS, cli_env


def test_pass_at_k_by_hand():
    # n = 4 samples, c = 1 passes: pass@1 = 1/4; pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6.
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0  # n - c < k: a pass is drawn
    with pytest.raises(ValueError, match="0 < k <= n"):
        pass_at_k(2, 1, 3)


def test_language_report_and_the_side_by_side_table():
    # make_row: i % 4 -> python, python, cpp, rust; outcomes cycle passed, failed, ...
    rows = [make_row(i, 0, "evaluation") for i in range(8)]
    for i, row in enumerate(rows):
        row["task_id"] = f"t{i % 4}"  # 4 tasks, 2 samples each
    report = language_report(rows, k=2)
    assert set(report) == {"python", "cpp", "rust"}
    python = report["python"]
    assert (python["tasks"], python["samples"]) == (2, 4)
    passed = {t: [r["status"] == "passed" for r in rows if r["task_id"] == t] for t in ("t0", "t1")}
    expected = sum(sum(v) / 2 for v in passed.values()) / 2
    assert python["pass@1"] == pytest.approx(expected)
    assert python["pass@2"] == pytest.approx(sum(any(v) for v in passed.values()) / 2)
    assert python["reward"] == pytest.approx(
        sum(r["reward"] for r in rows if r["language"] == "python") / 4
    )
    better = {lang: {**e, "pass@1": e["pass@1"] + 0.25} for lang, e in report.items()}
    table = report_table({"base": report, "trained": better})
    difference = [line for line in table.splitlines() if line.startswith("python    difference")]
    assert len(difference) == 1 and "+0.250" in difference[0]


def test_the_command_with_and_without_an_adapter(tiny_model_dir, tmp_path):
    # A LoRA adapter moved off identity (B random): its samples must differ from the base
    # model's, which shows the adapter is loaded and applied; both sets of rows are valid.
    student = load_student(StudentConfig(path=str(tiny_model_dir), adapter=AdapterConfig(rank=4)))
    mx.random.seed(1)
    student.model.update(tree_unflatten([
        (k, mx.random.normal(v.shape) * 0.5)
        for k, v in student.trainable_parameters().items() if k.endswith("lora_b")
    ]))  # fmt: skip
    student.save_adapter(tmp_path / "run" / "adapters")
    out = tmp_path / "evaluation"
    argv = [
        sys.executable, "-m", "rfai.evaluate", "--model", str(tiny_model_dir),
        "--compare-adapter-path", str(tmp_path / "run" / "adapters"), "--data", str(SHORT_TASKS),
        "--samples", "2", "--output-dir", str(out), "--set", "logging.rich=false",
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("language  model") :].splitlines()
    assert table[2].startswith("python    base ") and table[3].startswith("python    run_adapters")
    assert table[4].startswith("python    difference")
    for label in ("base", "run_adapters"):
        assert validate_folder(out / label) == {"evaluation": 8}  # 4 tasks x 2 samples
    rows = {
        label: [json.loads(x) for x in (out / label / "evaluation.jsonl").read_text().splitlines()]
        for label in ("base", "run_adapters")
    }
    assert {r["split"] for r in rows["base"]} == {"evaluation"}
    assert len({r["task_id"] for r in rows["base"]}) == 4
    codes = {label: [r["student_code"] for r in rs] for label, rs in rows.items()}
    assert codes["base"] != codes["run_adapters"]


def test_a_missing_adapter_is_a_one_line_error(tiny_model_dir, tmp_path):
    argv = [
        sys.executable, "-m", "rfai.evaluate", "--model", str(tiny_model_dir),
        "--adapter-path", str(tmp_path / "nope"), "--data", str(SHORT_TASKS),
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and "adapter_config.json" in proc.stderr
