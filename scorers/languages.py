"""Language recipes: find the compilers, build a test program from a solution, compile it.

For each task language this module knows how the task's test snippets are wrapped around the
candidate program (``scorers/harness.py`` holds the wrappers) and how the result is compiled
and started. Compilation runs in the sandbox (a compiler fed model output can be made to
loop, or to read files into its diagnostics) and is cached on disk by the SHA-256 of the
compiler, its flags and the full source, so the teacher's program and a student's repeated
answer are compiled once. The cache (``scorers/compile_cache.py``) is capped in size with
LRU eviction, never keeps a compile that timed out or was killed, and is safe across threads
(one lock per key; another thread asking for the same key waits) and processes.

A missing compiler is found by ``check_toolchains`` at start-up, with an error saying what to
install, not discovered later as a zero reward.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scorers.compile_cache import DEFAULT_CACHE_MB, CompileCache, cache_key, classify_compile
from scorers.harness_cpp import cpp_test_program
from scorers.harness_rust import rust_test_program
from scorers.sandbox import SandboxLimits, run_process
from scorers.sandbox_io import EXEC_FILES

DEFAULT_CXX_FLAGS = ("-std=c++17", "-O2", "-Wall", "-Wextra", "-pipe")
DEFAULT_RUST_FLAGS = ("--edition", "2021", "-C", "opt-level=2")
COMPILE_LIMITS = SandboxLimits(
    wall_seconds=60.0,
    cpu_seconds=60.0,
    memory_mb=8192,  # rustc/LLVM reserve far more address space than they touch
    output_bytes=65536,
    max_open_files=256,
    max_file_bytes=256 * 2**20,
    max_processes=512,
)
SOURCE_NAME = {"cpp": "prog.cpp", "rust": "prog.rs"}
BINARY_NAME = "prog"


class ToolchainError(RuntimeError):
    """A compiler the configured tasks need is missing; the message says what to install."""


@dataclass(frozen=True)
class Toolchain:
    """Compilers and flags. ``cxx``/``rustc`` are absolute paths, or None when not found."""

    cxx: str | None
    cxx_flags: tuple[str, ...]
    rustc: str | None
    rust_flags: tuple[str, ...]
    cache_dir: Path
    valgrind: str | None
    cache_mb: int = DEFAULT_CACHE_MB  # size cap of the compile cache; 0 = no cache

    @classmethod
    def discover(
        cls,
        cxx: str = "g++",
        cxx_flags: Sequence[str] = DEFAULT_CXX_FLAGS,
        rustc: str = "rustc",
        rust_flags: Sequence[str] = DEFAULT_RUST_FLAGS,
        cache_dir: str | Path | None = None,
        cache_mb: int = DEFAULT_CACHE_MB,
    ) -> Toolchain:
        cache = Path(cache_dir) if cache_dir else _default_cache_dir()
        return cls(
            cxx=shutil.which(cxx),
            cxx_flags=tuple(cxx_flags),
            rustc=_real_rustc(rustc),
            rust_flags=tuple(rust_flags),
            cache_dir=cache,
            valgrind=shutil.which("valgrind"),
            cache_mb=cache_mb,
        )

    def check(self, languages: Sequence[str]) -> None:
        """Raise ToolchainError naming every compiler ``languages`` need that is missing."""
        missing = []
        if "cpp" in languages and self.cxx is None:
            missing.append("C++ tasks need g++ (scoring.cxx); install it, e.g. apt install g++")
        if "rust" in languages and self.rustc is None:
            missing.append(
                "Rust tasks need rustc (scoring.rustc); install it from https://rustup.rs"
            )
        if missing:
            raise ToolchainError("; ".join(missing))


def _default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "rfai" / "compiled"


def _real_rustc(name: str) -> str | None:
    """The toolchain's own rustc: rustup's proxy needs HOME, which the sandbox replaces."""
    found = shutil.which(name)
    if found is None:
        return None
    with EXEC_FILES.forking():  # see scorers/sandbox_io.py: no fork while a binary is written
        result = subprocess.run([found, "--print", "sysroot"], capture_output=True, text=True)
    real = Path(result.stdout.strip(), "bin", "rustc")
    return str(real) if result.returncode == 0 and real.is_file() else found


@dataclass(frozen=True)
class CompileResult:
    """``binary`` is None on a compile error. ``warnings`` are those in the solution's lines."""

    ok: bool
    binary: bytes | None
    diagnostics: str
    warnings: tuple[str, ...]
    first_solution_line: int
    solution_lines: int


_locks_guard = threading.Lock()
_locks: dict[str, tuple[threading.Lock, list[int]]] = {}  # key -> (lock, [holders + waiters])


@contextmanager
def _key_lock(key: str) -> Iterator[None]:
    """Serialise compiles of one key in this process; the lock is dropped when unused, so the
    table does not grow with every program ever compiled."""
    with _locks_guard:
        lock, users = _locks.setdefault(key, (threading.Lock(), [0]))
        users[0] += 1
    try:
        with lock:
            yield
    finally:
        with _locks_guard:
            users[0] -= 1
            if users[0] == 0:
                del _locks[key]


def build_source(language: str, code: str, tests: Sequence[str]) -> tuple[str, int]:
    """The test program for ``code`` and the 1-based line where the solution starts."""
    if language == "cpp":
        return cpp_test_program(code, tests)
    if language == "rust":
        return rust_test_program(code, tests)
    raise ValueError(f"no compile recipe for language {language!r}")


def compile_program(
    toolchain: Toolchain, language: str, code: str, tests: Sequence[str], *, profile: bool = False
) -> CompileResult:
    """Compile ``code`` with ``tests`` for ``language``, from the cache when seen before.

    ``profile``: an unoptimised build for counting instructions (``scorers/efficiency.py``):
    with optimisation the compiler folds a test's call with constant arguments into its
    result, and the count would measure the optimiser instead of the algorithm.
    """
    source, first_line = build_source(language, code, tests)
    if language == "cpp":
        toolchain.check(["cpp"])
        flags = [f for f in toolchain.cxx_flags if not f.startswith("-O")]
        flags = [*flags, "-O0"] if profile else list(toolchain.cxx_flags)
        # Reserved constructor priorities would run before the harness reads its key.
        flags = [*flags, "-Werror=prio-ctor-dtor"]
        argv = [toolchain.cxx, *flags, "-o", BINARY_NAME, SOURCE_NAME["cpp"]]
    else:
        toolchain.check(["rust"])
        flags = list(toolchain.rust_flags)
        if profile:
            flags = [*_without_opt_level(flags), "-C", "opt-level=0"]
        # No --test: the harness has its own main (scorers/harness.py), no libtest.
        argv = [toolchain.rustc, *flags, "-o", BINARY_NAME, SOURCE_NAME["rust"]]
    key = cache_key(argv, source)
    cache = CompileCache(toolchain.cache_dir, toolchain.cache_mb * 2**20)
    with _key_lock(key):
        build = cache.get(key)
        if build is None:
            process = run_process(
                argv,
                files={SOURCE_NAME[language]: source},
                limits=COMPILE_LIMITS,
                collect=(BINARY_NAME,),
            )
            build, not_cacheable = classify_compile(
                process, BINARY_NAME, COMPILE_LIMITS.wall_seconds
            )
            if not_cacheable is None:  # a timeout or a kill depends on load, not the source
                cache.put(key, build)
    solution_lines = code.count("\n") + 1
    return CompileResult(
        ok=build.ok,
        binary=build.binary,
        diagnostics=build.diagnostics,
        warnings=solution_warnings(language, build.diagnostics, first_line, solution_lines),
        first_solution_line=first_line,
        solution_lines=solution_lines,
    )


def _without_opt_level(flags: list[str]) -> list[str]:
    kept: list[str] = []
    for flag in flags:
        if flag.startswith("opt-level=") and kept and kept[-1] == "-C":
            kept.pop()
        elif not flag.startswith(("-O", "-Copt-level")):
            kept.append(flag)
    return kept


_CPP_WARNING = re.compile(r"^prog\.cpp:(\d+):\d+: warning: (.*)$", re.MULTILINE)
_RUST_WARNING = re.compile(r"^warning: (.*)\n\s*--> prog\.rs:(\d+):\d+", re.MULTILINE)


def solution_warnings(language: str, diagnostics: str, first: int, count: int) -> tuple[str, ...]:
    """Compiler warnings located in the solution's own lines (not the generated tests)."""
    last = first + count - 1
    found = []
    if language == "cpp":
        for match in _CPP_WARNING.finditer(diagnostics):
            if first <= int(match.group(1)) <= last:
                found.append(f"line {int(match.group(1)) - first + 1}: {match.group(2)}")
    else:
        for match in _RUST_WARNING.finditer(diagnostics):
            line, message = int(match.group(2)), match.group(1)
            # The harness renames a solution's own `fn main` away; unused is not its fault.
            if first <= line <= last and "`rfai_solution_main` is never used" not in message:
                found.append(f"line {line - first + 1}: {message}")
    return tuple(found)
