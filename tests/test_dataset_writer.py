"""DatasetWriter: whole JSON lines under concurrency, exact rollback for --resume."""

import json
import math
import threading
from pathlib import Path

import pandas as pd
import pytest

from rfai.dataset_writer import SPLITS, DatasetWriter


def row(run_id: str, n: int, **extra) -> dict:
    return {"run_id": run_id, "n": n, "completion": f"def f():\n    return {n}\n", **extra}


def test_rows_are_json_lines_that_pandas_reads(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    writer.write("train", row("r1", 0, text="naïve ☃ — 'quotes' \"and\" \\"))
    writer.write("train", row("r1", 1, score=0.5, tags=["a", "b"]))
    writer.close()
    frame = pd.read_json(tmp_path / "train.jsonl", lines=True)
    assert list(frame["n"]) == [0, 1]
    assert frame.loc[0, "text"] == "naïve ☃ — 'quotes' \"and\" \\"
    assert writer.rows_written == {"train": 2, "validation": 0, "evaluation": 0}


def test_unknown_split_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown split 'test'"):
        DatasetWriter(tmp_path).write("test", row("r1", 0))


def test_concurrent_writes_give_whole_lines(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    # Rows of ~4 KiB so an interleaving of two writes would be likely to show.
    padding = "x" * 4000

    def worker(t: int) -> None:
        for i in range(200):
            writer.write("train", {"run_id": "r", "thread": t, "i": i, "pad": padding})

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    assert len(lines) == 8 * 200
    rows = [json.loads(line) for line in lines]
    assert sorted((r["thread"], r["i"]) for r in rows) == [
        (t, i) for t in range(8) for i in range(200)
    ]
    # Rows of one thread stay in the order that thread wrote them.
    for t in range(8):
        assert [r["i"] for r in rows if r["thread"] == t] == list(range(200))


def test_rollback_restores_exact_bytes(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    writer.write("train", row("old-run", 0))  # an earlier run's row stays
    writer.write("train", row("r1", 1))
    writer.write("validation", row("r1", 2))
    offsets = writer.offsets()
    before = {s: writer.path(s).read_bytes() for s in ("train", "validation")}
    assert offsets == {
        "train": len(before["train"]),
        "validation": len(before["validation"]),
        "evaluation": 0,
    }

    for n in range(3, 6):
        writer.write("train", row("r1", n))
    writer.write("evaluation", row("r1", 6))
    removed = writer.rollback(offsets, "r1")

    assert removed == {"train": 3, "validation": 0, "evaluation": 1}
    assert {s: writer.path(s).read_bytes() for s in ("train", "validation")} == before
    # Cut to 0 bytes: removed, not left empty (load_dataset fails on an empty split file).
    assert not writer.path("evaluation").exists()
    # The writer keeps appending after the rollback point, and starts the removed file afresh.
    writer.write("train", row("r1", 7))
    writer.write("evaluation", row("r1", 8))
    writer.close()
    assert writer.path("evaluation").read_bytes() == (json.dumps(row("r1", 8)) + "\n").encode()
    assert (
        writer.path("train").read_bytes()
        == before["train"] + (json.dumps(row("r1", 7)) + "\n").encode()
    )


def test_rollback_refuses_rows_of_another_run(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    writer.write("train", row("r1", 0))
    offsets = writer.offsets()
    writer.write("train", row("r1", 1))
    writer.write("train", row("r2", 2))
    contents = writer.path("train").read_bytes()
    with pytest.raises(RuntimeError, match=r"row 2 .* belongs to run 'r2', not 'r1'"):
        writer.rollback(offsets, "r1")
    assert writer.path("train").read_bytes() == contents


def test_rollback_removes_partial_last_line(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    writer.write("train", row("r1", 0))
    offsets = writer.offsets()
    expected = writer.path("train").read_bytes()
    writer.write("train", row("r1", 1))
    writer.close()
    # A crash in the middle of a write: half a row, no newline.
    whole = (json.dumps(row("r1", 2)) + "\n").encode()
    with writer.path("train").open("ab") as f:
        f.write(whole[: len(whole) // 2])

    removed = DatasetWriter(tmp_path).rollback(offsets, "r1")
    assert removed["train"] == 2  # one whole row and the half one
    assert writer.path("train").read_bytes() == expected


def test_regression_rollback_sees_row_with_unicode_line_separator(tmp_path: Path) -> None:
    # Bug: rollback split the tail with str.splitlines(), which also breaks at U+2028 and
    # U+0085. json.dumps(ensure_ascii=False) leaves those unescaped, so another run's row
    # holding one became two unparseable pieces, was skipped as "cut short by a crash", and
    # was truncated away without the run_id check.
    writer = DatasetWriter(tmp_path)
    writer.write("train", row("r1", 0))
    offsets = writer.offsets()
    writer.write("train", row("other", 1, text="line\u2028separator\x85next"))
    contents = writer.path("train").read_bytes()
    with pytest.raises(RuntimeError, match="belongs to run 'other'"):
        writer.rollback(offsets, "r1")
    assert writer.path("train").read_bytes() == contents


def test_rollback_refuses_a_complete_line_that_is_not_a_row(tmp_path: Path) -> None:
    # Only the unterminated last piece can be crash debris; a complete garbage line means
    # something else wrote to the file, and cutting it could lose another run's data.
    writer = DatasetWriter(tmp_path)
    writer.write("train", row("r1", 0))
    offsets = writer.offsets()
    writer.close()
    with writer.path("train").open("ab") as f:
        f.write(b'{"run_id": "r1", "n": 1\n')
    contents = writer.path("train").read_bytes()
    with pytest.raises(RuntimeError, match=r"line 1 .* is not a JSON row"):
        DatasetWriter(tmp_path).rollback(offsets, "r1")
    assert writer.path("train").read_bytes() == contents


def test_rollback_refuses_file_shorter_than_offset(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    writer.write("train", row("r1", 0))
    offsets = writer.offsets()
    writer.close()
    writer.path("train").write_bytes(b"")
    with pytest.raises(RuntimeError, match="fewer than the"):
        DatasetWriter(tmp_path).rollback(offsets, "r1")
    writer.path("train").unlink()
    with pytest.raises(RuntimeError, match="is missing"):
        DatasetWriter(tmp_path).rollback(offsets, "r1")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_number_is_an_error_and_writes_nothing(tmp_path: Path, bad: float) -> None:
    writer = DatasetWriter(tmp_path)
    writer.write("train", row("r1", 0))
    before = writer.path("train").read_bytes()
    with pytest.raises(ValueError, match="Out of range float"):
        writer.write("train", row("r1", 1, score=bad))
    assert writer.path("train").read_bytes() == before
    assert writer.rows_written["train"] == 1


def test_files_are_appended_to_not_truncated(tmp_path: Path) -> None:
    first = DatasetWriter(tmp_path)
    first.write("train", row("r1", 0))
    first.close()
    second = DatasetWriter(tmp_path)
    second.write("train", row("r2", 1))
    second.close()
    runs = [json.loads(line)["run_id"] for line in second.path("train").read_text().splitlines()]
    assert runs == ["r1", "r2"]
    assert set(SPLITS) == {"train", "validation", "evaluation"}
