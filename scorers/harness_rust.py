"""The Rust harness: the crate that runs a task's tests around a solution, without libtest.

The protocol (key, report lines) is in ``scorers/harness.py``. Against cheating:

* The solution's ``fn main`` is renamed; rfai's ``main`` (in a hash-named module, so the
  solution's crate-root items and prelude shadows do not apply) reads the key, reopens fd 0
  on /dev/null and runs each test under ``catch_unwind``.
* Test snippets are rewritten (``rust_test_snippet``, outside comments and strings): assert
  macros and ``vec!``/``format!`` become rfai's or fully qualified ones
  (``::core::assert_eq!``), and prelude names (``Some``, ``None``, ``Ok``, ``Err``,
  ``String``, ``Vec``, ``Box``, ``Option``, ``Result``) absolute paths, so a solution's
  ``macro_rules! assert_eq`` or ``struct String`` does not apply.
* ``assert_eq!``/``assert_ne!`` also fail when the two sides are of different types and
  either involves a type the solution defined (``type_name_of_val``); ``assert!`` needs a
  ``bool``.

Not covered: the solution's native code runs in the harness's process (``unsafe``) and could
read the key from memory; ``assert!(a == b)`` compares with the types' own ``PartialEq``,
which cannot be an always-true cross-type one (``scorers.harness.refused_constructs``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from scorers.harness import (
    ERROR_CHARS,
    KEY_CHARS,
    RUST_COMMENT_OR_STRING,
    source_tag,
    test_name,
)
from scorers.sandbox import REPORT_FD_ENV

_RUST_MACROS = {
    "assert": "rfai_assert_{tag}",
    "debug_assert": "rfai_assert_{tag}",
    "assert_eq": "rfai_assert_eq_{tag}",
    "debug_assert_eq": "rfai_assert_eq_{tag}",
    "assert_ne": "rfai_assert_ne_{tag}",
    "debug_assert_ne": "rfai_assert_ne_{tag}",
    "vec": "::std::vec",
    "format": "::std::format",
    "matches": "::core::matches",
    "panic": "::core::panic",
}
_RUST_PRELUDE_NAMES = {
    "Some": "::core::option::Option::Some",
    "None": "::core::option::Option::None",
    "Ok": "::core::result::Result::Ok",
    "Err": "::core::result::Result::Err",
    "Option": "::core::option::Option",
    "Result": "::core::result::Result",
    "String": "::std::string::String",
    "Vec": "::std::vec::Vec",
    "Box": "::std::boxed::Box",
}
_RUST_MACRO_CALL = re.compile(r"(?<![\w:])(" + "|".join(_RUST_MACROS) + r")\s*!")
_RUST_PRELUDE_USE = re.compile(r"(?<![\w:.])(" + "|".join(_RUST_PRELUDE_NAMES) + r")\b(?!\s*!)")
_RUST_MAIN = re.compile(r"\bfn\s+main\b")
RUST_SUPPORT = r"""
mod rfai_%(tag)s {
    pub fn check_types(left: &str, right: &str) {
        // A type the solution defined (its path starts with this crate's name) is compared
        // only with exactly the same type: an always-true PartialEq<i32> does not pass.
        let ours = |name: &str| name.contains("prog::");
        if left != right && (ours(left) || ours(right)) {
            ::core::panic!("rfai: a test compared a {} with a {}", left, right);
        }
    }

    extern "C" {
        fn dup2(old: ::core::primitive::i32, new: ::core::primitive::i32) -> ::core::primitive::i32;
    }

    fn escape(text: &str) -> ::std::string::String {
        let mut out = ::std::string::String::new();
        for c in text.chars().take(%(error_chars)d) {
            let code = c as ::core::primitive::u32;
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                _ if code < 0x20 || code > 0x7e => {
                    out.push_str(&::std::format!("\\u{:04x}", code & 0xffff))
                }
                c => out.push(c),
            }
        }
        out
    }

    pub fn run(tests: &[fn()]) -> ! {
        use ::std::io::{Read, Write};
        use ::std::os::unix::io::{AsRawFd, FromRawFd};
        let mut input = [0u8; %(key_chars)d];
        let got = ::std::io::stdin().lock().read_exact(&mut input).is_ok();
        if let ::core::result::Result::Ok(null) = ::std::fs::File::open("/dev/null") {
            unsafe { dup2(null.as_raw_fd(), 0) };
        }
        let key = if got {
            ::std::string::String::from_utf8_lossy(&input).into_owned()
        } else {
            ::std::string::String::new()
        };
        let fd: ::core::primitive::i32 = ::std::env::var("%(fd_env)s")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1);
        ::std::env::remove_var("%(fd_env)s");
        let mut report = if fd >= 0 {
            ::core::option::Option::Some(unsafe { ::std::fs::File::from_raw_fd(fd) })
        } else {
            ::core::option::Option::None
        };
        let mut emit = |body: ::std::string::String| {
            if let ::core::option::Option::Some(file) = report.as_mut() {
                if file.write_all(::std::format!("{} {}\n", key, body).as_bytes()).is_err() {
                    ::std::process::exit(3);
                }
            }
        };
        ::std::panic::set_hook(::std::boxed::Box::new(|_| {}));
        for (index, test) in tests.iter().enumerate() {
            let outcome = ::std::panic::catch_unwind(*test);
            let body = match outcome {
                ::core::result::Result::Ok(()) => ::std::format!(
                    "{{\"event\": \"test\", \"index\": {}, \
                     \"passed\": true, \"error\": null}}",
                    index
                ),
                ::core::result::Result::Err(payload) => {
                    let message = if let ::core::option::Option::Some(text) =
                        payload.downcast_ref::<&'static str>()
                    {
                        ::std::string::ToString::to_string(*text)
                    } else if let ::core::option::Option::Some(text) =
                        payload.downcast_ref::<::std::string::String>()
                    {
                        text.clone()
                    } else {
                        ::std::string::ToString::to_string("panicked")
                    };
                    ::core::mem::forget(payload);
                    let first = message.lines().next().unwrap_or("panicked");
                    ::std::format!(
                        "{{\"event\": \"test\", \"index\": {}, \
                         \"passed\": false, \"error\": \"{}\"}}",
                        index, escape(first)
                    )
                }
            };
            emit(body);
        }
        emit(::std::format!("{{\"event\": \"done\", \"pid\": {}}}", ::std::process::id()));
        let _ = ::std::io::stdout().flush();
        ::std::process::exit(0)
    }
}

#[allow(unused_macros)]
macro_rules! rfai_assert_%(tag)s {
    ($condition:expr $(,)?) => {{
        let rfai_condition: ::core::primitive::bool = $condition;
        ::core::assert!(rfai_condition)
    }};
    ($condition:expr, $($arg:tt)+) => {{
        let rfai_condition: ::core::primitive::bool = $condition;
        ::core::assert!(rfai_condition, $($arg)+)
    }};
}
#[allow(unused_macros)]
macro_rules! rfai_assert_eq_%(tag)s {
    ($left:expr, $right:expr $(, $($arg:tt)+)?) => {
        match (&$left, &$right) {
            (left, right) => {
                crate::rfai_%(tag)s::check_types(
                    ::core::any::type_name_of_val(left),
                    ::core::any::type_name_of_val(right),
                );
                ::core::assert_eq!(*left, *right $(, $($arg)+)?)
            }
        }
    };
}
#[allow(unused_macros)]
macro_rules! rfai_assert_ne_%(tag)s {
    ($left:expr, $right:expr $(, $($arg:tt)+)?) => {
        match (&$left, &$right) {
            (left, right) => {
                crate::rfai_%(tag)s::check_types(
                    ::core::any::type_name_of_val(left),
                    ::core::any::type_name_of_val(right),
                );
                ::core::assert_ne!(*left, *right $(, $($arg)+)?)
            }
        }
    };
}
"""


def rust_test_snippet(snippet: str, tag: str) -> str:
    """A Rust test snippet with its macros and prelude names made rfai's or absolute."""

    def rewrite(code: str) -> str:
        code = _RUST_MACRO_CALL.sub(lambda m: _RUST_MACROS[m.group(1)].format(tag=tag) + "!", code)
        return _RUST_PRELUDE_USE.sub(lambda m: _RUST_PRELUDE_NAMES[m.group(1)], code)

    out, last = [], 0
    for match in RUST_COMMENT_OR_STRING.finditer(snippet):
        out.append(rewrite(snippet[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(rewrite(snippet[last:]))
    return "".join(out)


def rust_test_program(code: str, tests: Sequence[str]) -> tuple[str, int]:
    """The Rust crate (rfai's own ``main``, no libtest) and the line where ``code`` starts."""
    tag = source_tag(code)
    fill = {"tag": tag, "key_chars": KEY_CHARS, "fd_env": REPORT_FD_ENV}
    parts = [_RUST_MAIN.sub("fn rfai_solution_main", code), "\n"]
    parts.append(RUST_SUPPORT % {**fill, "error_chars": ERROR_CHARS})
    for index, snippet in enumerate(tests):
        body = rust_test_snippet(snippet, tag)
        parts.append(f"#[inline(never)]\nfn {test_name(index)}() {{\n{body}\n}}\n")
    table = ", ".join(test_name(i) for i in range(len(tests)))
    parts.append(f"fn main() {{\n    rfai_{tag}::run(&[{table}])\n}}\n")
    return "".join(parts), 1
