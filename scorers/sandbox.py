"""Run generated code in a separate, resource-limited, isolated process.

This is the only module in rfai that starts processes running model-written code (the trainer
never executes it in its own process); compilers run through it too. Every run gets:

* a separate process in a new session (its own process group); stdin is /dev/null, or a pipe
  carrying ``stdin`` bytes and then closed (how a harness is handed its tests and key
  without putting them in a file or the environment);
* a fresh temporary working directory holding only the given files, deleted after;
* a minimal environment (PATH, LANG, HOME=TMPDIR=the temp dir, PYTHONDONTWRITEBYTECODE,
  PYTHONHASHSEED, plus what the caller lists in ``env``, where names that look like secrets
  (``*_TOKEN``, ``*_KEY``, ``HF_*``, ``OPENAI_*``, ``ANTHROPIC_*``, ...) are refused): nothing is
  inherited from the trainer, so API tokens and keys do not leak;
* kernel resource limits set by ``prlimit`` (or ``ulimit`` in ``sh`` where prlimit is missing):
  CPU seconds, address space (memory), size of written files, open files, and the process
  count when not running as root (for root the kernel does not enforce RLIMIT_NPROC; see
  ``scorers/isolation.py`` for the pids cgroup used instead);
* a wall-clock limit, after which the whole process tree is killed with SIGKILL;
* stdout/stderr read concurrently and capped; past the cap the tree is killed;
* after every run the process group (and the PID namespace / cgroup, where used) is killed,
  so daemons the program forked are cleaned up;
* an optional report channel: a pipe whose write end the child finds in the environment
  variable ``SANDBOX_REPORT_FD``, so a test harness can report results away from stdout.

What is and is not isolated per platform (details in ``scorers/isolation.py``):

* Linux with user namespaces: private PID namespace (kill tree includes ``setsid`` escapees),
  no network, the whole filesystem read-only except the run's own directory (and the other
  runs' directories under the same base). Files stay *readable*: a program can read anything
  the trainer's user can read (but it has no network to send it anywhere, and its output
  goes only into the trainer's logs and datasets).
* Linux fallback (user namespaces refused, e.g. in Docker): rlimits, process group and
  scrubbed environment only; the program can open sockets, write where the user can, and a
  ``setsid`` escapee survives the run (unless the root-only pids cgroup is available). A
  warning says so once at start-up.
* macOS: ``sandbox-exec`` denies network and writes outside the run's dir; RLIMIT_AS is not
  enforced by the kernel (so ``memory_mb`` is not a limit there), and a ``setsid`` escapee
  survives.
* Everywhere: no protection against forged harness output: the program runs in the
  harness's process and can write to the report channel itself, so a hostile program can
  claim its tests passed. CPU time is shared: runs are not pinned to cores.

Limits are applied by a launcher executable (prlimit) rather than by ``preexec_fn``: the
scoring pool starts processes from several threads, and ``preexec_fn`` is documented as
unsafe in threaded programs; a Python launcher would add one interpreter start-up per run.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from scorers.isolation import get_isolation, remove_cgroup

REPORT_FD_ENV = "SANDBOX_REPORT_FD"

# After the main process exits (or is killed), how long to keep draining pipes before giving
# up on a straggler that escaped the process group and still holds them open.
_DRAIN_GRACE_SECONDS = 0.5
_READ_CHUNK = 65536
SECRET_PATTERNS = (
    "*_TOKEN", "*_KEY", "*SECRET*", "*PASSWORD*", "HF_*", "OPENAI_*", "ANTHROPIC_*", "AWS_*",
)  # fmt: skip
# Joins the run's pids cgroup, then becomes the real command (root only, see isolation.py).
_JOIN_CGROUP = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
# Where prlimit is missing (macOS): ulimit in sh. -f counts 512-byte blocks in POSIX sh.
_ULIMIT = (
    'ulimit -H -t "$1" && ulimit -S -t "$2" && ulimit -f "$3" && ulimit -n "$4" && '
    '{ [ "$5" = 0 ] || ulimit -u "$5"; } && shift 5 && exec "$@"'
)


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits.

    wall_seconds    wall-clock time before the whole process tree is killed
    cpu_seconds     CPU time (RLIMIT_CPU, rounded up to whole seconds)
    memory_mb       address space (RLIMIT_AS); not applied on macOS
    output_bytes    cap on each of stdout, stderr and the report channel
    max_open_files  RLIMIT_NOFILE
    max_file_bytes  largest file the program may write (RLIMIT_FSIZE)
    max_processes   RLIMIT_NPROC when not root (inside a user namespace the kernel counts
                    the run's own processes); as root, ``pids.max`` of the run's cgroup
                    where one is writable.
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
    ``cpu_seconds`` is the CPU time of the reaped process tree (user + system).
    ``files`` holds the files named in ``collect`` that the run left in its directory.
    """

    returncode: int | None
    stdout: str
    stderr: str
    report: str
    wall_seconds: float
    timed_out: bool
    output_exceeded: bool
    memory_exceeded: bool
    files: dict[str, bytes] | None = None
    cpu_seconds: float = 0.0


def python_argv(script: str) -> list[str]:
    """argv running ``script`` with this interpreter in isolated mode (no env, no user site)."""
    return [sys.executable, "-I", script]


def run_process(
    argv: list[str],
    *,
    files: Mapping[str, str | bytes],
    limits: SandboxLimits,
    report_channel: bool = False,
    env: Mapping[str, str] | None = None,
    collect: tuple[str, ...] = (),
    stdin: bytes | None = None,
) -> ProcessResult:
    """Run ``argv`` in a fresh temp dir containing ``files`` (relative name -> text or bytes).

    ``stdin``: bytes written to the program's standard input, which is then closed (EOF);
    None gives it /dev/null.

    Bytes files are written executable (compiled programs). ``env`` adds variables to the
    minimal environment; secret-looking names are refused. ``collect`` names files to read
    back from the directory after the run (a compiler's output).
    """
    if not argv:
        raise ValueError("run_process needs a non-empty argv")
    for name in env or {}:
        if any(fnmatch.fnmatchcase(name.upper(), pattern) for pattern in SECRET_PATTERNS):
            raise ValueError(f"refusing to pass {name!r} to a sandboxed program: looks secret")
    isolation = get_isolation()
    with tempfile.TemporaryDirectory(prefix="run-", dir=isolation.base_dir) as workdir:
        for name, content in files.items():
            _write_file(Path(workdir), name, content)
        cgroup = isolation.new_cgroup(limits.max_processes)
        try:
            wrapped = isolation.wrap(_limited_argv(argv, limits, cgroup is None), workdir)
            if cgroup is not None:
                wrapped = ["sh", "-c", _JOIN_CGROUP, str(cgroup), *wrapped]
            result = _run_in(wrapped, workdir, limits, report_channel, env or {}, stdin)
        finally:
            if cgroup is not None:
                remove_cgroup(cgroup)
        if collect:
            found = {n: Path(workdir, n) for n in collect if Path(workdir, n).is_file()}
            result = _with_files(result, {n: p.read_bytes() for n, p in found.items()})
        return result


def _with_files(result: ProcessResult, files: dict[str, bytes]) -> ProcessResult:
    return ProcessResult(**{**result.__dict__, "files": files})


def _write_file(workdir: Path, name: str, content: str | bytes) -> None:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"sandbox file name must be relative and stay inside the dir: {name!r}")
    path = workdir.joinpath(*relative.parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
        path.chmod(0o755)
    else:
        path.write_text(content, encoding="utf-8")


def _limited_argv(argv: list[str], limits: SandboxLimits, use_nproc: bool) -> list[str]:
    cpu = max(1, math.ceil(limits.cpu_seconds))
    mem = 0 if sys.platform == "darwin" else limits.memory_mb * 2**20
    # As root RLIMIT_NPROC is not enforced; the run's pids cgroup (if any) limits instead.
    nproc = limits.max_processes if os.geteuid() != 0 and use_nproc else 0
    if shutil.which("prlimit"):
        # Soft CPU limit sends SIGXCPU; the hard limit one second later is SIGKILL.
        args = ["prlimit", f"--cpu={cpu}:{cpu + 1}", f"--fsize={limits.max_file_bytes}"]
        args.append(f"--nofile={limits.max_open_files}")
        if mem:
            args.append(f"--as={mem}")
        if nproc:
            args.append(f"--nproc={nproc}")
        return [*args, *argv]
    blocks = limits.max_file_bytes // 512
    numbers = [cpu + 1, cpu, blocks, limits.max_open_files, nproc]
    return ["sh", "-c", _ULIMIT, "sandbox", *map(str, numbers), *argv]


def _minimal_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


def _run_in(
    argv: list[str],
    workdir: str,
    limits: SandboxLimits,
    report_channel: bool,
    extra_env: Mapping[str, str],
    stdin_data: bytes | None = None,
) -> ProcessResult:
    env = {**_minimal_env(workdir), **extra_env}
    pass_fds: tuple[int, ...] = ()
    report_read = report_write = -1
    if report_channel:
        report_read, report_write = os.pipe()
        env[REPORT_FD_ENV] = str(report_write)
        pass_fds = (report_write,)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
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
    if stdin_data is not None:
        _feed(proc, stdin_data)
    streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    if report_channel:
        streams[report_read] = "report"
    reaped = _Reaper(proc)
    try:
        captured, timed_out, output_exceeded = _pump(reaped, streams, start, limits)
    finally:
        _kill_group(proc.pid)
        reaped.wait()
        proc.stdout.close()
        proc.stderr.close()
        if report_channel:
            os.close(report_read)
    wall = time.monotonic() - start
    stderr = captured["stderr"].decode("utf-8", errors="replace")
    returncode = reaped.returncode
    # The soft CPU limit's SIGXCPU ends the program, but inside a PID namespace unshare cannot
    # re-raise it, so the CPU time of the reaped tree tells instead of the exit status.
    if returncode == -signal.SIGXCPU or reaped.cpu_seconds >= math.ceil(limits.cpu_seconds):
        timed_out = True
    return ProcessResult(
        returncode=returncode,
        stdout=captured["stdout"].decode("utf-8", errors="replace"),
        stderr=stderr,
        report=captured.get("report", b"").decode("utf-8", errors="replace"),
        wall_seconds=wall,
        timed_out=timed_out,
        output_exceeded=output_exceeded,
        memory_exceeded=_looks_like_memory_error(stderr),
        cpu_seconds=reaped.cpu_seconds,
    )


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    """Write ``data`` to the child's stdin from a thread, then close it.

    A thread, so that a program that never reads its stdin cannot block the reader of its
    stdout (a pipe holds 64 KiB); a program that exits without reading is not an error.
    """

    def write() -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.write(data)
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.close()

    threading.Thread(target=write, name="sandbox-stdin", daemon=True).start()


class _Reaper:
    """Reaps the launched process with ``wait4`` so its tree's CPU time is known.

    ``Popen.poll``/``wait`` would reap it without the resource usage, which includes every
    descendant the launcher waited for (in namespace mode, the whole program).
    """

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.returncode: int | None = None
        self.cpu_seconds = 0.0

    def poll(self) -> int | None:
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def wait(self) -> int | None:
        if self.returncode is None:
            self._reap(0)
        return self.returncode

    def _reap(self, flags: int) -> None:
        pid, status, usage = os.wait4(self.proc.pid, flags)
        if pid == 0:
            return  # still running
        self.returncode = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.returncode  # so Popen does not try to reap it again
        self.cpu_seconds = usage.ru_utime + usage.ru_stime


def _pump(
    proc: _Reaper, streams: dict[int, str], start: float, limits: SandboxLimits
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
