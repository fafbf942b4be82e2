"""The C++ harness: the translation unit that runs a task's tests around a solution.

The protocol (key, report lines) is in ``scorers/harness.py``. Against cheating:

* A constructor with priority 101 (the earliest a program may use; reserved priorities are
  compile errors, ``-Werror=prio-ctor-dtor``), placed before the solution, reads the key,
  reopens fd 0 on /dev/null and supervises: it forks a child per test and reports from
  there, so no solution code (static initializers included) runs in the process that holds
  the key and the report channel, and every function the harness calls is bound before the
  solution is seen (a solution's C++ overload of ``snprintf`` or ``write`` does not apply to
  it). Harness names carry a hash of the solution (``rfai_<hash>``) so the solution cannot
  name them.
* After the solution every macro it ``#define``s is ``#undef``'d and ``assert`` is
  re-established as rfai's own, which requires a scalar (bool, number, pointer) and records a
  failure even if ``abort`` is interposed.
* Tests sit in a namespace that hides global ``operator==`` & co. from ordinary lookup (a
  solution's global ``operator==(const std::string&, const char*)`` does not apply).
* Each test runs in a child that zeroes the key before the solution's static initialization
  and ``main``; it passes only if the child writes a per-test token after the test function
  returned (``_exit(0)`` mid-test fails it). Each test's process thus runs the program from
  its start, and the efficiency count (``scorers/efficiency.py``) includes the solution's
  static initialization, from ``count_start()`` (after the harness's own, ``<iostream>``
  included for every program alike) on.

* ``assert(a == b)`` (and ``!=``, ``<``, ``<=``, ``>``, ``>=``) is decomposed
  (``start() <= a == b``): two sides of different types compare only when both are values
  (numbers, pointers, std strings/vectors/maps/pairs of values). A solution's class with an
  always-true ``operator==`` fails to compile against an int or a std::string.
* A built program defining a C-linkage function (``write``, ``memcmp``...) is refused
  (``scorers.harness.refused_binary``).

Not covered: the solution's native code runs in a process forked from the supervisor and could
in principle find the key (left on the stack or in registers) or the token in its memory
(``refused_constructs`` closes only the cheap routes). Only the
top-level comparison of an assert is checked: ``assert(!(f(x) != 2))`` or
``assert(ok && f(x) == 3)`` compare the right side with the class's own operator.
"""

from __future__ import annotations

from collections.abc import Sequence

from scorers.harness import KEY_CHARS, cpp_defined_macros, source_tag, test_name
from scorers.sandbox import REPORT_FD_ENV

CPP_PRELUDE = """#undef NDEBUG
#include <cassert>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
// Everything the harness calls is named here, before the solution: a solution's overload of
// snprintf or write (C++ linkage, a better match) does not apply to the harness's calls.
namespace rfai_%(tag)s {
typedef void (*test_fn)();
static char key[%(key_chars)d + 1];
static volatile bool failed = false;
static int child_index = -1;  // the test this process runs; -1 in the supervisor
static int child_pipe = -1;
static unsigned long long child_token[2];

static void emit(int fd, const char* body) {
    char line[512];
    int n = snprintf(line, sizeof line, "%%s %%s\\n", key, body);
    if (fd >= 0 && (n <= 0 || write(fd, line, (size_t)n) != n)) _exit(3);
    for (size_t k = 0; k < sizeof line; k++) ((volatile char*)line)[k] = 0;  // forked later
}

static unsigned long long mix(unsigned long long x) {  // splitmix64
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void describe(char* body, size_t size, int i, int status, bool returned, pid_t pid) {
    if (returned && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        snprintf(body, size, "{\\"event\\": \\"test\\", \\"index\\": %%d, "
                 "\\"passed\\": true, \\"error\\": null, \\"pid\\": %%d}", i, (int)pid);
        return;
    }
    char what[64];
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT)
        snprintf(what, sizeof what, "Aborted (assertion failed)");
    else if (WIFSIGNALED(status))
        snprintf(what, sizeof what, "killed by signal %%d", WTERMSIG(status));
    else if (!returned)
        snprintf(what, sizeof what, "exit status %%d before the test returned",
                 WEXITSTATUS(status));
    else
        snprintf(what, sizeof what, "exit status %%d", WEXITSTATUS(status));
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    snprintf(body, size, "{\\"event\\": \\"test\\", \\"index\\": %%d, "
             "\\"passed\\": false, \\"error\\": \\"%%s\\", \\"pid\\": %%d, "
             "\\"signal\\": %%d}", i, what, (int)pid, sig);
}

// The supervisor. It runs before any of the solution's code (101 is the earliest priority a
// program may use and this constructor comes first in the file), reads the key, closes fd 0
// and forks one child per test, which returns from here into the program's static
// initialization and main (run_test). This process reports and exits from here: no code of
// the solution's ever runs in the process that holds the key and the report channel.
__attribute__((constructor(101))) static void boot() {
    char buffer[%(key_chars)d];
    size_t got = 0;
    while (got < sizeof buffer) {
        ssize_t n = read(0, buffer + got, sizeof buffer - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) {
        dup2(null_fd, 0);
        if (null_fd != 0) close(null_fd);
    }
    if (got == sizeof buffer) memcpy(key, buffer, sizeof buffer);
    memset(buffer, 0, sizeof buffer);
    const char* fd_text = getenv("%(fd_env)s");
    int fd = fd_text ? atoi(fd_text) : -1;
    unsetenv("%(fd_env)s");
    unsigned long long seed = 0;
    for (int k = 0; k < %(key_chars)d; k++) seed = mix(seed ^ (unsigned char)key[k]);
    char body[320];
    for (int i = 0; i < %(count)d; i++) {
        unsigned long long token[2] = {mix(seed + 2 * i + 1), mix(seed + 2 * i + 2)};
        int pipe_fds[2];
        if (pipe(pipe_fds) != 0) _exit(2);
        pid_t pid = fork();
        if (pid < 0) _exit(2);
        if (pid == 0) {
            if (fd >= 0) close(fd);
            close(pipe_fds[0]);
            for (int k = 0; k < %(key_chars)d; k++) ((volatile char*)key)[k] = 0;
            seed = 0;
            child_index = i;
            child_pipe = pipe_fds[1];
            memcpy(child_token, token, sizeof token);
            return;  // on to the solution's static initialization, then main: run_test
        }
        close(pipe_fds[1]);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0) {}
        unsigned long long got_token[2] = {0, 0};
        fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
        ssize_t n = read(pipe_fds[0], got_token, sizeof got_token);
        close(pipe_fds[0]);
        bool returned = n == (ssize_t)sizeof got_token && got_token[0] == token[0]
                        && got_token[1] == token[1];
        describe(body, sizeof body, i, status, returned, pid);
        emit(fd, body);
    }
    snprintf(body, sizeof body, "{\\"event\\": \\"done\\", \\"pid\\": %%d}", (int)getpid());
    emit(fd, body);
    _exit(0);  // the solution's initializers and main never run in this process
}

// A child: the test function, then the token that proves it returned.
[[noreturn]] static void run_test(const test_fn* tests) {
    if (child_index < 0) _exit(2);
    tests[child_index]();
    // Only a test function that returned (and whose asserts held) gets here.
    if (!failed && write(child_pipe, child_token, sizeof child_token)
                       == (ssize_t)sizeof child_token) {
        fflush(stdout);
        _exit(0);  // no atexit handlers or static destructors of the solution after the test
    }
    _exit(1);
}

[[noreturn]] static void fail(const char* expression, int line) {
    failed = true;
    fprintf(stderr, "assertion failed: %%s (line %%d)\\n", expression, line);
    fflush(stderr);
    abort();
}
template <class T> constexpr bool scalar() {
    static_assert(std::is_scalar<typename std::decay<T>::type>::value,
                  "rfai: assert() in a test needs a bool (or a number or pointer), not a class");
    return true;
}

// The efficiency count (callgrind's --zero-before) starts when this is called: after the
// harness's own static initialization (<iostream>'s std::ios_base::Init, included above for
// every program alike) and before the solution's, which follows in this translation unit.
__attribute__((noinline)) static int count_start() {
    static volatile int calls = 0;
    return ++calls;
}
static const int counted_from = count_start();
}  // namespace rfai_%(tag)s

#define main rfai_solution_main
"""
CPP_AFTER_SOLUTION = """
#undef main
#undef NDEBUG
#undef assert
#define assert(e) (::rfai_%(tag)s::holds(::rfai_%(tag)s::start() <= e) \\
    ? void(0) : ::rfai_%(tag)s::fail(#e, __LINE__))
namespace rfai_%(tag)s {
// assert(a == b) becomes check(start() <= a == b): `<=` binds tighter than `==` and looser
// than arithmetic, so `start() <= a` captures the left side and the comparison is rfai's.
// Two sides of different types compare only when both are values: numbers, pointers, and
// std strings, containers, pairs, tuples and optionals of values. A solution's class with an
// always-true operator== (member, free or template) therefore fails against an int or a
// std::string; compared with exactly its own type, it compares as it says.
struct hide {};
bool operator==(hide, hide);
bool operator!=(hide, hide);
bool operator<(hide, hide);
bool operator>(hide, hide);
bool operator<=(hide, hide);
bool operator>=(hide, hide);
template <class T> struct is_value : std::is_arithmetic<T> {};
template <class T> struct is_value<T*> : std::true_type {};
template <> struct is_value<std::nullptr_t> : std::true_type {};
template <class... T> struct all_values : std::true_type {};
template <class T, class... R> struct all_values<T, R...>
    : std::integral_constant<bool, is_value<typename std::decay<T>::type>::value
                                       && all_values<R...>::value> {};
template <class C, class Tr, class A> struct is_value<std::basic_string<C, Tr, A>>
    : is_value<C> {};
template <class T, class A> struct is_value<std::vector<T, A>> : is_value<T> {};
template <class K, class V, class C, class A> struct is_value<std::map<K, V, C, A>>
    : all_values<K, V> {};
template <class A, class B> struct is_value<std::pair<A, B>> : all_values<A, B> {};
struct verdict {
    bool ok;
    explicit operator bool() const { return ok; }
};
template <class L, class R> constexpr bool comparable() {
    typedef typename std::decay<L>::type l;
    typedef typename std::decay<R>::type r;
    static_assert(std::is_same<l, r>::value || (is_value<l>::value && is_value<r>::value),
                  "rfai: a test compared a class with a value of another type");
    return true;
}
template <class L> struct lhs {
    const L& left;
    template <class R> verdict operator==(const R& right) const {
        return comparable<L, R>(), verdict{bool(left == right)};
    }
    template <class R> verdict operator!=(const R& right) const {
        return comparable<L, R>(), verdict{bool(left != right)};
    }
    template <class R> verdict operator<(const R& right) const {
        return comparable<L, R>(), verdict{bool(left < right)};
    }
    template <class R> verdict operator>(const R& right) const {
        return comparable<L, R>(), verdict{bool(left > right)};
    }
    template <class R> verdict operator<=(const R& right) const {
        return comparable<L, R>(), verdict{bool(left <= right)};
    }
    template <class R> verdict operator>=(const R& right) const {
        return comparable<L, R>(), verdict{bool(left >= right)};
    }
};
struct start {
    template <class L> lhs<L> operator<=(const L& left) const { return lhs<L>{left}; }
};
inline bool holds(verdict v) { return v.ok; }
inline bool holds(bool v) { return v; }
template <class L> bool holds(const lhs<L>& whole) {
    return scalar<L>(), bool(whole.left);
}
}  // namespace rfai_%(tag)s
namespace rfai_tests_%(tag)s {
// Declared here, these hide global operators from ordinary lookup in the tests: a solution's
// global operator== on std types does not apply (ADL still finds std's own).
struct hide {};
bool operator==(hide, hide);
bool operator!=(hide, hide);
bool operator<(hide, hide);
bool operator>(hide, hide);
bool operator<=(hide, hide);
bool operator>=(hide, hide);
bool operator!(hide);
"""
CPP_RUNNER = """
}  // namespace rfai_tests_%(tag)s
namespace rfai_%(tag)s {
static const test_fn tests[] = {%(table)s};
}  // namespace rfai_%(tag)s

int main() { ::rfai_%(tag)s::run_test(::rfai_%(tag)s::tests); }
"""


def cpp_count_start(code: str) -> str:
    """The harness function after which the efficiency count starts, as callgrind names it."""
    return f"rfai_{source_tag(code)}::count_start()"


def cpp_test_program(code: str, tests: Sequence[str]) -> tuple[str, int]:
    """The C++ translation unit, and the 1-based line where ``code`` starts in it."""
    fill = {"tag": source_tag(code), "key_chars": KEY_CHARS, "fd_env": REPORT_FD_ENV}
    prelude = CPP_PRELUDE % {**fill, "count": len(tests)}
    undefs = "".join(f"#undef {name}\n" for name in cpp_defined_macros(code))
    parts = [prelude, code, "\n", undefs, CPP_AFTER_SOLUTION % fill]
    for index, snippet in enumerate(tests):
        parts.append(f"__attribute__((noinline)) void {test_name(index)}() {{\n")
        parts.append(f"{snippet}\n}}\n")
    table = ", ".join(f"rfai_tests_{fill['tag']}::{test_name(i)}" for i in range(len(tests)))
    parts.append(CPP_RUNNER % {**fill, "table": table or "0"})
    return "".join(parts), prelude.count("\n") + 1
