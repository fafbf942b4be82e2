"""The sandbox's walls against programs that attack them (issue 8, items 1, 2, 3, 5, 8).

Each test asserts containment (the host, the trainer and sibling runs unharmed) and the run's
status. Linux namespace mode only: the fallback and macOS have no such walls (see
``scorers/isolation.py``). Compiled programs are built once per module, in parallel.
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scorers.correctness import run_compiled_tests, run_python_tests
from scorers.isolation import get_isolation
from scorers.isolation_holder import RUN_DIR_INSIDE, RUN_DIRS_MB
from scorers.languages import Toolchain, compile_program
from scorers.sandbox import SandboxLimits, python_argv, run_process

pytestmark = pytest.mark.skipif(
    get_isolation().mode != "namespaces", reason="the walls tested here are Linux namespaces"
)
LIMITS = SandboxLimits(wall_seconds=5.0, cpu_seconds=5.0, memory_mb=512, max_processes=64)
TOOLCHAIN = Toolchain.discover()
REPO = Path(__file__).resolve().parents[1]
# A host path the trainer's user may write, outside every private tmpfs of a run.
PROBE = Path.home() / ".rfai-sandbox-walls-probe"
# Host unix sockets: one under /tmp (hidden by the run's tmpfs), one outside every covered
# directory (refused by rfai-init's seccomp filter on socket(AF_UNIX)). Fixed paths: the
# compiled sources stay cacheable.
SOCKET = Path("/tmp/rfai-sandbox-walls.sock")
HOST_TMP_PROBE = Path("/tmp/rfai-sandbox-walls-tmp-probe")  # written inside: the run's own /tmp
OUTSIDE_SOCKET = Path.home() / ".rfai-sandbox-walls.sock"
needs_init = pytest.mark.skipif(
    get_isolation().init is None, reason="no C compiler: rfai-init (seccomp filter) not built"
)


@pytest.fixture
def probe():
    PROBE.unlink(missing_ok=True)
    yield PROBE
    PROBE.unlink(missing_ok=True)


def run_python(source: str, limits: SandboxLimits = LIMITS, **kwargs):
    return run_process(python_argv("main.py"), files={"main.py": source}, limits=limits, **kwargs)


# -- 1. the read-only filesystem cannot be undone ---------------------------------------------

REMOUNT_PY = f"""
import os, subprocess
results = []
for argv in (["mount", "-o", "remount,bind,rw", "/"],
             ["unshare", "-rm", "sh", "-c", "mount -o remount,bind,rw / && touch {PROBE}"]):
    results.append(subprocess.run(argv, capture_output=True).returncode)
try:
    open({str(PROBE)!r}, "w").write("x")
    results.append("wrote")
except OSError as exc:
    results.append(exc.errno)
print(results)
"""


def test_python_cannot_remount_read_write(probe):
    result = run_python(REMOUNT_PY)
    assert result.returncode == 0, result.stderr
    mount_rc, nested_rc, write = eval(result.stdout)
    assert mount_rc != 0 and nested_rc != 0 and write != "wrote"
    assert not probe.exists()


def test_python_runs_without_capabilities_and_with_no_new_privs():
    result = run_python("print(open('/proc/self/status').read())")
    fields = dict(line.split(":\t", 1) for line in result.stdout.splitlines() if ":\t" in line)
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[name], 16) == 0, (name, fields[name])
    assert fields["NoNewPrivs"].strip() == "1"


def test_every_mount_the_program_sees_is_read_only_but_its_own():
    result = run_python("print(open('/proc/self/mountinfo').read())")
    top = {}  # mount point -> options of the mount on top (listed last)
    for line in filter(None, result.stdout.splitlines()):
        parts = line.split()
        top[parts[4]] = parts[5].split(",")
    writable = {point for point, options in top.items() if "rw" in options}
    private = {"/run", RUN_DIR_INSIDE, "/tmp", "/var/tmp", "/dev/shm", "/dev/pts", "/proc"}
    private.add(str(get_isolation().base_dir))
    assert writable <= private, writable - private


@pytest.mark.skipif(get_isolation().cgroup_root is None, reason="no per-run pids cgroup (non-root)")
def test_python_cannot_leave_its_pids_cgroup():
    root = get_isolation().cgroup_root
    source = (
        "import os\ntry:\n"
        f"    open('{root}/cgroup.procs', 'w').write(str(os.getpid()))\n    print('moved')\n"
        "except OSError as exc:\n    print('refused', exc.errno)"
    )
    result = run_python(source)
    assert result.stdout.startswith("refused"), result.stdout + result.stderr


# -- 2. private run directories, /tmp, /dev/shm, /run; bounded scratch -------------------------


def test_sibling_runs_are_invisible_and_untouchable():
    base, parent = get_isolation().base_dir, get_isolation().run_parent
    sibling = {}

    def victim():
        source = "import time\nprint('up', flush=True)\ntime.sleep(2)\n"
        source += "print(open('victim.txt').read())"
        sibling["result"] = run_process(
            python_argv("main.py"),
            files={"main.py": source, "victim.txt": "original"},
            limits=LIMITS,
        )

    thread = threading.Thread(target=victim)
    thread.start()
    deadline = time.monotonic() + 5
    while not any(parent.glob("run-*/victim.txt")) and time.monotonic() < deadline:
        time.sleep(0.02)
    victim_dir = base / next(parent.glob("run-*/victim.txt")).parent.name  # as runs see it
    attack = f"""
import os
print(sorted(os.listdir({str(base)!r})) if os.path.isdir({str(base)!r}) else "missing")
for path in ({str(victim_dir / "victim.txt")!r}, {str(victim_dir / "poison.py")!r}):
    try:
        open(path, "w").write("poisoned")
        print("wrote", path)
    except OSError as exc:
        print("refused", exc.errno)
"""
    result = run_python(attack)
    thread.join()
    assert result.returncode == 0, result.stderr
    listing, *writes = result.stdout.splitlines()
    # The base directory is hidden by the run's /tmp, or an empty tmpfs where it lies elsewhere.
    assert listing in ("missing", "[]")
    assert all(line.startswith("refused") for line in writes), result.stdout
    assert sibling["result"].stdout == "up\noriginal\n"


def test_tmp_shm_and_run_are_private_and_bounded():
    token = f"rfai-walls-{os.getpid()}-{time.time_ns()}"
    source = f"""
import errno, os
for d in ("/tmp", "/var/tmp", "/dev/shm", "/run"):
    open(os.path.join(d, "{token}"), "w").write("x")
print(sorted(os.listdir("/tmp")), os.getcwd(), os.environ["TMPDIR"])
try:
    with open("/tmp/fill", "wb") as f:
        for _ in range(200):
            f.write(b"0" * 2**20)
    print("filled")
except OSError as exc:
    print("full", errno.errorcode[exc.errno])
"""
    result = run_python(source, SandboxLimits(max_file_bytes=512 * 2**20))
    listing, full = result.stdout.splitlines()
    assert listing == f"['{token}'] {RUN_DIR_INSIDE} {RUN_DIR_INSIDE}"
    assert full == "full ENOSPC"  # the run's /tmp is a 64 MiB tmpfs
    for d in ("/tmp", "/var/tmp", "/dev/shm", "/run"):
        assert not Path(d, token).exists()  # nothing reached the host
    again = run_python(f"import os\nprint(os.path.exists('/tmp/{token}'))")
    assert again.stdout == "False\n"  # nor the next run


def test_collected_files_come_back():
    result = run_process(
        ["sh", "-c", "printf built > out.bin"], files={}, limits=LIMITS, collect=("out.bin",)
    )
    assert result.files == {"out.bin": b"built"}


def test_collect_reads_no_host_file_through_a_link_and_never_blocks():
    # A compiler's output replaced by a symlink to a host file (and a link on the way to it),
    # a hard link to one, a FIFO that would block the trainer's read.
    script = (
        "ln -s /etc/hostname out.bin; mkdir real; ln -s real sub; printf x > real/f; "
        "ln /etc/hostname hard.bin 2>/dev/null; mkfifo fifo.bin; echo done"
    )
    names = ("out.bin", "sub/f", "real/f", "hard.bin", "fifo.bin")
    result = run_process(["sh", "-c", script], files={}, limits=LIMITS, collect=names)
    assert result.returncode == 0 and result.limit is None and result.stdout == "done\n"
    assert result.files == {"real/f": b"x"}


def test_run_directories_live_in_a_bounded_tmpfs_not_on_the_host_disk():
    source = (
        "open('big', 'wb').write(b'0' * 2**20)\n"
        "for line in open('/proc/self/mountinfo'):\n"
        f"    if line.split()[4] == {RUN_DIR_INSIDE!r}:\n"
        "        print(line.split(' - ')[1].split()[0], line.split()[-1])"
    )
    result = run_python(source)
    fstype, options = result.stdout.split()
    assert fstype == "tmpfs" and f"size={RUN_DIRS_MB * 1024}k" in options, result.stdout
    assert result.returncode == 0 and result.limit is None
    assert os.listdir(get_isolation().base_dir) == []  # the host's disk: nothing written


# -- root-writable kernel files: sysctls, devices; new user namespaces ----------------------

SYSCTL = "/proc/sys/kernel/domainname"  # written with its own value: harmless if it worked
ROOT_WRITES_PY = f"""
import errno, os
value = open({SYSCTL!r}).read()
results = []
try:
    with open({SYSCTL!r}, "w") as f:
        f.write(value)
    results.append("wrote sysctl")
except OSError as exc:
    results.append(errno.errorcode[exc.errno])
for device in ("/dev/kmsg", "/dev/console", "/dev/loop0", "/dev/userfaultfd", "/dev/vda"):
    try:
        os.close(os.open(device, os.O_WRONLY))
        results.append("opened " + device)
    except OSError as exc:
        results.append(errno.errorcode[exc.errno])
print(results)
"""


def test_python_cannot_write_sysctls_or_host_devices():
    before = Path(SYSCTL).read_text()
    result = run_python(ROOT_WRITES_PY)
    assert result.returncode == 0 and result.limit is None, result.stderr
    sysctl, *devices = eval(result.stdout)
    assert sysctl == "EROFS"
    assert set(devices) <= {"ENOENT"}, devices  # only harmless devices exist in its /dev
    assert Path(SYSCTL).read_text() == before


NEW_USERNS_PY = """
import ctypes, errno, socket, subprocess
libc = ctypes.CDLL(None, use_errno=True)
results = [libc.unshare(0x10000000), errno.errorcode[ctypes.get_errno()]]
results.append(subprocess.run(["unshare", "-U", "true"], capture_output=True).returncode)
results.append(libc.syscall(250, 0, -3, 0) == -1 and errno.errorcode[ctypes.get_errno()])
try:
    socket.socket(40, socket.SOCK_STREAM)  # AF_VSOCK: not per network namespace
    results.append("vsock")
except OSError as exc:
    results.append(errno.errorcode[exc.errno])
a, b = socket.socketpair()  # multiprocessing needs it
a.send(b"x")
results.append(b.recv(1).decode())
print(results)
"""


@needs_init
def test_python_cannot_create_a_user_namespace_keyring_or_vsock():
    result = run_python(NEW_USERNS_PY)
    assert result.returncode == 0 and result.limit is None, result.stderr
    assert eval(result.stdout) == [-1, "EPERM", 1, "ENOSYS", "EAFNOSUPPORT", "x"]


# -- 3. host unix sockets at a path ----------------------------------------------------------


@pytest.fixture(params=[SOCKET, OUTSIDE_SOCKET], ids=["tmp", "outside"])
def unix_listener(request):
    if request.param == OUTSIDE_SOCKET and get_isolation().init is None:
        pytest.skip("outside the covered directories only rfai-init's seccomp filter helps")
    path = request.param
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    server.setblocking(False)

    def accepted() -> int:
        count = 0
        try:
            while True:
                server.accept()[0].close()
                count += 1
        except BlockingIOError:
            return count

    accepted.path = path
    yield accepted
    server.close()
    path.unlink(missing_ok=True)


def test_python_cannot_reach_a_host_unix_socket(unix_listener):
    source = (
        "import socket\ntry:\n    s = socket.socket(socket.AF_UNIX)\n"
        f"    s.connect({str(unix_listener.path)!r})\n    print('connected')\n"
        "except OSError as exc:\n    print('refused', exc.errno)"
    )
    result = run_python(source)
    assert result.stdout.startswith("refused"), result.stdout + result.stderr
    assert unix_listener() == 0


# -- compiled attacks (C++ and Rust) ---------------------------------------------------------

CPP = "#include <cstdio>\n#include <sys/mount.h>\n#include <sys/socket.h>\n#include <sys/un.h>\n"
RS_MOUNT = """use std::os::raw::{c_char, c_int, c_ulong, c_void};
extern "C" {
    fn mount(s: *const c_char, t: *const c_char, f: *const c_char, fl: c_ulong, d: *const c_void)
        -> c_int;
}
"""
PROGRAMS = {
    "cpp-remount": (
        "cpp",
        CPP + "bool attack() {\n"
        '  bool m = mount("none", "/", nullptr, MS_REMOUNT | MS_BIND, nullptr) == 0;\n'
        f'  return m || fopen("{PROBE}", "w") != nullptr;\n}}',
        "assert(!attack());",
    ),
    "rs-remount": (
        "rust",
        RS_MOUNT + "pub fn attack() -> bool {\n"
        '  let m = unsafe { mount(b"none\\0".as_ptr() as _, b"/\\0".as_ptr() as _,\n'
        "    std::ptr::null(), 32 | 4096, std::ptr::null()) } == 0;\n"
        f'  m || std::fs::write("{PROBE}", "x").is_ok()\n}}',
        "assert!(!attack());",
    ),
    "cpp-tmp": (
        "cpp",
        CPP + f'bool attack() {{ FILE *f = fopen("{HOST_TMP_PROBE}", "w");\n'
        '  return f != nullptr && fputs("x", f) >= 0 && fclose(f) == 0; }',
        "assert(attack());",
    ),
    "rs-tmp": (
        "rust",
        f'pub fn attack() -> bool {{ std::fs::write("{HOST_TMP_PROBE}", "x").is_ok() }}',
        "assert!(attack());",
    ),
    "cpp-root-writes": (
        "cpp",
        CPP + "#include <fcntl.h>\n#include <unistd.h>\nbool attack() {\n"
        f'  char v[256] = {{0}}; int r = open("{SYSCTL}", O_RDONLY);\n'
        "  ssize_t n = read(r, v, sizeof v - 1); close(r);\n"
        f'  int w = open("{SYSCTL}", O_WRONLY);\n'
        "  bool wrote = w >= 0 && n > 0 && write(w, v, n) == n;\n"
        '  return wrote || open("/dev/kmsg", O_WRONLY) >= 0;\n}',
        "assert(!attack());",
    ),
    "rs-root-writes": (
        "rust",
        "pub fn attack() -> bool {\n"
        f'  let v = std::fs::read("{SYSCTL}").unwrap_or_default();\n'
        f'  std::fs::write("{SYSCTL}", v).is_ok()\n'
        '    || std::fs::OpenOptions::new().write(true).open("/dev/kmsg").is_ok()\n}',
        "assert!(!attack());",
    ),
    "cpp-unix": (
        "cpp",
        CPP + "bool attack() {\n  int s = socket(AF_UNIX, SOCK_STREAM, 0);\n"
        "  sockaddr_un a{}; a.sun_family = AF_UNIX;\n"
        f'  snprintf(a.sun_path, sizeof a.sun_path, "%s", "{OUTSIDE_SOCKET}");\n'
        "  return connect(s, (sockaddr*)&a, sizeof a) == 0;\n}",
        "assert(!attack());",
    ),
    "rs-unix": (
        "rust",
        "pub fn attack() -> bool {\n"
        f'  std::os::unix::net::UnixStream::connect("{OUTSIDE_SOCKET}").is_ok()\n}}',
        "assert!(!attack());",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def compiled():
    if TOOLCHAIN.cxx is None or TOOLCHAIN.rustc is None:
        pytest.skip("g++ and rustc are needed for the compiled attacks")
    with ThreadPoolExecutor(2) as pool:
        builds = pool.map(
            lambda p: compile_program(TOOLCHAIN, p[0], p[1], [p[2]]), PROGRAMS.values()
        )
        for name, build in zip(PROGRAMS, builds, strict=True):
            assert build.ok, (name, build.diagnostics[-800:])

    def run(name: str):
        language, code, test = PROGRAMS[name]
        return run_compiled_tests(TOOLCHAIN, language, code, [test], LIMITS)

    return run


@pytest.mark.parametrize("name", ["cpp-remount", "rs-remount"])
def test_compiled_cannot_remount_read_write(compiled, probe, name):
    result = compiled(name)
    assert result.status == "passed", (result.stderr[-500:], result.tests)  # attack() failed
    assert not probe.exists()


@pytest.mark.parametrize("name", ["cpp-root-writes", "rs-root-writes"])
def test_compiled_cannot_write_sysctls_or_host_devices(compiled, name):
    before = Path(SYSCTL).read_text()
    result = compiled(name)
    assert result.status == "passed", (result.stderr[-500:], result.tests)  # attack() failed
    assert Path(SYSCTL).read_text() == before


@pytest.mark.parametrize("name", ["cpp-tmp", "rs-tmp"])
def test_compiled_writes_to_tmp_stay_in_the_runs_own_tmpfs(compiled, name):
    HOST_TMP_PROBE.unlink(missing_ok=True)
    result = compiled(name)
    assert result.status == "passed", (result.stderr[-500:], result.tests)  # the write worked
    assert not HOST_TMP_PROBE.exists()  # but not on the host


@needs_init
@pytest.mark.parametrize("unix_listener", [OUTSIDE_SOCKET], indirect=True, ids=["outside"])
@pytest.mark.parametrize("name", ["cpp-unix", "rs-unix"])
def test_compiled_cannot_reach_a_host_unix_socket(compiled, unix_listener, name):
    result = compiled(name)
    assert result.status == "passed", (result.stderr[-500:], result.tests)  # connect() failed
    assert unix_listener() == 0


# -- compilers run inside the same walls -----------------------------------------------------


@pytest.mark.parametrize(
    ("language", "template"),
    [("cpp", '#include "{path}"\nint f() {{ return 1; }}'),
     ("rust", 'pub fn f() -> &\'static str {{ include_str!("{path}") }}')],
)  # fmt: skip
def test_compiler_cannot_include_a_host_tmp_file(language, template):
    if (TOOLCHAIN.cxx if language == "cpp" else TOOLCHAIN.rustc) is None:
        pytest.skip(f"no compiler for {language}")
    secret = Path("/tmp") / f"rfai-walls-secret-{os.getpid()}-{time.time_ns()}.txt"
    secret.write_text("hf_SECRETSECRETSECRET\n")
    try:
        build = compile_program(TOOLCHAIN, language, template.format(path=secret), [])
    finally:
        secret.unlink()
    assert not build.ok
    assert "SECRETSECRET" not in build.diagnostics
    assert "No such file" in build.diagnostics or "couldn't read" in build.diagnostics


# -- 8. deterministic verdicts ---------------------------------------------------------------


def test_python_killing_its_parent_and_group_scores_the_same_every_time():
    code = textwrap.dedent(
        """
        import os, signal
        for target in (os.getppid(), 0, -1):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        def f():
            return 1
        """
    )
    statuses = {run_python_tests(code, ["assert f() == 1"], LIMITS).status for _ in range(5)}
    assert statuses == {"passed"}
    os.kill(os.getpid(), 0)  # we are still here


def test_cpu_limit_is_named_from_the_kill_not_from_rusage():
    limits = SandboxLimits(wall_seconds=20.0, cpu_seconds=1.0)
    for source in ("while True:\n    pass", "import os\nos.fork()\nwhile True:\n    pass"):
        result = run_python(source, limits)
        assert result.limit == "cpu" and result.timed_out, result
        assert result.returncode == -signal.SIGKILL
    sleeper = run_python("import time\ntime.sleep(30)", SandboxLimits(wall_seconds=1.0))
    assert sleeper.limit == "wall" and sleeper.timed_out
    flood = run_python("while True:\n    print('x' * 999)", SandboxLimits(output_bytes=4096))
    assert flood.limit == "output" and flood.output_exceeded and not flood.timed_out


# -- 5. a killed trainer leaves nothing behind -----------------------------------------------

TRAINER = """
import sys, threading
sys.path.insert(0, {repo!r})
from scorers.isolation import get_isolation
from scorers.sandbox import SandboxLimits, run_process
iso = get_isolation()
print(iso.base_dir, iso.holder_pid, flush=True)
limits = SandboxLimits(wall_seconds=600, cpu_seconds=600, max_processes=64)
run_process(["sh", "-c", "sleep {token} & sleep {token}"], files={{}}, limits=limits)
"""


def pids_with(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if token.encode() in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_trainer_leaves_nothing_behind(sig):
    token = f"{time.time_ns() % 10**9}.25"
    script = TRAINER.format(repo=str(REPO), token=token)
    trainer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    base, holder = trainer.stdout.readline().split()
    assert wait_until(lambda: len(pids_with(token)) >= 2, 10), "the program did not start"
    cgroup_root = get_isolation().cgroup_root
    tag = f"rfai-{trainer.pid}-"
    if cgroup_root is not None:
        assert any(p.name.startswith(tag) for p in cgroup_root.iterdir())
    trainer.send_signal(sig)
    trainer.wait()
    # The holder reads EOF, its PID namespace dies, and every run in it with it.
    assert wait_until(lambda: not pids_with(token), 5), pids_with(token)
    assert wait_until(lambda: not Path(f"/proc/{holder}").exists(), 5)
    # SIGKILL left the trainer no chance to remove its base dir and cgroups: the next start
    # does (any process's, e.g. another test session's, which may have done it already).
    nxt = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
         "from scorers.isolation import get_isolation; get_isolation()"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert nxt.returncode == 0, nxt.stderr
    assert not Path(base).exists()
    if cgroup_root is not None:
        assert not any(p.name.startswith(tag) for p in cgroup_root.iterdir())


# -- the portable chain (no C compiler: sh + mount + setsid + setpriv) holds the same walls ----


def test_portable_chain_without_the_compiled_init_holds_the_same_walls(monkeypatch, probe):
    monkeypatch.setattr(get_isolation(), "init", None)
    test_python_cannot_remount_read_write(probe)
    test_python_runs_without_capabilities_and_with_no_new_privs()
    test_every_mount_the_program_sees_is_read_only_but_its_own()
    test_python_cannot_write_sysctls_or_host_devices()
    test_tmp_shm_and_run_are_private_and_bounded()
    test_cpu_limit_is_named_from_the_kill_not_from_rusage()
    test_python_killing_its_parent_and_group_scores_the_same_every_time()


# -- what runs must execute stays visible to them ----------------------------------------------


def test_regression_a_virtual_environment_under_tmp_still_runs_python_programs(tmp_path):
    # CI clones into a folder under /tmp: every Python program then failed with "failed to
    # execute /tmp/.../.venv/bin/python", since each run sees its own, empty /tmp. Programs
    # now run with the base interpreter (-I -S needs nothing from the environment).
    venv = tmp_path / "venv"
    venv.symlink_to(Path(sys.prefix))  # the project's venv, reached through a path in /tmp
    script = (
        "import sys\n"
        "from scorers.correctness import run_python_tests\n"
        "from scorers.sandbox import SandboxLimits\n"
        "assert sys.executable.startswith(sys.argv[1]), sys.executable\n"
        "r = run_python_tests('def f():\\n    return 1\\n', ['assert f() == 1'], SandboxLimits())\n"
        "print(r.status)\n"
    )
    python = venv / "bin" / Path(sys.executable).name
    result = subprocess.run(
        [str(python), "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=REPO,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["passed"]


def test_a_compiler_the_sandbox_would_hide_stops_the_run_at_start_up(tmp_path):
    from scorers.languages import ToolchainError
    from scorers.suite import ScoringSuite

    compiler = tmp_path / "g++"
    compiler.write_text('#!/bin/sh\nexec g++ "$@"\n')
    compiler.chmod(0o755)
    toolchain = Toolchain.discover(cxx=str(compiler), cache_dir=tmp_path / "cache")
    suite = ScoringSuite({"correctness": 1.0}, LIMITS, toolchain)
    with pytest.raises(ToolchainError, match=r"scoring\.cxx is /tmp/.*under /tmp.*outside /tmp"):
        suite.check_environment(["cpp"])
    suite.check_environment(["python"])  # the interpreter itself is visible
