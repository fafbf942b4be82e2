"""What passes between the scoring process and a running sandboxed program, and its end.

Used by ``scorers/sandbox.py`` (which starts the program and names the verdict); nothing
here starts a process. It covers, on every platform:

* ``feed_stdin``: stdin bytes written from a thread and then closed, so a program that never
  reads its stdin cannot block the reading of its stdout;
* ``pump``: stdout, stderr, the launcher's stderr and the report channel read concurrently by
  one selector until EOF, the wall-clock deadline or the output cap, killing the process
  group at either; reading stops ``_DRAIN_GRACE_SECONDS`` after the launched process is gone,
  so a straggler holding a pipe open cannot block it;
* ``Reaper``: the launched process reaped with ``wait4``, so the CPU time of its tree is known;
* ``kill_group``: SIGKILL to the run's process group;
* ``collect_files``: reading named files back from the run's directory, never through a
  symlink, never blocking on a FIFO, never larger than the program could have written;
* ``EXEC_FILES``: no process is forked while this process holds a file it will execute
  open for writing (``ExecFileGuard``), so an exec never fails with "Text file busy".

Not covered here: a fork by code that does not take ``EXEC_FILES.forking()`` (another library
in the trainer's process) can still copy a binary's write descriptor while it is written;
what the kill reaches beyond the process group (a ``setsid`` escapee) is
the isolation's (``scorers/isolation.py``: the PID namespace on Linux, the pids cgroup as
root); macOS answers EPERM to a group of zombies, which ``kill_group`` ignores.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import PurePosixPath


class ExecFileGuard:
    """Writing a file that will be executed never overlaps a fork of this process.

    A child forked (``Popen``) by one thread while another thread holds a binary open for
    writing gets a copy of that descriptor and keeps it until its own exec (``O_CLOEXEC``
    closes it only then; under load that can be many milliseconds later). Meanwhile the run
    that wrote the binary may already exec it, and the kernel refuses to execute a file open
    for writing anywhere: ETXTBSY, "Text file busy", and a run that passed every time alone
    scored ``runtime_error``. So writers of executables wait until no fork is in progress, and
    forks wait while one is written. ``Popen`` returns only once its child has exec'd (or
    failed to), so ``forking()`` need only cover the ``Popen`` call. Forks run together, and
    so do writes; a writer waiting holds back new forks (each thread forks after its write,
    so the writes drain and forks cannot starve).
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._forks = 0
        self._writes = 0
        self._writers_waiting = 0

    @contextlib.contextmanager
    def forking(self) -> Iterator[None]:
        """Held around every ``Popen``/``subprocess.run`` of the scorers."""
        with self._changed:
            self._changed.wait_for(lambda: not self._writes and not self._writers_waiting)
            self._forks += 1
        try:
            yield
        finally:
            with self._changed:
                self._forks -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Held while a file that will be executed is open for writing (open to close)."""
        with self._changed:
            self._writers_waiting += 1
            self._changed.wait_for(lambda: not self._forks)
            self._writers_waiting -= 1
            self._writes += 1
        try:
            yield
        finally:
            with self._changed:
                self._writes -= 1
                self._changed.notify_all()


EXEC_FILES = ExecFileGuard()

# After the main process exits (or is killed), how long to keep draining pipes before giving
# up on a straggler that escaped the process group and still holds them open.
_DRAIN_GRACE_SECONDS = 0.5
_READ_CHUNK = 65536


def feed_stdin(proc: subprocess.Popen, data: bytes) -> None:
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


class Reaper:
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


def pump(
    proc: Reaper, streams: dict[int, str], deadline: float, output_bytes: int
) -> tuple[dict[str, bytearray], str | None, list[bytearray]]:
    """Read all streams until EOF, the wall limit or the output cap; kill the group on either.

    ``streams`` maps each descriptor to the name its bytes are kept under; ``deadline`` is on
    ``time.monotonic``'s clock; ``output_bytes`` caps each stream. Returns what was read and
    why this process killed the program while it was still running (``"wall"``,
    ``"output"``, or None when it ended by itself), and the buffers that overflowed the cap
    (however the program ended).

    One thread with a selector rather than a thread per pipe, so that a pipe held open by a
    straggler cannot block us: reading stops ``_DRAIN_GRACE_SECONDS`` after the main process
    is gone.
    """
    captured = {name: bytearray() for name in streams.values()}
    killed_for: str | None = None
    overflowed: list[bytearray] = []
    stop_at: float | None = None  # set once the main process has exited or been killed
    with selectors.DefaultSelector() as selector:
        for fd, name in streams.items():
            selector.register(fd, selectors.EVENT_READ, name)
        while selector.get_map():
            now = time.monotonic()
            if stop_at is None and proc.poll() is not None:
                kill_group(proc.pid)  # daemons it left behind would hold the pipes open
                stop_at = now + _DRAIN_GRACE_SECONDS
            if stop_at is None and now >= deadline:
                killed_for = "wall"
                kill_group(proc.pid)
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
                room = output_bytes - len(buffer)
                buffer += data[:room]
                if len(data) > room:
                    overflowed.append(buffer)
                    selector.unregister(key.fd)
                    if stop_at is None:  # still running: this kill ends it
                        killed_for = "output"
                        kill_group(proc.pid)
                        stop_at = time.monotonic() + _DRAIN_GRACE_SECONDS
    return captured, killed_for, overflowed


def kill_group(pgid: int) -> None:
    """SIGKILL the process group ``pgid``; an empty (or zombie-only) group is not an error."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is already empty: nothing left to kill
    except PermissionError:
        # macOS answers EPERM when the only members left are zombies; they are harmless.
        pass


def collect_files(workdir: str, names: tuple[str, ...], max_bytes: int) -> dict[str, bytes]:
    """The regular files among ``names`` that the run left in ``workdir``, up to ``max_bytes``.

    Opened one path component at a time without following symlinks (the program may replace
    its output, or a directory on the way, with a link to a host file) and non-blocking (a
    FIFO would block this read for good); anything but a regular file is left out, as is one
    larger than the program could have written (RLIMIT_FSIZE).
    """
    found = {}
    for name in names:
        *parents, leaf = PurePosixPath(name).parts
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fds = [os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
        try:
            for part in parents:
                fds.append(os.open(part, flags | os.O_DIRECTORY, dir_fd=fds[-1]))
            fds.append(os.open(leaf, flags, dir_fd=fds[-1]))
            info = os.fstat(fds[-1])
            if stat.S_ISREG(info.st_mode) and info.st_size <= max_bytes:
                with os.fdopen(os.dup(fds[-1]), "rb") as file:
                    found[name] = file.read(max_bytes)
        except OSError:
            continue  # missing, a symlink (ELOOP), not a directory: not a file the run made
        finally:
            for fd in fds:
                os.close(fd)
    return found
