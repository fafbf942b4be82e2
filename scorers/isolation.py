"""How the sandbox isolates a run beyond rlimits: detected once per process, logged once.

Linux, when unprivileged user namespaces work (``unshare --user`` succeeds):

* at start-up one *holder* is created in new user, mount and PID namespaces. Inside, every
  mount except ``/proc`` is remounted read-only, and a tmpfs of ``RUN_DIRS_MB`` (all runs
  together) covers the sandbox's base directory, where each run's directory lives: this
  process creates run directories through the holder's root (``Isolation.run_parent``), so
  nothing a run writes reaches the host's disk, and it all vanishes with the holder.
  The holder is its PID namespace's init and waits on a pipe whose
  write end only this process holds: when this process dies, however it dies (SIGKILL
  included), the holder exits and the kernel kills every process in its PID namespace,
  which every run joins;
* each run enters the holder's namespaces (``nsenter``) and creates its own *nested* user
  namespace plus new mount, PID, network and IPC namespaces (``unshare --user --mount --pid
  --net --ipc --fork --kill-child --mount-proc``). Mounts inherited into a mount namespace
  owned by a less privileged user namespace are locked by the kernel (``MNT_LOCK_READONLY``,
  ``MNT_LOCKED``): the read-only remounts cannot be undone, nor the run's own mounts removed;
* the run's first process (``rfai-init``, ``scorers/sandbox_init.py``, built once with the
  system's C compiler; without one the same steps run as ``sh`` + ``mount -a`` + ``setsid``
  + ``setpriv``) mounts fresh size-bounded tmpfs (``TMPFS_MB`` each) on ``/run``, ``/tmp``,
  ``/var/tmp``, ``/dev/shm``, ``/dev/pts`` and over the base directory, replaces ``/dev`` with
  a read-only one holding only null, zero, full, random, urandom and tty, makes ``/proc/sys``,
  ``/proc/sysrq-trigger``, ``/proc/irq``, ``/proc/bus``, ``/proc/fs``, ``/proc/acpi``,
  ``/proc/scsi`` and ``/proc/pressure`` read-only (as root, uid 0 without capabilities could
  still write sysctls such as ``kernel.core_pattern`` and root-owned devices: loop devices,
  ``/dev/kmsg``, the console), binds the run's own
  directory at ``/run/rfai-run`` (its working directory, HOME and TMPDIR), sets the rlimits,
  starts a new session (``kill(0, ...)`` reaches only the run's processes), sets
  no-new-privs, drops every capability (bounding, inheritable, ambient, permitted,
  effective) and execs the program. Sibling runs' directories, host files and unix sockets
  under those directories (``/tmp/*.sock``, an ssh-agent's ``/tmp/ssh-*``,
  ``/run/docker.sock``, ``/run/user/UID/...``) are not visible. The program runs as the
  trainer's own uid (uid 0 inside, without capabilities), sees only its own processes, has
  no network (abstract unix sockets are per network namespace) and no host SysV IPC;
* the program is its PID namespace's init: nothing inside can signal it, and the
  only SIGKILL it can get that this process did not send is the kernel's CPU limit (soft =
  hard ``RLIMIT_CPU``), which is how a CPU timeout is named (``scorers/sandbox.py``);
* when running as root (where ``RLIMIT_NPROC`` is not enforced) and a pids cgroup is writable,
  each run also gets its own cgroup with ``pids.max`` = ``max_processes`` (the program cannot
  leave it: ``/sys/fs/cgroup`` is read-only and it holds no capability);
* base directories and cgroups are named after their owner (pid and start time); at start-up
  those of a dead owner are removed and processes still naming them killed.

Not covered on Linux: files stay *readable* wherever the trainer's uid may read (as root:
root-owned files too; running programs as an unprivileged uid would need the toolchains to be
readable by it, which a root install under /root is not); unix sockets at a path outside the
covered directories (e.g. under ``/var/lib`` or the repository) stay reachable when their
mode lets the trainer's uid connect (no seccomp filter); the run's own directory is on the
holder's tmpfs, bounded for all concurrent runs together, not per run (a program that fills
it makes a sibling's writes fail with ENOSPC while it runs); memory in tmpfs, pipes and
memfds is not counted by ``RLIMIT_AS`` (bounded by the tmpfs sizes, ``max_file_bytes`` x
``max_open_files`` and the run's life); without ``rfai-init`` (no C compiler) there is no
seccomp filter: host unix sockets outside the covered directories stay reachable and a
program may create user namespaces (the mounts stay locked and procfs/sysfs cannot be
mounted afresh: the read-only ``/proc`` parts and ``/sys`` make them "too revealing"); CPU
time is per process (a forked child starts at zero).

Fallback (``unshare`` refused, e.g. inside Docker's default seccomp profile): a warning is
logged once and runs get only a process group, rlimits and the scrubbed environment: no
network or filesystem isolation, a program can signal the trainer (same uid), and a
``setsid`` escapee survives unless the pids cgroup (root only) catches it.

macOS: ``sandbox-exec`` with a profile that denies network access (unix sockets included), file
writes outside the run's directory (and /dev/null) and signals to processes outside the sandbox
(the profile is tried once at start-up on ``/usr/bin/true``; where the signal rules are refused
they are dropped with a warning, where the whole profile is refused runs fall back to rlimits,
also with a warning); processes live in their own process group; ``RLIMIT_AS`` is not enforced
by the kernel, so memory is not limited; a ``setsid`` escapee survives; there is no
parent-death mechanism (an in-flight program of a killed trainer lives until its CPU limit);
``/tmp``
is shared with the host (readable, not writable); stale base directories are cleaned at the
next start as on Linux.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from scorers.sandbox_init import build_init

log = logging.getLogger("rfai.scorers")

# The holder ends when stdin reaches EOF: the trainer holds the only write end.
_HOLDER_SCRIPT = r"""
base="$1"
mount -t tmpfs -o "nosuid,nodev,size=$2m,mode=700" rfai-runs "$base" || exit 3
awk '{print $5}' /proc/self/mountinfo | while read -r point; do
  case "$point" in "$base"|/proc|/proc/*) continue ;; esac
  mount -o remount,bind,ro "$point" 2>/dev/null
done
echo ready
read -r _
"""

# Per run, as the nested namespace's init: private mounts, then the program's chain with its
# stderr moved to its own pipe (fd $2, reopened: dash only names fds 0-9), so that what the
# launcher writes to fd 2 (unshare's relay of the init's death) cannot be forged by the
# program. Exit 125 if the walls cannot be built (the program never runs then).
_RUN_SCRIPT = (
    'mount -n -a -T "$0" || { echo "rfai sandbox: private mounts failed" >&2; exit 125; }; '
    'cd "$1" || exit 125; unset OLDPWD; exec 2>"/proc/self/fd/$2" || exit 125; '
    'eval "$3" || exit 125; shift 3; exec "$@"'
)
# util-linux's unshare (2.38) cannot re-raise SIGKILL on itself when the init it forked dies of
# it: it prints this and exits 1. Only the kernel can SIGKILL a PID namespace's init (signals
# from inside are ignored, and ours kill the launcher first), so this names the CPU limit.
INIT_KILLED = "sigprocmask unblock failed"
# After the mounts: own session, no capabilities, no new privileges.
_DROP = ("setsid", "setpriv", "--nnp", "--inh-caps=-all", "--bounding-set=-all")
RUN_DIR_INSIDE = "/run/rfai-run"
TMPFS_MB = 64  # size of each private tmpfs (/run, /tmp, /var/tmp, /dev/shm) per run
RUN_DIRS_MB = 2048  # the holder's tmpfs holding every run's directory (all runs together)
_TMPFS = "nosuid,nodev,size={size}m,mode={mode}"

_MACOS_PROFILE = """(version 1)
(allow default)
(deny network*)
(deny file-write*)
(allow file-write* (subpath "{workdir}") (literal "/dev/null") (literal "/dev/zero"))
"""
# Checked once at start-up (``_macos_isolation``): nobody here can run sandbox-exec, and a
# profile it refuses would fail every run, so without these lines if they are refused.
_MACOS_SIGNALS = """(deny signal)
(allow signal (target same-sandbox))
"""

# What a run's /dev holds (bound from the host's) and the procfs paths made read-only in it
# (as root, uid 0 without capabilities may still write root-owned device files and sysctls).
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
_PROC_READ_ONLY = (
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/pressure",
)

_HOLDER_UNSHARE = (
    "unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
    "--pid", "--fork", "--kill-child",
)  # fmt: skip
_RUN_UNSHARE = (
    "unshare", "--user", "--map-root-user", "--mount", "--pid", "--net", "--ipc",
    "--fork", "--kill-child", "--mount-proc",
)  # fmt: skip
_CGROUP_ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")
_BASE_PREFIX = "rfai-sandbox-"
_OWNED = re.compile(r"^rfai-(?:sandbox-)?(\d+)-(\d+)-")


@dataclass
class Isolation:
    """The mechanisms available here. ``mode``: ``namespaces``, ``sandbox-exec`` or ``rlimits``."""

    mode: str
    base_dir: Path
    holder_pid: int | None = None
    cgroup_root: Path | None = None
    holder: subprocess.Popen | None = field(default=None, repr=False)
    init: Path | None = None  # the compiled rfai-init (scorers/sandbox_init.py), if built
    macos_profile: str = _MACOS_PROFILE + _MACOS_SIGNALS  # sandbox-exec mode: as validated

    def describe(self) -> str:
        extra = f", pids cgroup under {self.cgroup_root}" if self.cgroup_root else ""
        if self.mode == "namespaces":
            extra += f"; run init {self.init or 'sh + mount + setsid + setpriv (no C compiler)'}"
        return f"sandbox isolation: {self.mode}{extra}; run dirs under {self.base_dir}"

    @property
    def run_parent(self) -> Path:
        """Where this process creates run directories.

        Namespace mode: the holder's tmpfs over ``base_dir``, reached through the holder's
        root (``/proc/PID/root``), so that what a run writes is bounded (``RUN_DIRS_MB``) and
        never lands on the host's disk; elsewhere ``base_dir`` itself.
        """
        if self.mode == "namespaces":
            return Path(f"/proc/{self.holder_pid}/root") / self.base_dir.relative_to("/")
        return self.base_dir

    def inside_dir(self, workdir: str) -> str:
        """The run directory as the program sees it (its cwd, HOME and TMPDIR)."""
        return RUN_DIR_INSIDE if self.mode == "namespaces" else workdir

    def wrap(
        self,
        argv: list[str],
        workdir: str,
        stderr_fd: int | None = None,
        rlimits: dict[str, int] | None = None,
    ) -> list[str]:
        """``argv`` wrapped in the namespace / sandbox-exec launchers of this mode.

        Namespaces only: ``stderr_fd``, a descriptor passed to the child, becomes the
        program's stderr (the launcher keeps fd 2 for its own messages); ``rlimits``
        (``scorers.sandbox._rlimits``) are set by the init script's ``ulimit`` builtin.
        """
        if self.mode == "namespaces":
            self._check_holder()
            # Entering the holder's PID namespace ties the run to the holder's life, and so to
            # ours: when we die the holder reads EOF and exits, and the kernel kills every
            # process in its PID namespace, nested ones included (no pdeathsig needed here,
            # which a thread's exit would also fire).
            pid_ns = f"--pid=/proc/{self.holder_pid}/ns/pid_for_children"
            enter = ["nsenter", f"--target={self.holder_pid}", "--user", "--mount", pid_ns]
            enter.append("--preserve-credentials")
            new = [*_RUN_UNSHARE, f"--wd={self.base_dir / Path(workdir).name}"]
            rlimits = rlimits or {}
            if self.init is not None:
                numbers = [rlimits.get(k, 0) for k in ("cpu", "fsize", "nofile", "as", "nproc")]
                args = [str(stderr_fd or 2), str(self.base_dir), str(TMPFS_MB), *map(str, numbers)]
                return [*enter, *new, str(self.init), *args, "--", *argv]
            fstab = str(self.base_dir / ".fstab")
            limits = _ulimit_script(rlimits)
            script = ["sh", "-c", _RUN_SCRIPT, fstab, RUN_DIR_INSIDE, str(stderr_fd or 2), limits]
            return [*enter, *new, *script, *_DROP, *argv]
        if self.mode == "sandbox-exec":
            profile = self.macos_profile.format(workdir=os.path.realpath(workdir))
            return ["sandbox-exec", "-p", profile, *argv]
        return argv

    def _check_holder(self) -> None:
        if self.holder is not None and self.holder.poll() is not None:
            raise RuntimeError(
                f"the sandbox's namespace holder (pid {self.holder_pid}) has died; "
                "restart the process to score again"
            )

    def new_cgroup(self, max_processes: int) -> Path | None:
        """A fresh pids cgroup for one run, or None where cgroups are not used."""
        if self.cgroup_root is None:
            return None
        path = self.cgroup_root / f"rfai-{_owner_tag()}-{uuid.uuid4().hex[:12]}"
        path.mkdir()
        (path / "pids.max").write_text(str(max_processes))
        return path


def _ulimit_script(rlimits: dict[str, int]) -> str:
    """``ulimit`` commands for ``sh`` (POSIX units: -f in 512-byte blocks, -v in KiB).

    Each sets soft and hard limits together. The process-count flag differs between shells
    (dash ``-p``, bash ``-u``) and is probed once.
    """
    parts = ["ulimit -c 0", f"ulimit -f {rlimits.get('fsize', 0) // 512}"]
    for flag, name, unit in (("-t", "cpu", 1), ("-n", "nofile", 1), ("-v", "as", 1024)):
        if rlimits.get(name):
            parts.append(f"ulimit {flag} {max(1, rlimits[name] // unit)}")
    if rlimits.get("nproc"):
        parts.append(f"ulimit {_nproc_flag()} {rlimits['nproc']}")
    return " && ".join(parts)


@functools.cache
def _nproc_flag() -> str:
    probe = subprocess.run(["sh", "-c", "ulimit -u"], capture_output=True)
    return "-u" if probe.returncode == 0 else "-p"


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


def _owner_tag() -> str:
    return f"{os.getpid()}-{_start_time(os.getpid())}"


def _owner_dead(name: str) -> bool:
    match = _OWNED.match(name)
    if match is None:
        return False  # not ours (or an older format): leave it alone
    return _start_time(int(match.group(1))) != match.group(2)


def clean_stale(temp_root: Path, cgroup_root: Path | None) -> list[str]:
    """Remove base dirs and cgroups left by dead owners; kill their processes. What was removed."""
    removed = []
    stale_dirs = [p for p in temp_root.glob(f"{_BASE_PREFIX}*") if _owner_dead(p.name)]
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


def _temp_root() -> Path:
    root = Path(tempfile.gettempdir()).resolve()
    # /run is replaced by a tmpfs inside each run, and the run's directory is bound from base.
    return Path("/var/tmp") if root.parts[:2] == ("/", "run") else root


def _detect() -> Isolation:
    temp_root = _temp_root()
    cgroup_root = _writable_cgroup() if os.geteuid() == 0 and sys.platform != "darwin" else None
    for path in clean_stale(temp_root, cgroup_root):
        log.warning("removed stale sandbox state of a dead process: %s", path)
    base = Path(tempfile.mkdtemp(prefix=f"{_BASE_PREFIX}{_owner_tag()}-", dir=temp_root))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    if sys.platform == "darwin":
        return _macos_isolation(base)
    problem = _namespace_problem()
    if problem is None:
        holder, problem = _start_holder(base)
        if holder is not None:
            isolation = Isolation("namespaces", base, holder.pid, cgroup_root, holder)
            _write_fstab(isolation.run_parent, base)
            isolation.init = build_init()
            return isolation
    log.warning(
        "sandbox FALLBACK: user namespaces are unavailable (%s), so sandboxed programs get "
        "rlimits, a process group and a scrubbed environment only: NO network or "
        "filesystem isolation. Allow unprivileged user namespaces (or run outside Docker's "
        "default seccomp profile) for full isolation.",
        problem,
    )
    return Isolation("rlimits", base, None, cgroup_root)


def _macos_isolation(base: Path) -> Isolation:
    """sandbox-exec with the strictest profile this macOS accepts (tried on ``/usr/bin/true``).

    The signal rules are dropped, with a warning, where they are refused; where even the
    profile without them is refused, or there is no sandbox-exec, runs get rlimits only.
    """
    if shutil.which("sandbox-exec") is None:
        log.warning("sandbox-exec not found: sandboxed runs get rlimits and process groups only")
        return Isolation("rlimits", base)
    refused = []
    for profile in (_MACOS_PROFILE + _MACOS_SIGNALS, _MACOS_PROFILE):
        argv = ["sandbox-exec", "-p", profile.format(workdir=base.resolve()), "/usr/bin/true"]
        probe = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            if refused:
                log.warning(
                    "sandbox-exec refused the profile's signal rules (%s): sandboxed programs "
                    "can signal processes outside the sandbox, the trainer included",
                    refused[0],
                )
            return Isolation("sandbox-exec", base, macos_profile=profile)
        refused.append(f"exit {probe.returncode}: {probe.stderr.strip()[:200]}")
    log.warning(
        "sandbox FALLBACK: sandbox-exec refused every profile (%s), so sandboxed programs get "
        "rlimits and a process group only: NO network or filesystem isolation",
        "; ".join(refused),
    )
    return Isolation("rlimits", base)


def _write_fstab(parent: Path, base: Path) -> None:
    """The mounts each run makes in its own namespace, in order (read by ``mount -a``).

    ``.`` is the run's directory (``unshare --wd``); it is bound before the tmpfs over the base
    directory and ``/tmp`` hides it. Sources are named ``rfai-sandbox`` so that mount does not
    take a host tmpfs on the same path for "already mounted". Written into the holder's tmpfs
    (``parent``, which is ``base`` inside). ``/dev`` becomes ``.dev`` (the
    harmless devices bound onto empty files, read-only) and the root-writable parts of
    ``/proc`` are made read-only, as ``rfai-init`` does (``scorers/sandbox_init.py``).
    """
    scratch = _TMPFS.format(size=TMPFS_MB, mode="1777")
    dev = base / ".dev"
    (parent / ".dev").mkdir()
    lines = [
        f"rfai-sandbox /run tmpfs {scratch} 0 0",
        f". {RUN_DIR_INSIDE} none bind,x-mount.mkdir 0 0",
    ]
    for name in _DEVICES:
        (parent / ".dev" / name).touch()
        lines.append(f"/dev/{name} {dev / name} none bind 0 0")
    for name, target in _DEV_LINKS:
        (parent / ".dev" / name).symlink_to(target)
    (parent / ".dev" / "shm").mkdir(mode=0o1777)
    (parent / ".dev" / "pts").mkdir()
    lines.append(f"{dev} /dev none rbind,ro,nosuid,nodev 0 0")
    lines += [f"{p} {p} none bind,ro 0 0" for p in _PROC_READ_ONLY if Path(p).exists()]
    lines += [
        f"rfai-sandbox {base} tmpfs {_TMPFS.format(size=1, mode='755')} 0 0",
        f"rfai-sandbox /tmp tmpfs {scratch} 0 0",
        f"rfai-sandbox /var/tmp tmpfs {scratch} 0 0",
        f"rfai-sandbox /dev/shm tmpfs {scratch} 0 0",
        f"rfai-sandbox /dev/pts tmpfs {_TMPFS.format(size=1, mode='755')} 0 0",
    ]
    (parent / ".fstab").write_text("\n".join(lines) + "\n")


def _namespace_problem() -> str | None:
    for tool in ("unshare", "nsenter", "prlimit", "setpriv", "setsid", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not found (util-linux)"
    probe = ["unshare", "--user", "--map-root-user", "--pid", "--net", "--fork", "true"]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        return f"`{' '.join(probe)}` failed: {result.stderr.strip()[:200]}"
    return None


def _start_holder(base: Path) -> tuple[subprocess.Popen | None, str | None]:
    holder = subprocess.Popen(
        [*_HOLDER_UNSHARE, "sh", "-c", _HOLDER_SCRIPT, "holder", str(base), str(RUN_DIRS_MB)],
        stdin=subprocess.PIPE,  # never written: EOF (our death) ends the holder
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
    return holder, None


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
