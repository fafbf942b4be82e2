"""Linux only: the namespace holder, and the mount table each run applies inside it.

The *holder* is one process per scoring process, started in new user, mount and PID
namespaces (``unshare``). Inside, every mount except ``/proc`` is remounted read-only, and a
tmpfs of ``RUN_DIRS_MB`` (all runs together) covers the sandbox's base directory, where each
run's directory lives (created from outside through ``/proc/HOLDER/root``, see
``Isolation.run_parent`` in ``scorers/isolation.py``), so nothing a run writes reaches the
host's disk and all of it vanishes with the holder. The holder is its PID namespace's init
and waits on a pipe whose write end only the scoring process holds: when that process dies,
however it dies (SIGKILL included), the holder reads EOF and exits, and the kernel kills
every process in its PID namespace, which every run joins. It is also killed at exit.

``write_fstab`` writes, into that tmpfs, the mounts each run makes in its own nested mount
namespace when the portable chain (``sh`` + ``mount -a``) builds the walls; ``rfai-init``
(``scorers/sandbox_init.py``) makes the same mounts itself. Entering the namespaces and the
run's launch are ``Isolation.wrap``'s; detecting whether any of this works, and the
fallbacks, are ``scorers/isolation.py``'s; stale holders of killed processes are removed by
``scorers/isolation_state.py``.

Not covered here: the tmpfs of run directories is bounded for all concurrent runs together,
not per run (one run that fills it makes a sibling's writes fail with ENOSPC while it runs).
"""

from __future__ import annotations

import atexit
import subprocess
from pathlib import Path

RUN_DIR_INSIDE = "/run/rfai-run"  # the run's directory as the program sees it (cwd, HOME)
# Host directories each run sees replaced by a private tmpfs (or, /dev, a minimal read-only
# copy): nothing the sandbox must execute may live under them.
REPLACED_DIRS = ("/run", "/tmp", "/var/tmp", "/dev/shm", "/dev")
TMPFS_MB = 64  # size of each private tmpfs (/run, /tmp, /var/tmp, /dev/shm) per run
RUN_DIRS_MB = 2048  # the holder's tmpfs holding every run's directory (all runs together)
_TMPFS = "nosuid,nodev,size={size}m,mode={mode}"

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
_HOLDER_UNSHARE = (
    "unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
    "--pid", "--fork", "--kill-child",
)  # fmt: skip

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


def start_holder(base: Path) -> tuple[subprocess.Popen | None, str | None]:
    """The running holder with its tmpfs over ``base``, or None and why it failed."""
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


def write_fstab(parent: Path, base: Path) -> None:
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
        *(f"rfai-sandbox {d} tmpfs {scratch} 0 0" for d in ("/tmp", "/var/tmp", "/dev/shm")),
        f"rfai-sandbox /dev/pts tmpfs {_TMPFS.format(size=1, mode='755')} 0 0",
    ]
    (parent / ".fstab").write_text("\n".join(lines) + "\n")
