"""Run generated code in a separate, resource-limited, isolated process.

This is the only module in rfai that starts processes running model-written code (the trainer
never executes it in its own process); compilers run through it too. This module holds the
limits, the result, the run's directory, environment and launch, and the verdict; reading
the program's streams, reaping it, the group kill and reading files back are in
``scorers/sandbox_io.py``; the isolation the launch is wrapped in is ``scorers/isolation.py``'s.
Every run gets:

* a separate process in a new session (its own process group); stdin is /dev/null, or a pipe
  carrying ``stdin`` bytes and then closed (how a harness is handed its tests and key
  without putting them in a file or the environment);
* executables written while no other thread of this process forks, so that no forked child
  holds one open for writing when it is executed ("Text file busy"; ``EXEC_FILES`` in
  ``scorers/sandbox_io.py``);
* a fresh temporary working directory holding only the given files, deleted after (on
  Linux the program sees it at ``/run/rfai-run``, and no other run's; it lives in the
  namespace holder's size-bounded tmpfs, not on the host's disk); ``collect`` reads back
  only regular files, never through a symlink, never blocking on a FIFO;
* a minimal environment (PATH, LANG, HOME=TMPDIR=the temp dir, PYTHONDONTWRITEBYTECODE,
  PYTHONHASHSEED, plus what the caller lists in ``env``, where names that look like secrets
  (``*_TOKEN``, ``*_KEY``, ``HF_*``, ``OPENAI_*``, ``ANTHROPIC_*``, ...) are refused): nothing is
  inherited from the trainer, so API tokens and keys do not leak;
* kernel resource limits (set by the run's init on Linux, else ``prlimit``, else ``ulimit``
  in ``sh``): CPU seconds (soft = hard: SIGKILL at the limit), address space (memory), size
  of written files, open files, no core dumps, and the process count when not running as
  root (for root the kernel does not enforce RLIMIT_NPROC; see ``scorers/isolation.py`` for
  the pids cgroup used instead);
* a wall-clock limit, after which the whole process tree is killed with SIGKILL;
* a verdict named from what happened (``ProcessResult.limit``): this process's own kills
  (wall, output cap) and a SIGKILL it did not send (the CPU limit), never CPU time read
  back after the fact;
* stdout/stderr read concurrently and capped; past the cap the tree is killed
  (``scorers/sandbox_io.py``);
* after every run the process group (and the PID namespace / cgroup, where used) is killed,
  so daemons the program forked are cleaned up;
* an optional report channel: a pipe whose write end the child finds in the environment
  variable ``SANDBOX_REPORT_FD``, so a test harness can report results away from stdout.

What is and is not isolated per platform (details in ``scorers/isolation.py``):

* Linux with user namespaces: private PID, network and IPC namespaces (the kill takes
  ``setsid`` escapees too), no capabilities and no-new-privs, the whole filesystem
  read-only (locked) except the run's own directory, private size-bounded tmpfs on /tmp,
  /var/tmp, /run, /dev/shm (so host unix sockets there are out of reach), a seccomp filter
  refusing ``socket(AF_UNIX)`` and new user namespaces (``scorers/sandbox_init.py``), and
  every process dies with the trainer. Files stay *readable*: a program can read anything
  the trainer's user can read (but it has no network to send it anywhere, and its output
  goes only into the trainer's logs and datasets). Without a C compiler (no ``rfai-init``)
  there is no seccomp filter: a unix socket at a path outside those directories is then
  reachable if the trainer's uid may connect to it.
* Linux fallback (user namespaces refused, e.g. in Docker): rlimits, process group and
  scrubbed environment only; the program can open sockets, write where the user can, and a
  ``setsid`` escapee survives the run (unless the root-only pids cgroup is available). A
  warning says so once at start-up. The program can also signal the trainer.
* macOS: ``sandbox-exec`` denies network (unix sockets too), writes outside the run's dir
  and signals outside the sandbox; RLIMIT_AS is not enforced by the kernel (so
  ``memory_mb`` is not a limit there), a ``setsid`` escapee survives, and nothing ties a
  run's life to the trainer's beyond its CPU limit.
* Everywhere: the sandbox does not authenticate what a program writes to the report
  channel (the program runs in the harness's process); the harness does, with a per-run key
  (``scorers/correctness.py``). CPU time is shared: runs are not pinned to cores.

Limits are applied by a launcher executable (the run's init on Linux, else prlimit) rather
than by ``preexec_fn``: the scoring pool starts processes from several threads, and
``preexec_fn`` is documented as unsafe in threaded programs; a Python launcher would add one
interpreter start-up per run.
"""

from __future__ import annotations

import fnmatch
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from scorers.isolation import INIT_KILLED, get_isolation
from scorers.isolation_state import remove_cgroup
from scorers.sandbox_io import EXEC_FILES, Reaper, collect_files, feed_stdin, kill_group, pump

REPORT_FD_ENV = "SANDBOX_REPORT_FD"
_RLIMIT = {
    "cpu": resource.RLIMIT_CPU, "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE, "as": resource.RLIMIT_AS, "nproc": resource.RLIMIT_NPROC,
}  # fmt: skip
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
    ``limit`` names the limit that ended the run, decided from what happened, not from timing:
    ``"wall"`` (this process killed it at the deadline), ``"output"`` (it killed it at the
    output cap), ``"cpu"`` (the launched program died by SIGKILL that this process did not
    send: the kernel's RLIMIT_CPU, whose soft and hard limits are equal; or by SIGXCPU), or
    None. ``timed_out`` is ``limit in ("wall", "cpu")``. A descendant the program forked and
    reaped itself (the C++ harness's per-test child) is not seen here: its reaper reports it.
    ``cpu_seconds`` is the CPU time of the reaped process tree (user + system); informative
    only (it can read below the limit that killed the program, e.g. under steal time).
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
    limit: str | None = None


# The base interpreter, not a virtual environment's link to it: with -S the environment adds
# nothing, and a venv may sit under /tmp, which every run sees replaced by its own tmpfs.
PYTHON = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def python_argv(script: str) -> list[str]:
    """argv running ``script`` with the base interpreter: isolated (``-I``: no environment, no
    user site) and without ``site`` (``-S``): the standard library only.

    Without ``-S`` every start also imports site-packages' ``.pth`` hooks (an editable
    install's finder pulls in pathlib and re: 45 ms against 10 ms per start here), and a
    solution could import whatever the trainer's environment has installed.
    """
    return [PYTHON, "-I", "-S", script]


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
    with tempfile.TemporaryDirectory(prefix="run-", dir=isolation.run_parent) as workdir:
        for name, content in files.items():
            _write_file(Path(workdir), name, content)
        cgroup = isolation.new_cgroup(limits.max_processes)
        split = isolation.mode == "namespaces"  # the launcher's stderr apart from the program's
        err_read, err_write = os.pipe() if split else (-1, -1)
        try:
            rlimits = _rlimits(limits, cgroup is None)
            if split:  # set by the namespace's init script (a shell builtin, no extra exec)
                wrapped = isolation.wrap(argv, workdir, err_write, rlimits)
            else:
                wrapped = isolation.wrap(_limited_argv(argv, rlimits), workdir)
            if cgroup is not None:
                wrapped = ["sh", "-c", _JOIN_CGROUP, str(cgroup), *wrapped]
            launch = _Launch(wrapped, workdir, err_read, err_write)
            result = _run_in(launch, limits, report_channel, env or {}, stdin)
        finally:
            if cgroup is not None:
                remove_cgroup(cgroup)
        if collect:
            result = _with_files(result, collect_files(workdir, collect, limits.max_file_bytes))
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
        with EXEC_FILES.writing():  # no fork may copy its descriptor: "Text file busy"
            path.write_bytes(content)
        path.chmod(0o755)
    else:
        path.write_text(content, encoding="utf-8")


def _rlimits(limits: SandboxLimits, use_nproc: bool) -> dict[str, int]:
    """The run's kernel limits; 0 = not set. ``fsize`` and ``as`` in bytes."""
    # Soft = hard CPU: the kernel sends SIGKILL at the limit (SIGXCPU would be ignored by a
    # PID namespace's init, and a SIGKILL this process did not send names the CPU limit).
    # As root RLIMIT_NPROC is not enforced; the run's pids cgroup (if any) limits instead.
    wanted = {
        "cpu": max(1, math.ceil(limits.cpu_seconds)),
        "fsize": limits.max_file_bytes,
        "nofile": limits.max_open_files,
        "as": 0 if sys.platform == "darwin" else limits.memory_mb * 2**20,
        "nproc": limits.max_processes if os.geteuid() != 0 and use_nproc else 0,
    }
    # A limit can only be lowered: one above this process's hard limit (inherited by the run)
    # would make setting it fail, so it is clamped to that hard limit.
    for name, value in wanted.items():
        hard = resource.getrlimit(_RLIMIT[name])[1]
        if value and hard != resource.RLIM_INFINITY and value > hard:
            wanted[name] = hard
    return wanted


def _limited_argv(argv: list[str], rlimits: dict[str, int]) -> list[str]:
    if shutil.which("prlimit"):
        args = ["prlimit", f"--cpu={rlimits['cpu']}", f"--fsize={rlimits['fsize']}", "--core=0"]
        args.append(f"--nofile={rlimits['nofile']}")
        args += [f"--{name}={rlimits[name]}" for name in ("as", "nproc") if rlimits[name]]
        return [*args, *argv]
    cpu, blocks = rlimits["cpu"], rlimits["fsize"] // 512
    numbers = [cpu, cpu, blocks, rlimits["nofile"], rlimits["nproc"]]
    return ["sh", "-c", _ULIMIT, "sandbox", *map(str, numbers), *argv]


def _minimal_env(inside: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": inside,
        "TMPDIR": inside,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


@dataclass(frozen=True)
class _Launch:
    """The wrapped argv, the run's directory, and the program's own stderr pipe (-1: none)."""

    argv: list[str]
    workdir: str
    err_read: int
    err_write: int


def _run_in(
    launch: _Launch,
    limits: SandboxLimits,
    report_channel: bool,
    extra_env: Mapping[str, str],
    stdin_data: bytes | None = None,
) -> ProcessResult:
    env = {**_minimal_env(get_isolation().inside_dir(launch.workdir)), **extra_env}
    start = time.monotonic()
    proc, streams, own_fds = _spawn(launch, env, report_channel, stdin_data)
    reaped = Reaper(proc)
    try:
        deadline = start + limits.wall_seconds
        captured, killed_for, overflowed = pump(reaped, streams, deadline, limits.output_bytes)
    finally:
        kill_group(proc.pid)
        reaped.wait()
        proc.stdout.close()
        proc.stderr.close()
        for fd in own_fds:
            os.close(fd)
    wall = time.monotonic() - start
    return _verdict(captured, killed_for, bool(overflowed), reaped, wall)


def _spawn(
    launch: _Launch, env: dict[str, str], report_channel: bool, stdin_data: bytes | None
) -> tuple[subprocess.Popen, dict[int, str], list[int]]:
    """Start the launcher with its pipes; stdin fed from a thread.

    Returns the process, the streams to read (descriptor -> ``stdout``, ``stderr``,
    ``launcher``, ``report``) and the read ends this process opened and must close.
    """
    child_ends = [launch.err_write] if launch.err_write >= 0 else []
    report_read = -1
    if report_channel:
        report_read, report_write = os.pipe()
        env[REPORT_FD_ENV] = str(report_write)
        child_ends.append(report_write)
    try:
        with EXEC_FILES.forking():
            proc = subprocess.Popen(
                launch.argv,
                cwd=launch.workdir,
                env=env,
                stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                pass_fds=tuple(child_ends),
            )
    except BaseException:
        for fd in (*child_ends, report_read, launch.err_read):
            if fd >= 0:
                os.close(fd)
        raise
    for fd in child_ends:
        os.close(fd)  # only the child holds the write ends: EOF when it is gone
    if stdin_data is not None:
        feed_stdin(proc, stdin_data)
    # Without a split, the launcher's fd 2 is the program's stderr.
    program_err = launch.err_read if launch.err_read >= 0 else proc.stderr.fileno()
    streams = {proc.stdout.fileno(): "stdout", program_err: "stderr"}
    if launch.err_read >= 0:
        streams[proc.stderr.fileno()] = "launcher"
    if report_channel:
        streams[report_read] = "report"
    return proc, streams, [fd for fd in (report_read, launch.err_read) if fd >= 0]


def _verdict(
    captured: dict[str, bytearray],
    killed_for: str | None,
    overflowed: bool,
    reaped: Reaper,
    wall: float,
) -> ProcessResult:
    """The run's result, its limit named from who killed it (``ProcessResult.limit``)."""
    launcher = captured.get("launcher", b"").decode("utf-8", errors="replace")
    stderr = captured["stderr"].decode("utf-8", errors="replace")
    returncode = reaped.returncode
    limit = killed_for
    if killed_for is None and (
        returncode in (-signal.SIGKILL, -signal.SIGXCPU) or INIT_KILLED in launcher
    ):
        # Only the kernel (RLIMIT_CPU, soft = hard) can SIGKILL the program: we did not, and a
        # PID namespace's init ignores its own processes' signals.
        limit = "cpu"
        returncode = -signal.SIGKILL if INIT_KILLED in launcher else returncode
    elif launcher:
        stderr += launcher  # the launcher's own error (e.g. the private mounts failed)
    return ProcessResult(
        returncode=returncode,
        stdout=captured["stdout"].decode("utf-8", errors="replace"),
        stderr=stderr,
        report=captured.get("report", b"").decode("utf-8", errors="replace"),
        wall_seconds=wall,
        timed_out=limit in ("wall", "cpu"),
        output_exceeded=overflowed,
        memory_exceeded=_looks_like_memory_error(stderr),
        cpu_seconds=reaped.cpu_seconds,
        limit=limit,
    )


_MEMORY_MARKERS = ("MemoryError", "std::bad_alloc", "memory allocation of")


def _looks_like_memory_error(stderr: str) -> bool:
    return any(marker in stderr for marker in _MEMORY_MARKERS)
