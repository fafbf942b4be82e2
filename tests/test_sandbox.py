"""The sandbox for real: one adversarial program per property it claims to cover."""

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scorers.isolation import _macos_isolation, get_isolation
from scorers.sandbox import SandboxLimits, python_argv, run_process
from tests.helpers import busy_cores

FAST = SandboxLimits(wall_seconds=5.0, cpu_seconds=5.0)


def run_python(source: str, limits: SandboxLimits = FAST, **kwargs):
    return run_process(python_argv("main.py"), files={"main.py": source}, limits=limits, **kwargs)


def process_alive(pid: int) -> bool:
    """True if pid is a live process (a zombie awaiting its reaper counts as gone)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self").exists():
        try:
            # The state letter follows the ")" that closes the command name.
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_runs_in_fresh_temp_dir_with_given_files():
    source = (
        "import os\n"
        "print(os.getcwd())\n"
        "print(sorted(os.listdir('.')))\n"
        "print(open('data.txt').read())"
    )
    result = run_process(
        python_argv("main.py"),
        files={"main.py": source, "data.txt": "hello", "sub/x.txt": "x"},
        limits=FAST,
    )
    assert result.returncode == 0, result.stderr
    cwd, listing, data = result.stdout.splitlines()
    assert listing == "['data.txt', 'main.py', 'sub']"
    assert data == "hello"
    assert not Path(cwd).exists()  # deleted afterwards


@pytest.mark.parametrize("name", ["../escape.py", "/etc/passwd", ""])
def test_file_names_must_stay_inside_the_dir(name):
    with pytest.raises(ValueError, match="relative"):
        run_process(["true"], files={name: "x"}, limits=FAST)


def test_parent_environment_does_not_leak(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret-token-value")
    result = run_python("import os\nprint(sorted(os.environ))\nprint(os.environ.get('HF_TOKEN'))")
    assert result.returncode == 0, result.stderr
    names, token = result.stdout.splitlines()
    assert token == "None"
    assert "secret-token-value" not in result.stdout
    passed = {"HOME", "LANG", "PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "TMPDIR"}
    # Python itself may add LC_CTYPE (PEP 538 locale coercion) where C.UTF-8 is missing;
    # the sandbox's init (or sh's cd) sets PWD.
    assert passed <= set(eval(names)) <= passed | {"LC_CTYPE", "PWD"}


def test_stdin_is_empty():
    result = run_python("try:\n    input()\nexcept EOFError:\n    print('eof')")
    assert result.stdout == "eof\n"


def test_wall_timeout_kills_within_limit():
    limits = SandboxLimits(wall_seconds=1.0, cpu_seconds=30.0)
    result = run_python("import time\nprint('started', flush=True)\ntime.sleep(60)", limits)
    assert result.timed_out and result.limit == "wall"
    assert result.returncode == -signal.SIGKILL
    assert result.stdout == "started\n"  # output written before the kill is kept
    assert 1.0 <= result.wall_seconds < 2.0


def test_cpu_limit_stops_a_busy_loop():
    limits = SandboxLimits(wall_seconds=20.0, cpu_seconds=1.0)
    result = run_python("while True:\n    pass", limits)
    assert result.timed_out
    assert result.limit == "cpu"  # named from the kernel's SIGKILL, not from rusage
    assert result.returncode in (-signal.SIGKILL, -signal.SIGXCPU)
    assert result.wall_seconds < limits.wall_seconds  # the CPU limit, not the wall limit


@pytest.mark.skipif(sys.platform == "darwin", reason="RLIMIT_AS is not enforced on macOS")
def test_memory_limit():
    limits = SandboxLimits(memory_mb=256)
    result = run_python("block = bytearray(1024 * 2**20)\nprint('allocated')", limits)
    assert result.memory_exceeded
    assert result.returncode != 0
    assert "allocated" not in result.stdout
    # The limit applied to the child only: this process can still allocate that much.
    assert len(bytearray(300 * 2**20)) == 300 * 2**20


def test_stdout_flood_is_capped_and_killed():
    limits = SandboxLimits(output_bytes=4096)
    start = time.monotonic()
    result = run_python("while True:\n    print('x' * 1000)", limits)
    assert result.output_exceeded
    assert len(result.stdout) == 4096
    assert result.returncode == -signal.SIGKILL
    assert time.monotonic() - start < 3.0


def test_file_size_limit():
    limits = SandboxLimits(max_file_bytes=2**20)
    result = run_python("open('big', 'wb').write(b'0' * 2 * 2**20)", limits)
    # Python ignores SIGXFSZ, so the write fails with EFBIG instead of killing the process.
    assert result.returncode != 0
    assert "File too large" in result.stderr


def test_open_files_limit():
    limits = SandboxLimits(max_open_files=32)
    result = run_python("handles = [open('f%d' % i, 'w') for i in range(100)]", limits)
    assert result.returncode != 0
    assert "Too many open files" in result.stderr


def processes_running(token: str) -> list[int]:
    """Host pids whose command line contains ``token`` (pids inside a namespace differ)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # exited while we looked
    return [pid for pid in found if process_alive(pid)]


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc to find the daemon")
@pytest.mark.parametrize("setsid", [False, True], ids=["same-group", "setsid"])
def test_daemon_left_behind_is_killed(setsid):
    # Double fork: the grandchild is orphaned (re-parented away from our process) and, with
    # setsid, leaves the sandbox's process group too. It must not outlive the run.
    token = f"{time.time_ns() % 10**9}.5"
    source = f"""
import logging
import os
child = os.fork()
if child == 0:
    if {setsid}:
        os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "{token}"])
    os._exit(0)
os.waitpid(child, 0)
print("forked", flush=True)
"""
    if setsid and get_isolation().mode != "namespaces" and get_isolation().cgroup_root is None:
        pytest.skip("a setsid escapee is only killed with a PID namespace or a pids cgroup")
    # RLIMIT_NPROC counts all of this user's processes; lift it so forking works on a desktop.
    result = run_python(source, SandboxLimits(max_processes=100_000))
    assert result.stdout == "forked\n", result.stderr
    deadline = time.monotonic() + 3.0
    while processes_running(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_running(token) == []
    assert result.wall_seconds < 3.0  # did not wait for the sleep


def test_report_channel_is_separate_from_stdout():
    source = (
        "import os\n"
        "fd = int(os.environ['SANDBOX_REPORT_FD'])\n"
        "os.write(fd, b'report line\\n')\n"
        "print('stdout line')"
    )
    result = run_python(source, report_channel=True)
    assert result.report == "report line\n"
    assert result.stdout == "stdout line\n"


def test_missing_command_reports_exit_127():
    result = run_process(["rfai-no-such-command"], files={}, limits=FAST)
    assert result.returncode == 127
    assert "failed to execute" in result.stderr


def test_concurrent_runs_never_fail_with_text_file_busy():
    # Regression: a Rust run that passes 40 times of 40 alone scored ('runtime_error', 0) once
    # in 20 under load: "rfai-init: failed to execute ./prog: Text file busy". A child forked
    # by one thread's Popen held a copy of another thread's binary, open for writing, until
    # its own exec, and the kernel refuses to execute a file open for writing (ETXTBSY). A
    # large binary (written for longer) from 16 threads, with every core busy so that forked
    # children wait for their exec: before the fix about 2% of runs failed here (~300 runs).
    binary = Path(os.path.realpath(shutil.which("true"))).read_bytes() + bytes(16 * 2**20)
    limits = SandboxLimits(wall_seconds=30.0, cpu_seconds=5.0, max_file_bytes=32 * 2**20)

    def run(_):
        return run_process(["./true"], files={"true": binary}, limits=limits)

    with busy_cores(), ThreadPoolExecutor(16) as pool:
        results = list(pool.map(run, range(300)))
    failed = [(r.returncode, r.stderr[-200:]) for r in results if r.returncode != 0]
    assert failed == [], f"{len(failed)} of {len(results)} runs failed: {failed[:3]}"


def test_limits_are_validated():
    with pytest.raises(ValueError, match="wall_seconds"):
        SandboxLimits(wall_seconds=0)
    with pytest.raises(ValueError, match="max_open_files"):
        SandboxLimits(max_open_files=3)


@pytest.mark.skipif(os.geteuid() == 0, reason="RLIMIT_NPROC is not enforced for root")
def test_process_limit_refuses_fork():
    # The user already runs at least this test's process, so a limit of 1 refuses any fork.
    source = "import os\ntry:\n    os.fork()\nexcept BlockingIOError:\n    print('refused')"
    result = run_python(source, SandboxLimits(max_processes=1))
    assert result.stdout == "refused\n"


# -- macOS: the sandbox-exec profile is validated once, with a fallback --------------------

FAKE_SANDBOX_EXEC = """#!/bin/sh
# Stands in for macOS's sandbox-exec: refuses profiles matching $RFAI_FAKE_REFUSE, else runs.
case "$2" in *"$RFAI_FAKE_REFUSE"*) echo "sandbox-exec: unbound variable: signal" >&2; exit 65;;
esac
shift 2
exec "$@"
"""


@pytest.fixture
def fake_sandbox_exec(tmp_path, monkeypatch):
    tool = tmp_path / "bin" / "sandbox-exec"
    tool.parent.mkdir()
    tool.write_text(FAKE_SANDBOX_EXEC)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}:{os.environ['PATH']}")
    return monkeypatch


@pytest.mark.parametrize(
    ("refuse", "mode", "signals", "warning"),
    [("(deny signal)", "sandbox-exec", False, "refused the profile's signal rules"),
     ("no such rule", "sandbox-exec", True, None),
     ("(version 1)", "rlimits", False, "sandbox-exec refused every profile")],
)  # fmt: skip
def test_macos_profile_is_validated_once_with_a_fallback(
    fake_sandbox_exec, tmp_path, caplog, refuse, mode, signals, warning
):
    fake_sandbox_exec.setenv("RFAI_FAKE_REFUSE", refuse)
    with caplog.at_level(logging.WARNING, logger="rfai.scorers"):
        isolation = _macos_isolation(tmp_path)
    assert isolation.mode == mode
    if warning is None:
        assert not caplog.records
    else:
        assert warning in caplog.text and ("exit 65" in caplog.text)
    if mode == "sandbox-exec":
        assert ("(deny signal)" in isolation.macos_profile) is signals
        argv = isolation.wrap(["sh", "-c", "echo ran"], str(tmp_path))
        assert argv[:2] == ["sandbox-exec", "-p"] and str(tmp_path.resolve()) in argv[2]
        # the profile the wrapped run carries is one this sandbox-exec accepts
        assert subprocess.run(argv, capture_output=True, text=True).stdout == "ran\n"
