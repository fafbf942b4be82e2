"""How the sandbox isolates a run beyond rlimits: detected once per process, logged once.

Linux, when unprivileged user namespaces work (``unshare --user`` succeeds):

* at start-up one *holder* process is created in a new user + mount namespace. Inside it every
  mount is remounted read-only except the sandbox's base directory (where each run's temp dir
  lives), so a program cannot write anywhere else, whoever it runs as;
* each run enters the holder's namespaces (``nsenter``) and then gets its own PID and network
  namespaces (``unshare --pid --net --fork --mount-proc --kill-child``): it sees only its own
  processes, has no network (not even loopback to the host), and when the run is killed the
  namespace's init dies, which makes the kernel kill every process left in it, including
  grandchildren that called ``setsid``;
* when running as root (where ``RLIMIT_NPROC`` is not enforced) and a pids cgroup is writable,
  each run also gets its own cgroup with ``pids.max`` = ``max_processes``: a fork bomb stops at
  that count instead of exhausting the machine's PIDs.

The holder is made once rather than per run because remounting every mount costs one
``mount`` call each; entering an existing namespace costs one ``nsenter`` exec (~1 ms).

Fallback (``unshare`` refused, e.g. inside Docker's default seccomp profile): a warning is
logged once and runs get only a process group, rlimits and the scrubbed environment: no
network or filesystem isolation, and a ``setsid`` escapee survives unless the pids cgroup
(root only) catches it.

macOS: ``sandbox-exec`` with a profile that denies network access and file writes outside the
run's temp dir (and /dev/null); processes live in their own process group; ``RLIMIT_AS`` is
not enforced by the kernel, so memory is not limited; a ``setsid`` escapee survives.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("rfai.scorers")

_HOLDER_SCRIPT = r"""
base="$1"
mount --bind "$base" "$base" || exit 3
awk '{print $5}' /proc/self/mountinfo | while read -r point; do
  [ "$point" = "$base" ] && continue
  mount -o remount,bind,ro "$point" 2>/dev/null
done
echo ready
exec sleep 2147483647
"""

_MACOS_PROFILE = """(version 1)
(allow default)
(deny network*)
(deny file-write*)
(allow file-write* (subpath "{workdir}") (literal "/dev/null") (literal "/dev/zero"))
"""

_HOLDER_UNSHARE = ("unshare", "--user", "--map-root-user", "--mount", "--propagation", "private")
_CGROUP_ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")


@dataclass
class Isolation:
    """The mechanisms available here. ``mode``: ``namespaces``, ``sandbox-exec`` or ``rlimits``."""

    mode: str
    base_dir: Path
    holder_pid: int | None = None
    cgroup_root: Path | None = None

    def describe(self) -> str:
        extra = f", pids cgroup under {self.cgroup_root}" if self.cgroup_root else ""
        return f"sandbox isolation: {self.mode}{extra}; run dirs under {self.base_dir}"

    def wrap(self, argv: list[str], workdir: str) -> list[str]:
        """``argv`` wrapped in the namespace / sandbox-exec launchers of this mode."""
        if self.mode == "namespaces":
            self._check_holder()
            enter = ["nsenter", f"--target={self.holder_pid}", "--user", "--mount"]
            enter.append("--preserve-credentials")
            new = ["unshare", "--pid", "--net", "--fork", "--mount-proc", "--kill-child"]
            new.append(f"--wd={workdir}")  # after the mount namespace: a reachable cwd
            return [*enter, *new, *argv]
        if self.mode == "sandbox-exec":
            profile = _MACOS_PROFILE.format(workdir=os.path.realpath(workdir))
            return ["sandbox-exec", "-p", profile, *argv]
        return argv

    def _check_holder(self) -> None:
        try:
            os.kill(self.holder_pid, 0)
        except ProcessLookupError:
            raise RuntimeError(
                f"the sandbox's namespace holder (pid {self.holder_pid}) has died; "
                "restart the process to scoring again"
            ) from None

    def new_cgroup(self, max_processes: int) -> Path | None:
        """A fresh pids cgroup for one run, or None where cgroups are not used."""
        if self.cgroup_root is None:
            return None
        path = self.cgroup_root / f"rfai-{uuid.uuid4().hex[:12]}"
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
        except OSError:
            time.sleep(0.01)  # members still exiting: the directory is busy
    log.warning("could not remove cgroup %s: processes still exiting", path)


_lock = threading.Lock()
_isolation: Isolation | None = None


def get_isolation() -> Isolation:
    """The isolation of this process, detected (and logged) on first use."""
    global _isolation
    with _lock:
        if _isolation is None:
            _isolation = _detect()
            log.info(_isolation.describe())
        return _isolation


def _detect() -> Isolation:
    base = Path(tempfile.mkdtemp(prefix="rfai-sandbox-base-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    if sys.platform == "darwin":
        if shutil.which("sandbox-exec"):
            return Isolation("sandbox-exec", base)
        log.warning("sandbox-exec not found: sandboxed runs get rlimits and process groups only")
        return Isolation("rlimits", base)
    cgroup_root = _writable_cgroup() if os.geteuid() == 0 else None
    problem = _namespace_problem()
    if problem is None:
        holder, problem = _start_holder(base)
        if holder is not None:
            return Isolation("namespaces", base, holder, cgroup_root)
    log.warning(
        "sandbox FALLBACK: user namespaces are unavailable (%s), so sandboxed programs get "
        "rlimits, a process group and a scrubbed environment only: NO network or "
        "filesystem isolation. Allow unprivileged user namespaces (or run outside Docker's "
        "default seccomp profile) for full isolation.",
        problem,
    )
    return Isolation("rlimits", base, None, cgroup_root)


def _namespace_problem() -> str | None:
    for tool in ("unshare", "nsenter", "prlimit"):
        if shutil.which(tool) is None:
            return f"{tool} not found (util-linux)"
    probe = ["unshare", "--user", "--map-root-user", "--pid", "--net", "--fork", "true"]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        return f"`{' '.join(probe)}` failed: {result.stderr.strip()[:200]}"
    return None


def _start_holder(base: Path) -> tuple[int | None, str | None]:
    holder = subprocess.Popen(
        [*_HOLDER_UNSHARE, "sh", "-c", _HOLDER_SCRIPT, "holder", str(base)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )
    line = holder.stdout.readline()
    if line.strip() != "ready":
        holder.kill()
        _, err = holder.communicate()
        return None, f"namespace holder failed: {err.strip()[:200]}"
    holder.stdout.close()
    atexit.register(_stop_holder, holder)
    return holder.pid, None


def _stop_holder(holder: subprocess.Popen) -> None:
    holder.kill()
    holder.wait()


def _writable_cgroup() -> Path | None:
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
