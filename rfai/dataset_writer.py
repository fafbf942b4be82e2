"""Stream dataset rows to `{train,validation,evaluation}.jsonl`, one whole line per write.

Each row is serialised first and written with a single `os.write` on a file opened with
O_APPEND, so a crash leaves only complete lines (a partial write is finished in a loop, and
a line is never interleaved with another thread's: writes are serialised by a lock).

Files are appended to, never truncated at start: rows of earlier runs stay, and each row
carries its `run_id`. `--resume` rolls a split back to the byte offset recorded in the
checkpoint (or, before the first checkpoint, in the run record written at start-up), so steps
that are re-run after a crash do not leave duplicate rows; it refuses if anything after that
offset belongs to another run.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The splits of a run, in the order files and reports list them: the tasks of data.train_file,
# data.validation_file and data.evaluation_file, and the rows written from each.
SPLITS = ("train", "validation", "evaluation")


class DatasetWriter:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fds: dict[str, int] = {}
        self.rows_written = dict.fromkeys(SPLITS, 0)

    def path(self, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.folder / f"{split}.jsonl"

    def _fd(self, split: str) -> int:
        fd = self._fds.get(split)
        if fd is None:
            fd = os.open(self.path(split), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._fds[split] = fd
        return fd

    def write(self, split: str, row: Mapping[str, Any]) -> None:
        """Append one row as a JSON line; returns once the bytes are in the file."""
        data = (json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n").encode()
        with self._lock:
            fd = self._fd(split)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            self.rows_written[split] += 1

    def offsets(self) -> dict[str, int]:
        """Current byte size of every split file (what a checkpoint records)."""
        with self._lock:
            for fd in self._fds.values():
                os.fsync(fd)
            return {s: self.path(s).stat().st_size if self.path(s).exists() else 0 for s in SPLITS}

    def rollback(self, offsets: Mapping[str, int], run_id: str) -> dict[str, int]:
        """Truncate each split to `offsets`; returns rows removed per split.

        A split cut to 0 bytes is removed. Only rows of `run_id` may be removed: anything
        else after the offset means another run wrote to this folder since, and cutting it
        would lose its data. Every split is checked before any is cut, so a refusal leaves
        all of them as they were.
        """
        with self._lock:
            cuts = {split: self._rows_after(split, int(offsets.get(split, 0)), run_id)
                    for split in SPLITS}  # fmt: skip
            for split, (keep, rows) in cuts.items():
                if rows is None:
                    continue
                if keep:
                    os.truncate(self.path(split), keep)
                else:
                    # Every row was this run's: the file goes, as if never written. An empty
                    # split file would make `datasets.load_dataset(folder)` fail.
                    fd = self._fds.pop(split, None)
                    if fd is not None:
                        os.close(fd)
                    self.path(split).unlink()
        return {split: rows for split, (_, rows) in cuts.items() if rows is not None}

    def _rows_after(self, split: str, keep: int, run_id: str) -> tuple[int, int | None]:
        """(keep, rows after byte `keep`, all of `run_id`); rows None when the file is absent.

        Raises RuntimeError when a row after `keep` is not a row of `run_id`."""
        path = self.path(split)
        if not path.exists():
            if keep:
                raise RuntimeError(
                    f"{path} is missing but {keep} bytes were recorded for it; the dataset "
                    "folder was moved or deleted since"
                )
            return keep, None
        size = path.stat().st_size
        if size < keep:
            raise RuntimeError(
                f"{path} has {size} bytes, fewer than the {keep} recorded for it; it was "
                "modified since"
            )
        with path.open("rb") as f:
            f.seek(keep)
            # Split on b"\n" only: str.splitlines also breaks at U+2028, U+0085, ...,
            # which json.dumps(ensure_ascii=False) leaves unescaped inside strings.
            tail = f.read().split(b"\n")
        # The piece after the last newline is empty, or a line cut short by a crash
        # (part of what is rolled back); every complete line must be a row of run_id.
        partial = tail.pop()
        for n, line in enumerate(tail, 1):
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                row = None
            if not isinstance(row, dict):
                raise RuntimeError(
                    f"{path}: line {n} after the recorded offset is not a JSON row; "
                    "something other than this run wrote to the file. Refusing to "
                    "truncate it: move that file aside or resume into another "
                    "dataset_output_dir."
                )
            other = row.get("run_id")
            if other != run_id:
                raise RuntimeError(
                    f"{path}: row {n} after the recorded offset belongs to run "
                    f"{other!r}, not {run_id!r}; refusing to truncate it. Move that "
                    "file aside or resume into another dataset_output_dir."
                )
        return keep, len(tail) + (1 if partial else 0)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
