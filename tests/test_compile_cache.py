"""The compile cache: size cap and LRU eviction, what is (not) cached, threads and processes.

Unit tests drive ``CompileCache`` directly with made-up binaries; the rest compile through
``compile_program`` in the real sandbox, with a fake compiler (``/bin/sh -c SCRIPT``: it is
readable inside the sandbox wherever the test's temp dir is) or real g++.
"""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from scorers import languages
from scorers.compile_cache import FORMAT, CompileCache, CompiledBuild, classify_compile
from scorers.languages import Toolchain, compile_program
from scorers.sandbox import ProcessResult, SandboxLimits
from tests.helpers import REPO

HAVE_CXX = Toolchain.discover().cxx is not None


def content(key: str, size: int = 1000) -> bytes:
    """Deterministic bytes for ``key``, so any reader can check what it got."""
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def key_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def ok_build(key: str, size: int = 1000) -> CompiledBuild:
    return CompiledBuild(True, content(key, size), "")


def stored(root: Path) -> set[str]:
    return {p.stem for p in root.glob("*/*.json")}


def entry_bytes(tmp_path: Path) -> int:
    """What one 1000-byte entry takes on disk (binary + its .json)."""
    probe = CompileCache(tmp_path / "probe", 10**9)
    probe.put(key_of("probe"), ok_build(key_of("probe")))
    return probe.total_bytes()


# -- eviction ----------------------------------------------------------------------------------
def test_evicts_least_recently_used_down_to_the_cap(tmp_path):
    one = entry_bytes(tmp_path)
    cache = CompileCache(tmp_path / "c", 3 * one)  # room for exactly three entries
    keys = [key_of(f"k{i}") for i in range(5)]
    for key in keys:
        cache.put(key, ok_build(key))
        assert cache.total_bytes() <= 3 * one
    # The 4th put passed the cap: evicted down to 90% of it (2 entries), the two oldest first.
    assert stored(cache.root) == set(keys[2:])
    assert cache.get(keys[0]) is None
    assert cache.get(keys[4]).binary == content(keys[4])


def test_a_hit_refreshes_recency(tmp_path):
    one = entry_bytes(tmp_path)
    cache = CompileCache(tmp_path / "c", 3 * one)
    a, b, c, d = (key_of(name) for name in "abcd")
    for key in (a, b, c):
        cache.put(key, ok_build(key))
    assert cache.get(a).binary == content(a)  # a is now more recent than b and c
    cache.put(d, ok_build(d))  # 4 entries > cap: evict down to 90% of it, i.e. 2 entries
    assert stored(cache.root) == {a, d}


def test_an_entry_larger_than_the_cap_is_not_kept(tmp_path):
    cache = CompileCache(tmp_path / "c", 500)
    key = key_of("big")
    cache.put(key, ok_build(key, 2000))
    assert cache.get(key) is None and cache.total_bytes() == 0


def test_cap_zero_turns_the_cache_off(tmp_path):
    cache = CompileCache(tmp_path / "c", 0)
    cache.put(key_of("x"), ok_build(key_of("x")))
    assert cache.get(key_of("x")) is None
    assert not cache.root.exists()


def test_stale_tmp_files_of_a_dead_writer_are_evicted_and_fresh_ones_kept(tmp_path):
    one = entry_bytes(tmp_path)
    cache = CompileCache(tmp_path / "c", 2 * one)
    folder = cache.root / "ab"
    folder.mkdir(parents=True)
    stale, fresh = folder / "ab01.bin.1.1.tmp", folder / "ab02.bin.2.2.tmp"
    stale.write_bytes(b"x" * one)
    fresh.write_bytes(b"y" * 10)
    day_old = 1_000_000_000  # 2001: far older than STALE_TMP_SECONDS
    os.utime(stale, (day_old, day_old))
    for name in ("p", "q"):
        cache.put(key_of(name), ok_build(key_of(name)))
    assert not stale.exists() and fresh.exists()


# -- damaged, stale and vanishing entries --------------------------------------------------------
def test_entry_evicted_between_reading_its_json_and_its_binary_is_a_miss(tmp_path, monkeypatch):
    cache = CompileCache(tmp_path / "c", 10**6)
    key = key_of("racy")
    cache.put(key, ok_build(key))
    real_read = Path.read_bytes

    def read_then_evict(path: Path) -> bytes:
        data = real_read(path)
        if path.suffix == ".json":  # another process evicts the entry right now
            path.with_suffix(".bin").unlink()
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_evict)
    assert cache.get(key) is None
    monkeypatch.undo()
    cache.put(key, ok_build(key))
    assert cache.get(key).binary == content(key)


@pytest.mark.parametrize(
    "damage",
    ["flipped_byte", "truncated", "old_format_timeout", "not_json"],
)
def test_damaged_or_old_entries_are_misses(tmp_path, damage):
    cache = CompileCache(tmp_path / "c", 10**6)
    key = key_of("d")
    cache.put(key, ok_build(key))
    meta_path, bin_path = cache._paths(key)
    if damage == "flipped_byte":
        data = bytearray(bin_path.read_bytes())
        data[10] ^= 0xFF
        bin_path.write_bytes(bytes(data))
    elif damage == "truncated":
        bin_path.write_bytes(bin_path.read_bytes()[:500])
    elif damage == "old_format_timeout":  # format 1 cached timeouts for good
        meta_path.write_text(json.dumps({"ok": False, "diagnostics": "compiler timed out"}))
    else:
        meta_path.write_text("{not json")
    assert cache.get(key) is None
    cache.put(key, ok_build(key))
    assert json.loads(meta_path.read_text())["format"] == FORMAT
    assert cache.get(key).binary == content(key)


# -- concurrency -------------------------------------------------------------------------------
def hammer(cache: CompileCache, names: list[str], rounds: int) -> list[str]:
    """Put and get ``names`` repeatedly; returns every wrong read (should be none)."""
    wrong = []
    for _ in range(rounds):
        for name in names:
            key = key_of(name)
            got = cache.get(key)
            if got is None:
                cache.put(key, ok_build(key, 3000))
            elif got.binary != content(key, 3000):
                wrong.append(name)
    return wrong


def test_concurrent_threads_read_whole_entries_while_evicting(tmp_path):
    cache = CompileCache(tmp_path / "c", 20_000)  # ~6 entries of 3 KB for 24 names: churn
    names = [f"n{i}" for i in range(24)]
    results: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(hammer(cache, names[i:] + names, 5)))
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[]] * 8
    # The count is shared by the threads; at most their in-flight writes are missed.
    assert cache.total_bytes() <= 20_000 + 8 * 3200
    cache.evict()
    assert cache.total_bytes() <= 20_000
    assert not list(cache.root.glob("*/*.tmp"))


WORKER = """
import sys
from pathlib import Path
from tests.test_compile_cache import hammer
from scorers.compile_cache import CompileCache
cache = CompileCache(Path(sys.argv[1]), 20_000)
wrong = hammer(cache, [f"n{i}" for i in range(int(sys.argv[2]), 40)] + ["n0", "n1"], 15)
print(len(wrong))
"""


def test_concurrent_processes_share_one_directory(tmp_path):
    root = tmp_path / "c"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), str(start)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start in (0, 13)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert [out.strip() for out, _ in outs] == ["0", "0"]  # no wrong or partial read
    cache = CompileCache(root, 20_000)
    # Each process counts its own writes between scans, so two can reach twice the cap at most;
    # the next scan brings it back under.
    assert cache.total_bytes() <= 2 * 20_000
    cache.evict()
    assert cache.total_bytes() <= 20_000
    assert not list(root.glob("*/*.tmp"))


# -- what is cached --------------------------------------------------------------------------------
FAST_LIMITS = SandboxLimits(
    wall_seconds=1.5,
    cpu_seconds=1.0,
    memory_mb=8192,
    output_bytes=65536,
    max_open_files=256,
    max_file_bytes=256 * 2**20,
    max_processes=512,
)


def fake_compiler(tmp_path: Path, script: str) -> Toolchain:
    """A "C++ compiler" that runs ``script`` with argv ``... -o prog prog.cpp`` as $1.."""
    return Toolchain(
        cxx="/bin/sh",
        cxx_flags=("-c", script, "fake-g++"),
        rustc=None,
        rust_flags=(),
        cache_dir=tmp_path / "cache",
        valgrind=None,
    )


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ("sleep 30", "timed out"),  # the wall-clock limit
        # The CPU limit; the sandbox may report it as a timeout or as death by SIGKILL (the
        # hard limit): either way it is not cached.
        ("while :; do :; done", "timed out|killed by signal"),
        ("yes error >&2", "output exceeded"),  # the output cap kills it
        ("sh -c 'kill -KILL $$'; exit $?", "exited 137"),  # its child died by SIGKILL
        (
            "echo 'g++: fatal error: Killed signal terminated program cc1plus' >&2; exit 1",
            "out of a resource",
        ),
        (
            "echo 'prog.cpp:1: internal compiler error: Segmentation fault' >&2; exit 4",
            "out of a resource",
        ),
    ],
    ids=["wall", "cpu", "output", "signal", "gcc-killed-cc1plus", "ice"],
)
def test_a_timed_out_or_killed_compile_is_not_cached(tmp_path, monkeypatch, script, says):
    monkeypatch.setattr(languages, "COMPILE_LIMITS", FAST_LIMITS)
    toolchain = fake_compiler(tmp_path, script)
    result = compile_program(toolchain, "cpp", "int f();", [])
    assert not result.ok and result.binary is None
    assert any(fragment in result.diagnostics for fragment in says.split("|"))
    assert stored(toolchain.cache_dir) == set()  # the next run compiles again
    assert not languages._locks  # the per-key lock is dropped after use


@pytest.mark.parametrize(
    ("script", "ok"),
    [
        ("echo 'prog.cpp:3:1: error: expected ; before }' >&2; exit 1", False),
        ("printf 'ELF' > prog; exit 0", True),
    ],
    ids=["ordinary-error", "success"],
)
def test_a_clean_success_or_an_ordinary_error_is_cached(tmp_path, monkeypatch, script, ok):
    monkeypatch.setattr(languages, "COMPILE_LIMITS", FAST_LIMITS)
    toolchain = fake_compiler(tmp_path, script)
    first = compile_program(toolchain, "cpp", "int f();", [])
    assert first.ok is ok and (first.binary == b"ELF") is ok
    assert len(stored(toolchain.cache_dir)) == 1
    # Same argv and source, but a compiler that would now fail: the answer is the cached one.
    (entry,) = stored(toolchain.cache_dir)
    cached = CompileCache(toolchain.cache_dir, toolchain.cache_mb * 2**20).get(entry)
    assert cached is not None
    assert (cached.ok, cached.binary, cached.diagnostics) == (ok, first.binary, first.diagnostics)


def test_a_direct_death_by_signal_is_not_cached():
    # Inside the sandbox's PID namespace the compiler is init, which cannot be killed from
    # inside, so the sandbox's report of a signal death is checked on the result itself.
    process = ProcessResult(-11, "", "", "", 0.1, False, False, False, {"prog": b"x"})
    build, reason = classify_compile(process, "prog", 60.0)
    assert not build.ok and build.binary is None
    assert reason == "compiler killed by signal 11"


@pytest.mark.skipif(not HAVE_CXX, reason="needs g++")
def test_a_real_cpp_compile_that_times_out_is_not_cached(tmp_path, monkeypatch):
    # 2^25 constexpr operations: g++ needs ~5 s of CPU before it gives up; the limit is 1 s.
    code = (
        "constexpr long spin() {\n    long s = 0;\n    for (long i = 0; i < 200000; ++i)\n"
        "        for (long j = 0; j < 200000; ++j) s += (i ^ j) & 1;\n    return s;\n}\n"
        'static_assert(spin() > 0, "slow");\n'
    )
    # The wall clock, not the CPU limit, ends it: the sandbox kills the whole group and says
    # so (a CPU limit may instead kill only cc1plus, which the driver reports as exit 1).
    limits = dataclasses.replace(FAST_LIMITS, wall_seconds=1.0, cpu_seconds=30.0)
    monkeypatch.setattr(languages, "COMPILE_LIMITS", limits)
    toolchain = Toolchain.discover(cache_dir=tmp_path / "cache")
    result = compile_program(toolchain, "cpp", code, [])
    assert not result.ok
    assert result.diagnostics.startswith("compiler timed out")
    assert stored(toolchain.cache_dir) == set()


@pytest.mark.skipif(not HAVE_CXX, reason="needs g++")
def test_a_binary_deleted_from_the_cache_is_recompiled(tmp_path):
    toolchain = Toolchain.discover(cache_dir=tmp_path / "cache")
    code = "int add(int a, int b) { return a + b; }\n"
    tests = ["assert(add(1, 2) == 3);"]
    first = compile_program(toolchain, "cpp", code, tests)
    assert first.ok
    (binary_file,) = toolchain.cache_dir.glob("*/*.bin")
    binary_file.unlink()  # evicted by another process after its .json was read
    again = compile_program(toolchain, "cpp", code, tests)
    assert again.ok and again.binary
    assert binary_file.is_file()  # cached again
