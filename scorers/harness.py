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
(interposing libc), adding to ``namespace std`` (``using namespace std`` is fine), ``ifunc``
resolvers, ``constructor`` attributes (code before ``main`` outside the cost count); Rust
``asm!``, ``#[no_mangle]``, ``#[link_section]``, ``#[export_name]``, ``extern crate``,
``PartialEq``/``PartialOrd`` with another type (``impl PartialEq<i64> for Any``, also renamed
or named by a macro).
``refused_binary`` turns away a linked C++ program that defines a C-linkage function (ELF
symbol table): a definition of ``write`` or ``memcmp`` after the header declared it takes C
linkage without ``extern "C"`` and replaces libc's for the harness and for std::string.

Not covered: native code runs in the harness's process (Rust) or in one forked from it
(C++, whose reporting process runs no solution code) and can in principle read the key or a
test's token from its own memory, or overwrite the harness; the bans above only close the
cheap routes. The binary check reads ELF only (macOS Mach-O binaries are not
checked for C-linkage definitions).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import struct

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
    # A function in .init_array of its own runs before main, where the cost is not counted
    # (the solution's static initialization is; scorers/efficiency.py).
    "constructor": "a constructor attribute",
    "__constructor__": "a constructor attribute",
    "ifunc": "an ifunc resolver (it runs before any constructor)",
}
_RUST_BANNED = (
    (re.compile(r"\b(?:global_|naked_)?asm\s*!"), "inline assembly"),
    (re.compile(r"\bno_mangle\b"), "#[no_mangle]"),
    (re.compile(r"\bexport_name\b"), "#[export_name]"),
    (re.compile(r"\blink_section\b"), "#[link_section]"),
    (re.compile(r"\blink_name\b"), "#[link_name]"),
    (re.compile(r"\bextern\s+crate\b"), "extern crate"),
    (re.compile(r"valgrind"), "valgrind"),
    # A hand-written PartialEq<i64> for the solution's type that is always true would pass
    # `assert!(f(x) == 3)`; equality between a solution's type and another type is refused
    # (#[derive(PartialEq)] compares a type with itself and stays allowed).
    (re.compile(r"\bPartial(?:Eq|Ord)\s*<"), "PartialEq/PartialOrd with another type"),
    (re.compile(r"\bPartial(?:Eq|Ord)\s+as\b"), "renaming PartialEq/PartialOrd"),
    (re.compile(r"\bimpl\s*(?:<[^>]*>\s*)?\$"), "implementing a trait a macro names"),
    # Lint levels would switch off the compiler warnings that code quality counts
    # (scorers/quality.py); `#[$attr(...)]` is an attribute a macro names, so it could be one.
    (re.compile(r"#\s*!?\s*\[[^\]]*\b(?:allow|expect)\b"), "an allow/expect lint attribute"),
    (re.compile(r"#\s*!?\s*\[\s*\$"), "an attribute a macro names"),
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
    if re.search(r"\bnamespace\s+std\b", re.sub(r"\busing\s+namespace\s+std\b", " ", bare)):
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


def without_comments(language: str, code: str) -> str:
    """``code`` with every comment blanked (its line breaks kept), strings left as they are.

    For the code-quality metrics: lizard obeys directives in comments (``#lizard forgive``
    drops a function from its results, ``GENERATED CODE`` ends the analysis), which would let
    a solution switch the measurement off."""
    pattern = RUST_COMMENT_OR_STRING if language == "rust" else _C_COMMENT_OR_STRING

    def blank(match: re.Match) -> str:
        text = match.group(0)
        return "\n" * text.count("\n") if text.startswith("/") else text

    return pattern.sub(blank, code)


def cpp_defined_macros(code: str) -> list[str]:
    """Every macro name the source ``#define``s (``#`` or ``%:``), after line splicing."""
    bare = _C_COMMENT.sub(" ", _SPLICE.sub("", code))
    found = re.findall(r"^[ \t]*(?:#|%:)[ \t]*define[ \t]+([A-Za-z_]\w*)", bare, re.MULTILINE)
    return sorted(set(found))


# -- C-linkage functions a C++ binary defines (a solution replacing libc) ------------------

# Defined by the C runtime and the toolchain in every C++ program, not by a solution.
_RUNTIME_FUNCTIONS = frozenset(
    ("main", "_start", "_init", "_fini", "__libc_csu_init", "__libc_csu_fini",
     "_dl_relocate_static_pie", "__gmon_start__")
)  # fmt: skip


def c_linkage_functions(binary: bytes) -> list[str] | None:
    """Functions with C linkage (unmangled names) a linked ELF binary defines, beyond the C
    runtime's; None when ``binary`` is not a 64-bit little-endian ELF file.

    A C++ solution gets C linkage without writing ``extern "C"``: defining ``ssize_t
    write(int, const void*, size_t)`` after ``<unistd.h>`` declared it defines libc's
    ``write`` for the whole program (the harness's report lines, ``memcmp`` in every
    ``std::string`` comparison...). Its own functions are mangled (``_Z...``).
    """
    if binary[:6] != b"\x7fELF\x02\x01":
        return None
    (shoff,) = struct.unpack_from("<Q", binary, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", binary, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", binary, shoff + i * shentsize) for i in range(shnum)
    ]
    found = set()
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != 2 or entsize != 24:  # SHT_SYMTAB
            continue
        strtab_offset = sections[link][4]
        for position in range(offset, offset + size, entsize):
            name_at, info, _other, shndx = struct.unpack_from("<IBBH", binary, position)
            bind, symbol_kind = info >> 4, info & 0xF
            if shndx == 0 or bind not in (1, 2) or symbol_kind not in (2, 10):
                continue  # undefined, local, or not a function (FUNC 2, GNU_IFUNC 10)
            end = binary.index(b"\0", strtab_offset + name_at)
            name = binary[strtab_offset + name_at : end].decode("ascii", "replace")
            if symbol_kind == 10 or (not name.startswith("_Z") and name not in _RUNTIME_FUNCTIONS):
                found.add(name)
    return sorted(found)


def refused_binary(language: str, binary: bytes) -> str | None:
    """Why a built C++ program is not run (it defines libc functions), or None."""
    if language != "cpp":
        return None  # Rust needs #[no_mangle] / #[export_name] for that: refused in source
    defined = c_linkage_functions(binary)
    if defined:
        names = ", ".join(defined[:5])
        return f"the solution defines C library functions ({names}): not allowed"
    return None
