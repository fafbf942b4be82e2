"""How the sandbox isolates a run beyond rlimits: detected once per process, logged once.

This module detects what works here (``get_isolation``) and turns it into each run's launch
command (``Isolation.wrap``). The pieces live in their own modules: the Linux namespace holder
and the run's mount table in ``scorers/isolation_holder.py``; base directories, pids cgroups
and the clean-up of what a killed process left in ``scorers/isolation_state.py``; the macOS
``sandbox-exec`` profile in ``scorers/isolation_macos.py``; the run's C init in
``scorers/sandbox_init.py``. What each platform gets:

Linux, when unprivileged user namespaces work (``unshare --user`` succeeds):

* at start-up one *holder* is created in new user, mount and PID namespaces, with every mount
  read-only except a size-bounded tmpfs (``RUN_DIRS_MB``, all runs together) over the base
  directory where run directories live, so nothing a run writes reaches the host's disk. It
  exits when this process dies, however it dies (SIGKILL included), and the kernel then kills
  every process in its PID namespace, which every run joins (``scorers/isolation_holder.py``);
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
  effective), installs a seccomp filter (``rfai-init`` only: no ``socket(AF_UNIX)``, no new
  user namespaces, and the other refusals listed in ``scorers/sandbox_init.py``) and execs
  the program. Sibling runs' directories, host files and unix sockets
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
  those of a dead owner are removed and processes still naming them killed
  (``scorers/isolation_state.py``).

Not covered on Linux: files stay *readable* wherever the trainer's uid may read (as root:
root-owned files too; running programs as an unprivileged uid would need the toolchains to be
readable by it, which a root install under /root is not); the run's own directory is on the
holder's tmpfs, bounded for all concurrent runs together, not per run (a program that fills
it makes a sibling's writes fail with ENOSPC while it runs); memory in tmpfs, pipes and
memfds is not counted by ``RLIMIT_AS`` (bounded by the tmpfs sizes, ``max_file_bytes`` x
``max_open_files`` and the run's life); without ``rfai-init`` (no C compiler) there is no
seccomp filter: host unix sockets outside the covered directories stay reachable when their
mode lets the trainer's uid connect, and a program may create user namespaces (the mounts
stay locked and procfs/sysfs cannot be mounted afresh: the read-only ``/proc`` parts and
``/sys`` make them "too revealing"); CPU time is per process (a forked child starts at zero).

Fallback (``unshare`` refused, e.g. inside Docker's default seccomp profile): a warning is
logged once and runs get only a process group, rlimits and the scrubbed environment: no
network or filesystem isolation, a program can signal the trainer (same uid), and a
``setsid`` escapee survives unless the pids cgroup (root only) catches it.

macOS: ``sandbox-exec`` with a profile that denies network access (unix sockets included), file
writes outside the run's directory (and /dev/null) and signals to processes outside the sandbox
(the profile is tried once at start-up on ``/usr/bin/true``; where the signal rules are refused
they are dropped with a warning, where the whole profile is refused runs fall back to rlimits,
also with a warning: ``scorers/isolation_macos.py``); processes live in their own process
group; ``RLIMIT_AS`` is not enforced by the kernel, so memory is not limited; a ``setsid``
escapee survives; there is no parent-death mechanism (an in-flight program of a killed
trainer lives until its CPU limit); ``/tmp`` is shared with the host (readable, not
writable); stale base directories are cleaned at the next start as on Linux.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from scorers import isolation_macos
from scorers.isolation_holder import (
    REPLACED_DIRS,
    RUN_DIR_INSIDE,
    TMPFS_MB,
    start_holder,
    write_fstab,
)
from scorers.isolation_state import (
    BASE_PREFIX,
    clean_stale,
    new_cgroup,
    owner_tag,
    writable_cgroup,
)
from scorers.sandbox_init import build_init
from scorers.sandbox_io import EXEC_FILES

log = logging.getLogger("rfai.scorers")

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
_RUN_UNSHARE = (
    "unshare", "--user", "--map-root-user", "--mount", "--pid", "--net", "--ipc",
    "--fork", "--kill-child", "--mount-proc",
)  # fmt: skip


@dataclass
class Isolation:
    """The mechanisms available here. ``mode``: ``namespaces``, ``sandbox-exec`` or ``rlimits``."""

    mode: str
    base_dir: Path
    holder_pid: int | None = None
    cgroup_root: Path | None = None
    holder: subprocess.Popen | None = field(default=None, repr=False)
    init: Path | None = None  # the compiled rfai-init (scorers/sandbox_init.py), if built
    macos_profile: str = isolation_macos.STRICTEST  # sandbox-exec mode: as validated

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

    def hides(self, path: str) -> str | None:
        """The directory that makes ``path`` invisible inside a run, or None if it is seen.

        Namespace mode replaces ``/tmp``, ``/run``, ... and the base directory in every run,
        so an interpreter or compiler installed under one of them cannot be executed there.
        """
        if self.mode != "namespaces":
            return None
        real = os.path.realpath(path)
        for hidden in (*REPLACED_DIRS, str(self.base_dir)):
            if real == hidden or real.startswith(hidden.rstrip("/") + "/"):
                return hidden
        return None

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
        (``scorers.sandbox._rlimits``) are set by the run's init (``rfai-init``, or the
        portable chain's ``ulimit`` builtin).
        """
        if self.mode == "namespaces":
            return self._wrap_namespaces(argv, workdir, str(stderr_fd or 2), rlimits or {})
        if self.mode == "sandbox-exec":
            profile = self.macos_profile.format(workdir=os.path.realpath(workdir))
            return ["sandbox-exec", "-p", profile, *argv]
        return argv

    def _wrap_namespaces(
        self, argv: list[str], workdir: str, stderr_fd: str, rlimits: dict[str, int]
    ) -> list[str]:
        self._check_holder()
        # Entering the holder's PID namespace ties the run to the holder's life, and so to
        # ours: when we die the holder reads EOF and exits, and the kernel kills every
        # process in its PID namespace, nested ones included (no pdeathsig needed here,
        # which a thread's exit would also fire).
        pid_ns = f"--pid=/proc/{self.holder_pid}/ns/pid_for_children"
        enter = ["nsenter", f"--target={self.holder_pid}", "--user", "--mount", pid_ns]
        enter.append("--preserve-credentials")
        new = [*_RUN_UNSHARE, f"--wd={self.base_dir / Path(workdir).name}"]
        if self.init is not None:
            numbers = [rlimits.get(k, 0) for k in ("cpu", "fsize", "nofile", "as", "nproc")]
            args = [stderr_fd, str(self.base_dir), str(TMPFS_MB), *map(str, numbers)]
            return [*enter, *new, str(self.init), *args, "--", *argv]
        fstab = str(self.base_dir / ".fstab")
        limits = _ulimit_script(rlimits)
        script = ["sh", "-c", _RUN_SCRIPT, fstab, RUN_DIR_INSIDE, stderr_fd, limits]
        return [*enter, *new, *script, *_DROP, *argv]

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
        return new_cgroup(self.cgroup_root, max_processes)


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
    with EXEC_FILES.forking():  # probed during runs: no fork while a binary is written
        probe = subprocess.run(["sh", "-c", "ulimit -u"], capture_output=True)
    return "-u" if probe.returncode == 0 else "-p"


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


def _temp_root() -> Path:
    root = Path(tempfile.gettempdir()).resolve()
    # /run is replaced by a tmpfs inside each run, and the run's directory is bound from base.
    return Path("/var/tmp") if root.parts[:2] == ("/", "run") else root


def _detect() -> Isolation:
    temp_root = _temp_root()
    cgroup_root = writable_cgroup() if os.geteuid() == 0 and sys.platform != "darwin" else None
    for path in clean_stale(temp_root, cgroup_root):
        log.warning("removed stale sandbox state of a dead process: %s", path)
    base = Path(tempfile.mkdtemp(prefix=f"{BASE_PREFIX}{owner_tag()}-", dir=temp_root))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    if sys.platform == "darwin":
        return _macos_isolation(base)
    problem = _namespace_problem()
    if problem is None:
        holder, problem = start_holder(base)
        if holder is not None:
            isolation = Isolation("namespaces", base, holder.pid, cgroup_root, holder)
            write_fstab(isolation.run_parent, base)
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
    """sandbox-exec with the strictest profile this macOS accepts, else rlimits only."""
    profile = isolation_macos.accepted_profile(base)
    if profile is None:
        return Isolation("rlimits", base)
    return Isolation("sandbox-exec", base, macos_profile=profile)


def _namespace_problem() -> str | None:
    for tool in ("unshare", "nsenter", "prlimit", "setpriv", "setsid", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not found (util-linux)"
    probe = ["unshare", "--user", "--map-root-user", "--pid", "--net", "--fork", "true"]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        return f"`{' '.join(probe)}` failed: {result.stderr.strip()[:200]}"
    return None
