"""Code quality, efficiency and documentation: the formulas against hand values, for real."""

import math

import pytest

from scorers.documentation import compiled_documentation, python_documentation
from scorers.efficiency import Cost, efficiency_score
from scorers.languages import Toolchain
from scorers.quality import complexity_part, lint_part, python_quality, ruff_findings
from scorers.sandbox import SandboxLimits
from scorers.suite import ScoringSuite
from scorers.task import Task

LIMITS = SandboxLimits(wall_seconds=10.0)
ALL = {"correctness": 0.3, "code_quality": 0.3, "efficiency": 0.2, "documentation": 0.2}
SUM_TESTS = ("assert total(10) == 45", "assert total(300) == 44850")
LINEAR = (
    "def total(n: int) -> int:\n    s = 0\n    for i in range(n):\n        s += i\n    return s\n"
)
CLOSED_FORM = "def total(n: int) -> int:\n    return n * (n - 1) // 2\n"


def make_task(language="python", tests=SUM_TESTS):
    return Task(f"t-sum-{language}", "Sum below n.", language, "total", tuple(tests), None)


# -- efficiency ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("student", "teacher", "expected"),
    [
        (100, 100, 1.0),  # equal cost: sqrt(1) = 1
        (200, 100, math.sqrt(0.5)),  # twice the teacher's cost: sqrt(1/2) = 0.7071
        (400, 100, 0.5),  # 4x: sqrt(1/4)
        (10_000, 100, 0.1),  # 100x: sqrt(1/100)
        (50, 100, 1.0),  # cheaper than the teacher: capped at 1
    ],
)
def test_efficiency_mapping_hand_values(student, teacher, expected):
    assert efficiency_score(Cost(student, "lines"), Cost(teacher, "lines")) == pytest.approx(
        expected
    )


def test_efficiency_refuses_mixed_units():
    with pytest.raises(ValueError, match="lines"):
        efficiency_score(Cost(1, "lines"), Cost(1, "instructions"))


def test_python_efficiency_prefers_the_cheaper_program_and_repeats_exactly():
    suite = ScoringSuite(ALL, LIMITS)
    task = make_task()
    teacher = suite.score_teacher(task, CLOSED_FORM)
    assert teacher.criteria["efficiency"] == 1.0
    # Defining it: the module's call + its `def` line = 2; each of the 2 tests: the call +
    # the return line = 2 more each. 2 + 2 * 2 = 6.
    assert (teacher.cost, teacher.cost_unit) == (6.0, "lines")
    first = suite.score(task, LINEAR, baseline=teacher)
    second = suite.score(task, LINEAR, baseline=teacher)
    # The loop costs far more than the closed form: efficiency well under 1 ...
    assert first.criteria["efficiency"] < 0.2
    # ... and the count is deterministic, so a repeat gives the same value (well within 0.02).
    assert abs(first.criteria["efficiency"] - second.criteria["efficiency"]) <= 0.02
    assert first.cost == second.cost


@pytest.mark.parametrize("language", ["cpp", "rust"])
def test_compiled_efficiency_repeats_within_tolerance(language):
    if Toolchain.discover().valgrind is None:
        pytest.skip("valgrind not installed: CPU-time fallback is not deterministic")
    if language == "cpp":
        tests = ("assert(total(300) == 44850);",)
        fast = "long total(long n) { return n * (n - 1) / 2; }"
        slow = "long total(long n) { long s = 0; for (long i = 0; i < n; i++) s += i; return s; }"
    else:
        tests = ("assert_eq!(total(300), 44850);",)
        fast = "pub fn total(n: i64) -> i64 { n * (n - 1) / 2 }"
        slow = "pub fn total(n: i64) -> i64 { let mut s = 0; for i in 0..n { s += i; } s }"
    suite = ScoringSuite(ALL, LIMITS)
    task = make_task(language, tests)
    teacher = suite.score_teacher(task, fast)
    runs = [suite.score(task, slow, baseline=teacher) for _ in range(2)]
    assert teacher.cost_unit == "instructions"
    assert runs[0].criteria["efficiency"] < 0.5
    assert abs(runs[0].criteria["efficiency"] - runs[1].criteria["efficiency"]) <= 0.02


def test_efficiency_not_applicable_without_a_passing_baseline():
    suite = ScoringSuite(ALL, LIMITS)
    task = make_task()
    alone = suite.score(task, LINEAR)
    assert alone.criteria["efficiency"] is None
    assert "efficiency" not in alone.weights
    failing_teacher = suite.score_teacher(task, "def total(n):\n    return 0\n")
    assert suite.score(task, LINEAR, baseline=failing_teacher).criteria["efficiency"] is None


def test_failing_student_gets_zero_efficiency_against_a_passing_teacher():
    suite = ScoringSuite(ALL, LIMITS)
    task = make_task()
    teacher = suite.score_teacher(task, CLOSED_FORM)
    wrong = suite.score(task, "def total(n):\n    return 0\n", baseline=teacher)
    assert wrong.criteria["efficiency"] == 0.0


# -- code quality -------------------------------------------------------------------------


def test_quality_parts_hand_values():
    # cc 5 costs nothing, cc 20 everything, cc 12.5 half: mean of (0, 1, 0.5) = 0.5 -> 0.5.
    assert complexity_part([5, 20, 12.5]) == pytest.approx(0.5)
    assert complexity_part([]) == 1.0
    assert lint_part(0) == 1.0 and lint_part(3) == pytest.approx(0.7) and lint_part(12) == 0.0


def test_ruff_findings_use_the_pinned_rule_selection():
    findings = ruff_findings("import os\n\ndef f(x):\n    return x == None\n")
    codes = sorted(f.split()[0] for f in findings)
    # F401 (unused import); E711 (== None) is not in RUFF_RULES (E7 is: E711 is E7xx).
    assert codes == ["E711", "F401"]


def test_python_quality_formula_and_unparseable_code():
    value, parts = python_quality(CLOSED_FORM)
    expected = 0.4 * parts["mi"] + 0.3 * parts["complexity"] + 0.3 * parts["lint"]
    assert value == pytest.approx(expected)
    assert parts["complexity"] == 1.0 and parts["lint"] == 1.0
    assert python_quality("def broken(:\n")[0] == 0.0


# -- documentation ------------------------------------------------------------------------


def test_python_documentation_hand_values():
    code = (
        "def documented(x: int) -> int:\n"
        '    """Return x."""\n'
        "    return x\n"
        "\n"
        "def bare(x):\n"
        "    return x\n"
    )
    value, parts = python_documentation(code)
    # docstrings 1/2; type hints 1/2; comment lines 1 of 5 non-blank = 0.2 -> min(1, 0.2/0.15)=1
    assert parts == {"docstrings": 0.5, "comments": 1.0, "type_hints": 0.5}
    assert value == pytest.approx(0.5 * 0.5 + 0.2 * 1.0 + 0.3 * 0.5)
    assert python_documentation("def broken(:\n")[0] == 0.0


def test_rust_documentation_counts_doc_comments_on_pub_fns():
    code = (
        "/// Adds.\npub fn add(a: i32, b: i32) -> i32 { a + b }\n"
        "pub fn sub(a: i32, b: i32) -> i32 { a - b }\n"
        "fn helper() {}\n"
    )
    value, parts = compiled_documentation("rust", code)
    # pub fns: add (documented), sub (not) -> 0.5; 1 comment line of 4 = 0.25 -> capped at 1.
    assert parts == {"doc_comments": 0.5, "comments": 1.0}
    assert value == pytest.approx(0.7 * 0.5 + 0.3 * 1.0)


def test_cpp_documentation_accepts_block_comments_and_skips_main():
    code = "/** Adds. */\nint add(int a, int b) { return a + b; }\nint main() { return 0; }\n"
    _value, parts = compiled_documentation("cpp", code)
    assert parts["doc_comments"] == 1.0
