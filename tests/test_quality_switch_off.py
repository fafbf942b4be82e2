"""Code quality cannot be switched off from inside the solution, in Python, C++ and Rust.

Each measurement obeys some directive a program can write: ruff skips lines with a
``# noqa`` (or a whole file with ``# ruff: noqa``), lizard drops a function commented
``#lizard forgive`` and stops reading at ``GENERATED CODE``, rustc hides warnings under
``#[allow(...)]``. A student rewarded on code quality would learn to write them. Each attack
must score exactly what the plain program scores, or be refused.
"""

import pytest

from scorers.languages import Toolchain
from scorers.quality import compiled_quality, python_quality
from scorers.sandbox import SandboxLimits
from scorers.suite import ScoringSuite
from scorers.task import Task

PY_LINT = "import os, sys\n\n\ndef total(n):\n    l = 0\n    return eval('n * (n - 1) // 2')\n"

# One function of cyclomatic complexity 22: lizard's complexity part is 0 for it.
CPP_COMPLEX = (
    "int total(int n) {\n    int s = 0;\n"
    + "".join(f"    if (n > {i}) s += {i};\n" for i in range(21))
    + "    return s;\n}\n"
)
LIMITS = SandboxLimits(wall_seconds=10.0)
RUST_WARN = "pub fn total(n: i64) -> i64 {\n    let unused = 1;\n    n * (n - 1) / 2\n}\n"


def task(language: str) -> Task:
    tests = {
        "cpp": ("assert(total(3) >= 0);",),
        "rust": ("assert_eq!(total(10), 45);",),
    }[language]
    return Task(f"t-{language}", "Sum below n.", language, "total", tests, None)


@pytest.mark.parametrize(
    "attack",
    [
        "\n".join(line + "  # noqa" if line else line for line in PY_LINT.split("\n")),
        "# ruff: noqa\n" + PY_LINT,
        "# flake8: noqa\n" + PY_LINT,
    ],
    ids=["noqa-per-line", "ruff-noqa-file", "flake8-noqa-file"],
)
def test_python_noqa_hides_no_lint_finding(attack):
    _, plain = python_quality(PY_LINT)
    _, attacked = python_quality(attack)
    assert plain["lint"] < 1.0  # the plain program has findings
    assert attacked["lint"] == plain["lint"]
    # The same findings (codes; a line added at the top moves their line numbers).
    codes = [sorted(f.split()[0] for f in r["findings"]) for r in (plain, attacked)]
    assert codes[0] == codes[1]


@pytest.mark.parametrize(
    "comment",
    ["// #lizard forgives", "/* #lizard forgive global */", "// GENERATED CODE"],
)
def test_cpp_lizard_directives_hide_no_complexity(comment):
    toolchain = Toolchain.discover()
    if toolchain.cxx is None:
        pytest.skip("no C++ compiler")
    _, plain = compiled_quality(task("cpp"), CPP_COMPLEX, toolchain)
    attack = CPP_COMPLEX.replace("    int s = 0;\n", f"    int s = 0;\n    {comment}\n")
    if "GENERATED" in comment:
        attack = f"{comment}\n{CPP_COMPLEX}"
    _, attacked = compiled_quality(task("cpp"), attack, toolchain)
    assert plain["complexity"] == 0.0
    assert attacked["complexity"] == plain["complexity"]


@pytest.mark.parametrize(
    "attack",
    [
        "#![allow(warnings)]\n" + RUST_WARN,
        "#[allow(unused_variables)]\n" + RUST_WARN,
        "#[cfg_attr(all(), allow(unused))]\n" + RUST_WARN,
        "#[expect(unused_variables)]\n" + RUST_WARN,
        "macro_rules! quiet { ($a:ident, $($f:tt)*) => { #[$a(unused)] $($f)* } }\n"
        "quiet!(allow, " + RUST_WARN + ");\n",
    ],
    ids=["crate-allow", "fn-allow", "cfg-attr-allow", "expect", "macro-named-attribute"],
)
def test_rust_lint_attributes_are_refused(attack):
    toolchain = Toolchain.discover()
    if toolchain.rustc is None:
        pytest.skip("no rustc")
    _, plain = compiled_quality(task("rust"), RUST_WARN, toolchain)
    assert plain["lint"] < 1.0 and plain["findings"]  # the unused variable is a warning
    suite = ScoringSuite({"correctness": 0.5, "code_quality": 0.5}, LIMITS, toolchain)
    assert suite.score(task("rust"), RUST_WARN).status == "passed"
    result = suite.score(task("rust"), attack)
    assert result.status == "compile_error" and result.score == 0.0
    assert "allow/expect lint attribute" in result.error or "a macro names" in result.error
