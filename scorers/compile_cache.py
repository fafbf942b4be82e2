"""The on-disk cache of compiled test programs: bounded in size, shared by threads and processes.

An entry is keyed by the SHA-256 of the compiler's argv and the full source. It is two files
under ``<cache_dir>/<key[:2]>/``: ``<key>.bin`` (the binary, only for a successful build) and
``<key>.json`` (ok, diagnostics, the binary's size and SHA-256). The ``.json`` file is the
commit marker: written last, deleted first.

What is cached: a clean success (exit 0 with a binary), or a compiler's ordinary error exit
(status 1, which g++, clang and rustc all use for diagnostics). Never a compile that timed out,
hit the CPU, output or memory limit, died by a signal, crashed (gcc's ICE exits 4, rustc's
101) or reports a killed/failed subprocess ("signal terminated program", "signal: 9",
"Resource temporarily unavailable"...): those depend on the machine's load, not the source,
and a cached one would drop the task in every later run. They are recompiled next time.

Size cap and eviction: a write that takes the cache past ``max_bytes`` (by this process's
count, refreshed by a scan of the directory at least every ``RESCAN_SECONDS`` while it
writes) scans it and deletes the least recently used entries until the total (``.tmp``
files included) is at most 90% of ``max_bytes``. Recency is the ``.json`` file's mtime, set
on every write and every hit from a per-process strictly increasing clock, so the order does
not depend on the filesystem's timestamp granularity. ``max_bytes == 0`` turns the cache off.

Concurrency: files are written to a unique temporary name and renamed into place, so a reader
sees a whole file or none. One eviction runs at a time (``flock`` on ``.evict.lock``, which
serialises threads and processes alike). A reader whose entry is evicted between its reads
finds a missing file or a binary whose SHA-256 does not match the ``.json``: a miss, and the
caller recompiles; never a crash or a corrupt binary. Entries of an older format are misses
and are overwritten. A failure to read or write the cache (disk full, permissions) is logged
and scoring goes on uncached.

Not covered: each process counts only its own writes between scans, so with several
processes writing, the directory can exceed the cap by what the others wrote in the last
``RESCAN_SECONDS`` (a minute of compiles) until a scan brings it back under. A cache directory
shared between users is trusted (keep it private: it is created 0700).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scorers.sandbox import ProcessResult

log = logging.getLogger("rfai.scorers")

FORMAT = 2  # entries written by other formats are misses (format 1 cached timeouts)
DEFAULT_CACHE_MB = 2048  # ~300 Rust test binaries (6.6 MiB each) or thousands of C++ ones
STALE_TMP_SECONDS = 3600  # a .tmp file this old was left by a writer that died
RESCAN_SECONDS = 60.0  # scan at least this often while writing: other processes write too
LOW_WATER = 0.9  # an eviction frees 10% of the cap, so scans stay rare
ORDINARY_ERROR_EXIT = 1
_LOCK_NAME = ".evict.lock"

# Diagnostics that say the compiler or one of its subprocesses was killed or starved, not
# that the source is wrong: the same source may compile on a quieter machine.
_RESOURCE_FAILURE = re.compile(
    r"signal terminated program"  # gcc driver: cc1plus/as/ld killed
    r"|internal compiler error"
    r"|signal: \d+"  # rustc: a linker or subprocess ended by a signal
    r"|out of memory|virtual memory exhausted|Cannot allocate memory|memory allocation of"
    r"|Resource temporarily unavailable|cannot fork|Too many open files"
    r"|File size limit exceeded|No space left on device",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CompiledBuild:
    """A compile's outcome: ``binary`` is None unless ``ok``."""

    ok: bool
    binary: bytes | None
    diagnostics: str


def cache_key(argv: Sequence[str], source: str) -> str:
    """The SHA-256 naming the entry of ``source`` compiled with ``argv``."""
    return hashlib.sha256(json.dumps([list(argv), source]).encode()).hexdigest()


def classify_compile(
    process: ProcessResult, binary_name: str, wall_seconds: float
) -> tuple[CompiledBuild, str | None]:
    """The build ``process`` produced and why it must not be cached (None: cache it)."""
    binary = (process.files or {}).get(binary_name)
    ok = process.returncode == 0 and binary is not None
    diagnostics = process.stderr
    reason = None
    if process.timed_out:
        reason = f"compiler timed out (wall {wall_seconds}s or CPU limit)"
    elif process.output_exceeded:
        reason = "compiler output exceeded the limit and was killed"
    elif process.returncode is None or process.returncode < 0:
        reason = f"compiler killed by signal {-(process.returncode or 0)}"
    elif process.memory_exceeded or _RESOURCE_FAILURE.search(diagnostics):
        reason = "compiler ran out of a resource or crashed"
    elif not ok and process.returncode != ORDINARY_ERROR_EXIT:
        reason = f"compiler exited {process.returncode} (not an ordinary error exit)"
    elif process.returncode == 0 and binary is None:
        reason = "compiler exited 0 without writing the binary"
    if reason is not None and not ok:
        diagnostics = f"{reason}\n{diagnostics}"
    return CompiledBuild(ok, binary if ok else None, diagnostics), reason


class _Usage:
    """This process's estimate of each cache directory's size, so that a write scans the
    directory (~10 ms per 1,000 files) only when the estimate passes the cap or the last scan
    is older than ``RESCAN_SECONDS`` (other processes write too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes: dict[Path, int] = {}
        self._scanned_at: dict[Path, float] = {}

    def added(self, root: Path, size: int, max_bytes: int) -> bool:
        """Count ``size`` new bytes in ``root``; True when it is time to scan and evict."""
        with self._lock:
            if root not in self._bytes:
                return True
            self._bytes[root] += size
            stale = time.monotonic() - self._scanned_at[root] > RESCAN_SECONDS
            return stale or self._bytes[root] > max_bytes

    def scanned(self, root: Path, size: int) -> None:
        with self._lock:
            self._bytes[root] = size
            self._scanned_at[root] = time.monotonic()


_usage = _Usage()
_stamp_lock = threading.Lock()
_last_stamp = 0


def _stamp() -> int:
    """Nanoseconds since the epoch, strictly increasing within this process."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time_ns(), _last_stamp + 1)
        return _last_stamp


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so that readers see the old file, or the whole new one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class CompileCache:
    """The cache in ``root`` holding at most ``max_bytes`` (0: no caching). Stateless: any
    number of instances, threads and processes may share one directory."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"compile cache size must be >= 0 bytes, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = max_bytes

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.json", folder / f"{key}.bin"

    def get(self, key: str) -> CompiledBuild | None:
        """The cached build of ``key``, or None (a miss) if absent, evicted, stale or damaged.
        A hit makes the entry the most recently used."""
        if self.max_bytes == 0:
            return None
        meta_path, bin_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_bytes())
            binary = bin_path.read_bytes() if _is_ok_entry(meta) else None
        except FileNotFoundError:
            return None  # never written, or evicted between our reads
        except (OSError, ValueError) as exc:
            log.warning("compile cache: cannot read entry %s (%s); recompiling", meta_path, exc)
            return None
        if not _valid(meta, binary):
            return None
        # Evicted since (we hold the bytes), or a read-only cache: the hit stands either way.
        with contextlib.suppress(OSError):
            _touch(meta_path)
        return CompiledBuild(meta["ok"], binary, meta["diagnostics"])

    def put(self, key: str, build: CompiledBuild) -> None:
        """Store ``build`` under ``key``, then evict down to the cap."""
        if self.max_bytes == 0:
            return
        meta_path, bin_path = self._paths(key)
        meta = {"format": FORMAT, "ok": build.ok, "diagnostics": build.diagnostics}
        if build.ok:
            assert build.binary is not None
            meta["size"] = len(build.binary)
            meta["sha256"] = hashlib.sha256(build.binary).hexdigest()
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            meta_path.parent.mkdir(mode=0o700, exist_ok=True)
            if build.ok:
                atomic_write(bin_path, build.binary)
            encoded = json.dumps(meta).encode()
            atomic_write(meta_path, encoded)
            _touch(meta_path)
            if _usage.added(self.root, len(encoded) + len(build.binary or b""), self.max_bytes):
                self.evict()
        except OSError as exc:
            log.warning("compile cache: cannot write %s (%s); going on uncached", meta_path, exc)

    def evict(self) -> int:
        """Scan the cache; if it holds more than ``max_bytes``, delete least recently used
        entries until it holds at most ``LOW_WATER * max_bytes``. Returns the bytes freed."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.root / _LOCK_NAME, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            entries = _scan(self.root)
            total = sum(entry.size for entry in entries.values())
            target = self.max_bytes if total <= self.max_bytes else LOW_WATER * self.max_bytes
            freed = 0
            for key in sorted(entries, key=lambda k: (entries[k].recency, k)):
                if total - freed <= target:
                    break
                entry = entries[key]
                if entry.writing:
                    continue
                # The .json first: once it is gone no reader trusts the .bin.
                for path in sorted(entry.paths, key=lambda p: p.suffix != ".json"):
                    path.unlink(missing_ok=True)
                freed += entry.size
            _usage.scanned(self.root, total - freed)
        return freed

    def total_bytes(self) -> int:
        """Bytes the cache's files take now."""
        return sum(entry.size for entry in _scan(self.root).values())


def _is_ok_entry(meta: object) -> bool:
    return isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("ok") is True


def _valid(meta: object, binary: bytes | None) -> bool:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return False  # another format: recompile and overwrite
    if not isinstance(meta.get("diagnostics"), str) or not isinstance(meta.get("ok"), bool):
        return False
    if not meta["ok"]:
        return True
    return (
        binary is not None
        and meta.get("size") == len(binary)
        and meta.get("sha256") == hashlib.sha256(binary).hexdigest()
    )


def _touch(path: Path) -> None:
    stamp = _stamp()
    os.utime(path, ns=(stamp, stamp))


@dataclass
class _Entry:
    json_mtime: int | None = None  # the entry's recency, when its .json exists
    newest_mtime: int = 0
    size: int = 0
    paths: list[Path] = field(default_factory=list)
    writing: bool = False  # holds a fresh .tmp file: a write in progress, not evicted

    @property
    def recency(self) -> int:
        return self.newest_mtime if self.json_mtime is None else self.json_mtime


def _scan(root: Path) -> dict[str, _Entry]:
    """Every entry under ``root``, by key. A fresh ``.tmp`` file (a write in progress) counts
    towards the size but keeps its entry; a stale one is deleted with its entry."""
    entries: dict[str, _Entry] = {}
    stale_before = time.time_ns() - STALE_TMP_SECONDS * 10**9
    try:
        folders = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return entries
    for folder in folders:
        try:
            files = list(os.scandir(folder.path))
        except FileNotFoundError:
            continue
        for item in files:
            try:
                stat = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted by another process since the listing
            entry = entries.setdefault(item.name.split(".")[0], _Entry())
            entry.size += stat.st_size
            entry.paths.append(Path(item.path))
            entry.newest_mtime = max(entry.newest_mtime, stat.st_mtime_ns)
            if item.name.endswith(".tmp"):
                entry.writing = entry.writing or stat.st_mtime_ns >= stale_before
            elif item.name.endswith(".json"):
                entry.json_mtime = stat.st_mtime_ns
    return entries
