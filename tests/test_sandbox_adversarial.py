"""Hostile programs against the sandbox, one property per test, in Python, C++ and Rust.

Each test checks that the run got the right status and that this process and the machine
are unharmed. Compiled programs are built once per module (in parallel, through the
on-disk compile cache) and the fixed probe path and port keep their sources, and so the
cache keys, stable between sessions.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scorers.correctness import run_compiled_tests, run_python_tests
from scorers.isolation import get_isolation
from scorers.languages import Toolchain, compile_program
from scorers.sandbox import SandboxLimits, python_argv, run_process

LIMITS = SandboxLimits(wall_seconds=3.0, cpu_seconds=3.0, memory_mb=512, max_processes=64)
SHORT = SandboxLimits(wall_seconds=1.5, cpu_seconds=1.0, memory_mb=512, max_processes=64)
# A host path the trainer's user may write, outside the directories each run gets a private
# tmpfs on (/tmp, /var/tmp, /run, /dev/shm): only the read-only mounts stop a write there.
PROBE = Path.home() / ".rfai-sandbox-escape-probe"
PORT = 47811
ISOLATED = get_isolation().mode in ("namespaces", "sandbox-exec")
needs_isolation = pytest.mark.skipif(
    not ISOLATED, reason="no namespace/sandbox-exec isolation here (fallback mode is logged)"
)
TOOLCHAIN = Toolchain.discover()


@pytest.fixture
def listener():
    """A TCP listener on 127.0.0.1:PORT; yields a function returning connections accepted."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(("127.0.0.1", PORT))
    except OSError:
        pytest.skip(f"port {PORT} is busy")
    server.listen(8)
    server.setblocking(False)

    def accepted() -> int:
        count = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                server.accept()[0].close()
                count += 1
        return count

    yield accepted
    server.close()


@pytest.fixture
def probe():
    PROBE.unlink(missing_ok=True)
    yield PROBE
    PROBE.unlink(missing_ok=True)


def run_python(source: str, limits: SandboxLimits = LIMITS):
    return run_process(python_argv("main.py"), files={"main.py": source}, limits=limits)


# -- Python -------------------------------------------------------------------------------


def test_python_infinite_loop_in_a_c_level_call_times_out():
    # sum() over an endless iterator never returns to the bytecode loop, so only the kernel's
    # CPU limit or the wall-clock kill can stop it.
    start = time.monotonic()
    result = run_python("import itertools\nsum(itertools.count())", SHORT)
    assert result.timed_out
    assert time.monotonic() - start < SHORT.wall_seconds + 2


@needs_isolation
def test_python_network_connection_is_refused(listener):
    source = (
        "import socket\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {PORT}), timeout=2)\n"
        "    print('connected')\nexcept OSError as exc:\n    print('refused', exc.errno)"
    )
    result = run_python(source)
    assert result.stdout.startswith("refused"), result.stdout + result.stderr
    assert listener() == 0


@needs_isolation
def test_python_write_outside_the_temp_dir_fails(probe):
    source = f"try:\n    open({str(probe)!r}, 'w').write('x')\nexcept OSError:\n    print('denied')"
    result = run_python(source)
    assert result.stdout == "denied\n", result.stderr
    assert not probe.exists()


@needs_isolation
def test_python_killing_its_parent_harms_nobody():
    # In a PID namespace the program's parent is outside (getppid() is 0) and this process's
    # pid names nothing the program can reach.
    source = (
        "import os, signal\n"
        f"for pid in (os.getppid(), {os.getpid()}):\n"
        "    try:\n        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError as exc:\n        print('failed', exc.errno)\n"
        "print('alive')"
    )
    result = run_python(source)
    assert result.returncode is not None
    os.kill(os.getpid(), 0)  # we are still here


@pytest.mark.skipif(
    os.geteuid() == 0 and get_isolation().cgroup_root is None,
    reason="as root without a pids cgroup nothing bounds the process count",
)
def test_python_fork_bomb_is_contained():
    source = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    )
    result = run_python(source, SandboxLimits(wall_seconds=1.5, cpu_seconds=1.0, max_processes=32))
    assert result.timed_out
    # The machine can still start processes, and the bomb's children are gone.
    assert subprocess.run(["true"]).returncode == 0


def test_python_memory_bomb_is_memory_exceeded():
    result = run_python_tests("def f():\n    return 1\n", ["x = bytearray(4 * 2**30)"], LIMITS)
    assert result.status == "memory_exceeded"


# -- C++ and Rust -------------------------------------------------------------------------

CPP_INCLUDES = (
    "#include <arpa/inet.h>\n#include <cstdio>\n#include <netinet/in.h>\n"
    "#include <sys/socket.h>\n#include <unistd.h>\n#include <vector>\n"
)
PROGRAMS = {
    "cpp-loop": ("cpp", "void attack() { volatile int x = 0; for (;;) ++x; }", "attack();"),
    "cpp-memory": (
        "cpp",
        "#include <vector>\nvoid attack() { std::vector<char> v(8ull << 30, 1); (void)v; }",
        "attack();",
    ),
    "cpp-write": (
        "cpp",
        CPP_INCLUDES + f'bool attack() {{ return fopen("{PROBE}", "w") != nullptr; }}',
        "assert(!attack());",
    ),
    "cpp-network": (
        "cpp",
        CPP_INCLUDES + "bool attack() {\n  int s = socket(AF_INET, SOCK_STREAM, 0);\n"
        f"  sockaddr_in a{{}}; a.sin_family = AF_INET; a.sin_port = htons({PORT});\n"
        '  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);\n'
        "  return connect(s, (sockaddr*)&a, sizeof a) == 0;\n}",
        "assert(!attack());",
    ),
    "cpp-fork-bomb": ("cpp", CPP_INCLUDES + "void attack() { for (;;) fork(); }", "attack();"),
    "rs-loop": (
        "rust",
        "pub fn attack() { let mut x = 0u64; loop { x = std::hint::black_box(x + 1); } }",
        "attack();",
    ),
    "rs-memory": (
        "rust",
        "pub fn attack() -> usize { std::hint::black_box(vec![1u8; 8 << 30]).len() }",
        "attack();",
    ),
    "rs-write": (
        "rust",
        f'pub fn attack() -> bool {{ std::fs::write("{PROBE}", "x").is_ok() }}',
        "assert!(!attack());",
    ),
    "rs-network": (
        "rust",
        f'pub fn attack() -> bool {{ std::net::TcpStream::connect("127.0.0.1:{PORT}").is_ok() }}',
        "assert!(!attack());",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def compiled_results():
    """Run each hostile program lazily, but compile all of them up front in parallel."""
    if TOOLCHAIN.cxx is None or TOOLCHAIN.rustc is None:
        pytest.skip("g++ and rustc are needed for the compiled adversarial programs")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda p: compile_program(TOOLCHAIN, p[0], p[1], [p[2]]), PROGRAMS.values()))

    def run(name: str, limits: SandboxLimits = LIMITS):
        language, code, test = PROGRAMS[name]
        return run_compiled_tests(TOOLCHAIN, language, code, [test], limits)

    return run


@pytest.mark.parametrize("name", ["cpp-loop", "rs-loop"])
def test_compiled_infinite_loop_times_out(compiled_results, name):
    start = time.monotonic()
    assert compiled_results(name, SHORT).status == "timeout"
    assert time.monotonic() - start < SHORT.wall_seconds + 2


@pytest.mark.parametrize("name", ["cpp-memory", "rs-memory"])
def test_compiled_memory_bomb_is_memory_exceeded(compiled_results, name):
    result = compiled_results(name)
    assert result.status == "memory_exceeded", result.stderr[-500:]


@needs_isolation
@pytest.mark.parametrize("name", ["cpp-write", "rs-write"])
def test_compiled_write_outside_the_temp_dir_fails(compiled_results, probe, name):
    assert compiled_results(name).status == "passed"  # the test asserts the write failed
    assert not probe.exists()


@needs_isolation
@pytest.mark.parametrize("name", ["cpp-network", "rs-network"])
def test_compiled_network_connection_is_refused(compiled_results, listener, name):
    assert compiled_results(name).status == "passed"  # the test asserts connect() failed
    assert listener() == 0


@pytest.mark.skipif(
    os.geteuid() == 0 and get_isolation().cgroup_root is None,
    reason="as root without a pids cgroup nothing bounds the process count",
)
def test_compiled_fork_bomb_is_contained(compiled_results):
    result = compiled_results("cpp-fork-bomb", SHORT)
    assert result.status in ("timeout", "failed")
    assert subprocess.run(["true"]).returncode == 0
    assert signal.SIGKILL  # this process survived to get here
