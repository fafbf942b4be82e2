"""A disk cache of teacher answers, so a teacher is paid for once across runs and resumes.

One JSON file per key, ``<dir>/<key[:2]>/<key>.json``, where the key is the SHA-256 of the
canonical JSON of (backend, model, kind, messages, generation settings). A file is written to
a temporary name in the same folder and moved into place with `os.replace`, which is atomic
on POSIX: two processes sharing the folder never read a partial file; if both miss the same
key at once, both ask the teacher and the last write wins (the same answer, paid twice).
A file that cannot be read back is counted in ``corrupt``, treated as a miss and rewritten.

Only answers that came back are stored (their raw text): a failed request is retried next
time, and the code is extracted from the text on every read, so a change of the extraction
rule applies to cached answers too.

``TeacherCache(None)`` keeps answers in memory for the life of the object only.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def cache_key(**parts: Any) -> str:
    """SHA-256 of the canonical JSON of `parts` (sorted keys, no whitespace)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    corrupt: int = 0


class TeacherCache:
    def __init__(self, directory: str | Path | None) -> None:
        self.directory = Path(directory).expanduser() if directory else None
        self._memory: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._counts = {"hits": 0, "misses": 0, "writes": 0, "corrupt": 0}

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(**self._counts)

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        value = self._memory.get(key)
        if value is None and self.directory is not None:
            value = self._read(self._path(key))
        self._count("hits" if value is not None else "misses")
        return value

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            self._count("corrupt")
            return None
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._memory[key] = value
        if self.directory is not None:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(value, f, ensure_ascii=False)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        self._count("writes")
