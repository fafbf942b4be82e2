"""Sandbox state left on the host, and its removal when its owner is gone.

Two things a sandbox creates outlive a single run: the *base directory* under the temp root
(``rfai-sandbox-PID-START-*``, where run directories are made) and, as root where a pids
cgroup is writable, one cgroup per run (``rfai-PID-START-*`` under the cgroup root). Both are
named after their owner, the scoring process: its pid and its start time (clock ticks since
boot, so a reused pid does not pass for the owner). A process that dies normally removes its
own (``atexit`` and ``remove_cgroup`` after every run); one killed by SIGKILL cannot, so at
start-up ``clean_stale`` removes those of every dead owner and SIGKILLs the processes whose
command line still names a stale base directory (an old holder or launcher).

Per platform: Linux has all of it. Cgroups are used only as root on Linux
(``writable_cgroup`` finds none elsewhere). Without ``/proc`` (macOS) a start time reads "0"
and an owner is alive while ``kill(pid, 0)`` finds it; no processes are killed there (their
command lines cannot be read), so an in-flight program of a killed trainer lives until its
CPU limit. Not covered: state whose name does not match the pattern (another tool's, or an
older format) is left alone; a stale directory still busy (a mount inside it) is left for the
next start (``rmtree`` ignores errors).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import time
import uuid
from pathlib import Path

log = logging.getLogger("rfai.scorers")

BASE_PREFIX = "rfai-sandbox-"
_CGROUP_ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")
_OWNED = re.compile(r"^rfai-(?:sandbox-)?(\d+)-(\d+)-")


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), "0" without /proc; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by someone else
        return "0"
    return stat.rsplit(")", 1)[1].split()[19]


def owner_tag() -> str:
    """``PID-START`` of this process: the owner part of the names of what it creates."""
    return f"{os.getpid()}-{_start_time(os.getpid())}"


def _owner_dead(name: str) -> bool:
    match = _OWNED.match(name)
    if match is None:
        return False  # not ours (or an older format): leave it alone
    return _start_time(int(match.group(1))) != match.group(2)


def clean_stale(temp_root: Path, cgroup_root: Path | None) -> list[str]:
    """Remove base dirs and cgroups left by dead owners; kill their processes. What was removed."""
    removed = []
    stale_dirs = [p for p in temp_root.glob(f"{BASE_PREFIX}*") if _owner_dead(p.name)]
    if stale_dirs:
        _kill_processes_naming([str(p) for p in stale_dirs])
    for path in stale_dirs:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    if cgroup_root is not None:
        for path in cgroup_root.glob("rfai-*"):
            if path.is_dir() and _owner_dead(path.name):
                remove_cgroup(path)
                removed.append(str(path))
    return removed


def _kill_processes_naming(paths: list[str]) -> None:
    """SIGKILL processes whose command line names one of ``paths`` (holders, launchers)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    needles = [p.encode() for p in paths]
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # exited while we looked, or not ours to read
        if any(needle in cmdline for needle in needles):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


def writable_cgroup() -> Path | None:
    """The first cgroup root where this process may create a child with ``pids.max``."""
    for root in map(Path, _CGROUP_ROOTS):
        probe = root / f"rfai-probe-{os.getpid()}"
        try:
            probe.mkdir()
        except OSError:
            continue
        try:
            if (probe / "pids.max").exists():
                return root
        finally:
            probe.rmdir()
    return None


def new_cgroup(cgroup_root: Path, max_processes: int) -> Path:
    """A fresh pids cgroup for one run, named after its owner, with ``pids.max`` set."""
    path = cgroup_root / f"rfai-{owner_tag()}-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    (path / "pids.max").write_text(str(max_processes))
    return path


def remove_cgroup(path: Path) -> None:
    """Kill whatever is left in the run's cgroup and remove it (retrying while it drains)."""
    for _ in range(100):
        try:
            pids = (path / "cgroup.procs").read_text().split()
        except FileNotFoundError:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # it exited after the listing
                os.kill(int(pid), signal.SIGKILL)
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)  # members still exiting: the directory is busy
    log.warning("could not remove cgroup %s: processes still exiting", path)
