"""Run generated code in a separate, resource-limited process.

This is the only module in rfai that starts processes running model-written code (the trainer
never executes it in its own process). This first slice of the sandbox covers:

* a separate process in a new session (its own process group), stdin from /dev/null;
* a fresh temporary working directory per run, holding only the given files, deleted after;
* a minimal environment (PATH, LANG, HOME=the temp dir, PYTHONDONTWRITEBYTECODE,
  PYTHONHASHSEED): nothing is inherited from the trainer, so API tokens and keys do not leak;
* kernel resource limits: CPU seconds, address space (memory), size of written files, open
  files, and the process count when not running as root (for root RLIMIT_NPROC is not enforced);
* a wall-clock limit, after which the whole process group is killed with SIGKILL;
* stdout/stderr read concurrently and capped; past the cap the group is killed;
* after every run the process group is killed, so daemons the program forked are cleaned up;
* an optional report channel: a pipe whose write end the child finds in the environment
  variable ``SANDBOX_REPORT_FD``, so a test harness can report results away from stdout.

What it does NOT do (the full sandbox is a later issue):

* no network isolation: the program can open sockets;
* no filesystem isolation: the program can read (and, with the process's permissions, write)
  files outside its temp directory;
* no protection against forged harness output: the program runs in the harness's process and
  can write to the report channel itself, so a hostile program can claim its tests passed;
* a process that calls ``setsid()`` leaves the process group and survives the clean-up kill;
* on macOS the address-space limit is not applied (the kernel does not enforce RLIMIT_AS), so
  ``memory_mb`` is not a limit there.

Limits are set by a tiny launcher (``python -I -S -c ...``) that calls ``setrlimit`` and then
``exec``s the real command, rather than by ``preexec_fn``: the scoring pool starts processes
from several threads, and ``preexec_fn`` is documented as unsafe in threaded programs.
"""

from __future__ import annotations

import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

REPORT_FD_ENV = "SANDBOX_REPORT_FD"

# After the main process exits (or is killed), how long to keep draining pipes before giving
# up on a straggler that escaped the process group and still holds them open.
_DRAIN_GRACE_SECONDS = 0.5
_READ_CHUNK = 65536

# Sets the limits passed on argv, then replaces itself with the real command.
_LAUNCHER = r"""
import os, resource, sys
cpu, mem, fsize, nofile, nproc = (int(v) for v in sys.argv[1:6])
def limit(which, soft, hard):
    cur_soft, cur_hard = resource.getrlimit(which)
    if cur_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, cur_hard), min(hard, cur_hard)
    resource.setrlimit(which, (soft, hard))
# Soft CPU limit sends SIGXCPU; the hard limit one second later is SIGKILL.
limit(resource.RLIMIT_CPU, cpu, cpu + 1)
if mem > 0:
    limit(resource.RLIMIT_AS, mem, mem)
limit(resource.RLIMIT_FSIZE, fsize, fsize)
limit(resource.RLIMIT_NOFILE, nofile, nofile)
if nproc > 0:
    limit(resource.RLIMIT_NPROC, nproc, nproc)
argv = sys.argv[6:]
try:
    os.execvp(argv[0], argv)
except OSError as exc:
    sys.stderr.write("sandbox: cannot execute %r: %s\n" % (argv[0], exc))
    sys.exit(127)
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits.

    wall_seconds    wall-clock time before the whole process group is killed
    cpu_seconds     CPU time (RLIMIT_CPU, rounded up to whole seconds)
    memory_mb       address space (RLIMIT_AS); not applied on macOS
    output_bytes    cap on each of stdout, stderr and the report channel
    max_open_files  RLIMIT_NOFILE
    max_file_bytes  largest file the program may write (RLIMIT_FSIZE)
    max_processes   RLIMIT_NPROC, skipped for root. The kernel counts every process of the
                    user, not only the sandbox's, so this is a brake on fork bombs rather than
                    a per-run count; raise it on a machine where the user runs many processes.
    """

    wall_seconds: float = 10.0
    cpu_seconds: float = 10.0
    memory_mb: int = 1024
    output_bytes: int = 65536
    max_open_files: int = 64
    max_file_bytes: int = 16 * 2**20
    max_processes: int = 256

    def __post_init__(self) -> None:
        for name in ("wall_seconds", "cpu_seconds", "memory_mb", "output_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxLimits.{name} must be > 0, got {getattr(self, name)}")
        # Python itself needs a handful of descriptors (std streams, imports, the report pipe).
        if self.max_open_files < 16:
            raise ValueError(
                f"SandboxLimits.max_open_files must be >= 16, got {self.max_open_files}"
            )
        if self.max_file_bytes < 0 or self.max_processes < 1:
            raise ValueError("SandboxLimits.max_file_bytes must be >= 0, max_processes >= 1")


@dataclass(frozen=True)
class ProcessResult:
    """What one sandboxed run did. Text is capped at ``output_bytes`` and decoded leniently.

    ``returncode`` is negative for death by signal (as in subprocess), None if never reaped.
    ``memory_exceeded`` is best effort: a MemoryError/bad_alloc/allocation failure on stderr.
    ``timed_out`` covers both the wall-clock limit and the CPU limit (death by SIGXCPU).
    """

    returncode: int | None
    stdout: str
    stderr: str
    report: str
    wall_seconds: float
    timed_out: bool
    output_exceeded: bool
    memory_exceeded: bool


def python_argv(script: str) -> list[str]:
    """argv running ``script`` with this interpreter in isolated mode (no env, no user site)."""
    return [sys.executable, "-I", script]


def run_process(
    argv: list[str],
    *,
    files: dict[str, str],
    limits: SandboxLimits,
    report_channel: bool = False,
) -> ProcessResult:
    """Run ``argv`` in a fresh temp dir containing ``files`` (relative name -> text)."""
    if not argv:
        raise ValueError("run_process needs a non-empty argv")
    with tempfile.TemporaryDirectory(prefix="rfai-sandbox-") as workdir:
        for name, text in files.items():
            _write_file(Path(workdir), name, text)
        return _run_in(argv, workdir, limits, report_channel)


def _write_file(workdir: Path, name: str, text: str) -> None:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"sandbox file name must be relative and stay inside the dir: {name!r}")
    path = workdir.joinpath(*relative.parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _launcher_argv(argv: list[str], limits: SandboxLimits) -> list[str]:
    cpu = max(1, math.ceil(limits.cpu_seconds))
    mem = 0 if sys.platform == "darwin" else limits.memory_mb * 2**20
    nproc = limits.max_processes if os.geteuid() != 0 else 0
    numbers = [cpu, mem, limits.max_file_bytes, limits.max_open_files, nproc]
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, *map(str, numbers), *argv]


def _minimal_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": workdir,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


def _run_in(
    argv: list[str], workdir: str, limits: SandboxLimits, report_channel: bool
) -> ProcessResult:
    env = _minimal_env(workdir)
    pass_fds: tuple[int, ...] = ()
    report_read = report_write = -1
    if report_channel:
        report_read, report_write = os.pipe()
        env[REPORT_FD_ENV] = str(report_write)
        pass_fds = (report_write,)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            _launcher_argv(argv, limits),
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    except BaseException:
        if report_channel:
            os.close(report_read)
            os.close(report_write)
        raise
    if report_channel:
        os.close(report_write)  # only the child holds the write end: EOF when it is gone
    streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    if report_channel:
        streams[report_read] = "report"
    try:
        captured, timed_out, output_exceeded = _pump(proc, streams, start, limits)
    finally:
        _kill_group(proc.pid)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        if report_channel:
            os.close(report_read)
    wall = time.monotonic() - start
    stderr = captured["stderr"].decode("utf-8", errors="replace")
    returncode = proc.returncode
    if returncode == -signal.SIGXCPU:
        timed_out = True  # the soft CPU limit; its default action ends the process
    return ProcessResult(
        returncode=returncode,
        stdout=captured["stdout"].decode("utf-8", errors="replace"),
        stderr=stderr,
        report=captured.get("report", b"").decode("utf-8", errors="replace"),
        wall_seconds=wall,
        timed_out=timed_out,
        output_exceeded=output_exceeded,
        memory_exceeded=_looks_like_memory_error(stderr),
    )


def _pump(
    proc: subprocess.Popen, streams: dict[int, str], start: float, limits: SandboxLimits
) -> tuple[dict[str, bytearray], bool, bool]:
    """Read all streams until EOF, the wall limit or the output cap; kill the group on either.

    One thread with a selector rather than a thread per pipe, so that a pipe held open by a
    straggler cannot block us: reading stops ``_DRAIN_GRACE_SECONDS`` after the main process
    is gone.
    """
    captured = {name: bytearray() for name in streams.values()}
    timed_out = output_exceeded = False
    deadline = start + limits.wall_seconds
    stop_at: float | None = None  # set once the main process has exited or been killed
    with selectors.DefaultSelector() as selector:
        for fd, name in streams.items():
            selector.register(fd, selectors.EVENT_READ, name)
        while selector.get_map():
            now = time.monotonic()
            if stop_at is None and proc.poll() is not None:
                _kill_group(proc.pid)  # daemons it left behind would hold the pipes open
                stop_at = now + _DRAIN_GRACE_SECONDS
            if stop_at is None and now >= deadline:
                timed_out = True
                _kill_group(proc.pid)
                stop_at = now + _DRAIN_GRACE_SECONDS
            if stop_at is not None and now >= stop_at:
                break
            until = stop_at if stop_at is not None else deadline
            for key, _ in selector.select(timeout=max(0.0, min(until - now, 0.05))):
                data = os.read(key.fd, _READ_CHUNK)
                if not data:
                    selector.unregister(key.fd)
                    continue
                buffer = captured[key.data]
                room = limits.output_bytes - len(buffer)
                buffer += data[:room]
                if len(data) > room:
                    output_exceeded = True
                    selector.unregister(key.fd)
                    _kill_group(proc.pid)
                    if stop_at is None:
                        stop_at = time.monotonic() + _DRAIN_GRACE_SECONDS
    return captured, timed_out, output_exceeded


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is already empty: nothing left to kill
    except PermissionError:
        # macOS answers EPERM when the only members left are zombies; they are harmless.
        pass


_MEMORY_MARKERS = ("MemoryError", "std::bad_alloc", "memory allocation of")


def _looks_like_memory_error(stderr: str) -> bool:
    return any(marker in stderr for marker in _MEMORY_MARKERS)
