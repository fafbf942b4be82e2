"""The test harness's shared protocol; each language's harness program is in its own module.

A harness a program cannot talk to. Each run gets a fresh random key (``new_key``). The
harness reads the key (Python: also the tests) from its stdin, which the sandbox feeds and
closes; the harness then reopens fd 0 on /dev/null before any solution code runs. Nothing
about the tests is in a file, argv or the environment. Every report line on the sandbox's
report channel starts with the key: ``<key> {"event": "test", "index": i, "passed": bool,
"error": str|null}`` ... ``<key> {"event": "done"}`` (Python may also report
``compile_error`` / ``runtime_error`` / ``cost``; C++ and Rust add the ``pid`` of the process
that ran the tests, for the cost count). ``scorers/correctness.py`` drops and counts lines
without the key, so a program writing to the channel cannot forge a result. Test functions
are named ``test_name(i)`` (callgrind's ``--toggle-collect`` matches them); harness names in
compiled programs carry ``source_tag(code)``, a hash of the solution it cannot write.

The harness programs: ``scorers/harness_python.py`` (``PYTHON_HARNESS``),
``scorers/harness_cpp.py`` (``cpp_test_program``), ``scorers/harness_rust.py``
(``rust_test_program``); each module's docstring says what it does against cheating.

``refused_constructs`` turns away sources that could reach under the harness: inline asm
(also valgrind client requests), ``valgrind`` headers, section/linker attributes
(``.preinit_array``), token pasting, diagnostic pragmas, ``extern "C"`` definitions
(interposing libc), ``namespace std``; Rust ``asm!``, ``#[no_mangle]``,
``#[link_section]``, ``#[export_name]``, ``extern crate``.

Not covered: native code (C++, Rust) runs in the harness's process and can in principle
read the key or a test's token from its own memory, or overwrite the harness; the bans above
only close the cheap routes.
"""

from __future__ import annotations

import hashlib
import re
import secrets

ERROR_CHARS = 200
KEY_CHARS = 64


def new_key() -> str:
    """A fresh per-run key: 64 hex characters."""
    return secrets.token_hex(KEY_CHARS // 2)


def test_name(index: int) -> str:
    """The generated test function's name (matched by callgrind's ``--toggle-collect``)."""
    return f"rfai_test_{index:04d}"


def source_tag(code: str) -> str:
    """A hash of the solution, put in harness names so the solution cannot name them."""
    # To name them it would have to contain a hash of itself.
    return hashlib.sha256(code.encode()).hexdigest()[:16]


# -- refused constructs, and scanning a solution's source ----------------------------------

_SPLICE = re.compile(r"\\\r?\n")
_C_COMMENT_OR_STRING = re.compile(
    r'//[^\n]*|/\*.*?\*/|(?:u8|[uUL])?R"([^ ()\\\n]{0,16})\(.*?\)\1"'
    r"|(?:u8|[uUL])?\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'",
    re.DOTALL,
)
_C_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_CPP_BANNED_WORDS = {
    "asm": "inline assembly",
    "__asm__": "inline assembly",
    "__asm": "inline assembly",
    "section": "a section attribute",
    "__section__": "a section attribute",
    "_Pragma": "_Pragma",
    "init_priority": "init_priority",
}
_RUST_BANNED = (
    (re.compile(r"\b(?:global_|naked_)?asm\s*!"), "inline assembly"),
    (re.compile(r"\bno_mangle\b"), "#[no_mangle]"),
    (re.compile(r"\bexport_name\b"), "#[export_name]"),
    (re.compile(r"\blink_section\b"), "#[link_section]"),
    (re.compile(r"\blink_name\b"), "#[link_name]"),
    (re.compile(r"\bextern\s+crate\b"), "extern crate"),
    (re.compile(r"valgrind"), "valgrind"),
)
RUST_COMMENT_OR_STRING = re.compile(
    r'//[^\n]*|/\*.*?\*/|b?r(#*)".*?"\1|b?"(?:\\.|[^"\\])*"'
    r"|b?'(?:\\(?:u\{[0-9a-fA-F]{1,6}\}|x[0-9a-fA-F]{2}|.)|[^'\\\n])'",
    re.DOTALL,
)


def refused_constructs(language: str, code: str) -> str | None:
    """Why ``code`` is not run (a construct that reaches under the harness), or None."""
    if language == "cpp":
        return _refused_cpp(code)
    if language == "rust":
        return _refused_rust(code)
    return None


def _refused_cpp(code: str) -> str | None:
    spliced = _SPLICE.sub("", code)
    if "valgrind" in spliced:
        return "the solution mentions valgrind (client requests steer the cost count)"
    if re.search(r'\bextern\s*"C', _C_COMMENT.sub(" ", spliced)):
        return 'extern "C" is not allowed in a solution (it can replace libc functions)'
    bare = _C_COMMENT_OR_STRING.sub(" ", spliced)
    if "##" in bare or "%:%:" in bare:
        return "token pasting (##) is not allowed in a solution"
    if re.search(r"\bnamespace\s+std\b", bare):
        return "a solution may not add to namespace std"
    if re.search(r"^\s*(?:#|%:)\s*pragma\s+GCC\s+(?:diagnostic|poison|system_header)", bare, re.M):
        return "#pragma GCC diagnostic is not allowed in a solution"
    for word in re.findall(r"[A-Za-z_]\w*", bare):
        if word in _CPP_BANNED_WORDS:
            return f"{_CPP_BANNED_WORDS[word]} ({word}) is not allowed in a solution"
    return None


def _refused_rust(code: str) -> str | None:
    if "valgrind" in code:
        return "the solution mentions valgrind (client requests steer the cost count)"
    bare = RUST_COMMENT_OR_STRING.sub(" ", code)
    for pattern, what in _RUST_BANNED:
        if pattern.search(bare):
            return f"{what} is not allowed in a solution"
    return None


def cpp_defined_macros(code: str) -> list[str]:
    """Every macro name the source ``#define``s (``#`` or ``%:``), after line splicing."""
    bare = _C_COMMENT.sub(" ", _SPLICE.sub("", code))
    found = re.findall(r"^[ \t]*(?:#|%:)[ \t]*define[ \t]+([A-Za-z_]\w*)", bare, re.MULTILINE)
    return sorted(set(found))
