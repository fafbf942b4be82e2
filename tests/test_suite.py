"""ScoringSuite weights and errors, and ScoringPool matching results to submissions."""

import time

import pytest

from scorers import suite as suite_module
from scorers.pool import ScoringPool
from scorers.sandbox import SandboxLimits
from scorers.suite import ScoringError, ScoringSuite
from scorers.task import Task

LIMITS = SandboxLimits(wall_seconds=10.0)
TESTS = ("assert double(1) == 2", "assert double(2) == 4", "assert double(3) == 6")


def make_task(tests=TESTS, task_id="t-double"):
    return Task(task_id, "Write double.", "python", "double", tuple(tests), None, 1, "mem:1")


class ConstantScorer:
    """A stand-in second criterion: 0.5 for tasks with tests, not applicable otherwise."""

    name = "constant"

    def __init__(self, limits, toolchain=None):
        self.limits = limits

    def score(self, task, code):
        return (0.5 if task.tests else None), None


@pytest.fixture
def with_constant_scorer(monkeypatch):
    monkeypatch.setitem(suite_module.KNOWN_SCORERS, "constant", ConstantScorer)


def test_single_criterion_weight_is_renormalised_to_one():
    suite = ScoringSuite({"correctness": 3.0}, LIMITS)
    result = suite.score(make_task(), "def double(x):\n    return x * 2 if x < 3 else 0\n")
    # Tests 0 and 1 pass, test 2 fails: correctness 2/3; weight 3 / 3 = 1.
    assert result.weights == {"correctness": 1.0}
    assert result.score == pytest.approx(2 / 3)
    assert result.criteria == {"correctness": pytest.approx(2 / 3)}
    assert (result.status, result.tests_passed, result.tests_total) == ("failed", 2, 3)
    assert result.error == "test 2: AssertionError"


def test_weights_renormalised_over_applicable_criteria(with_constant_scorer):
    suite = ScoringSuite({"correctness": 3.0, "constant": 1.0}, LIMITS)
    result = suite.score(make_task(), "def double(x):\n    return 2 * x\n")
    # Weights 3 and 1 -> 0.75 and 0.25; score 0.75 * 1.0 + 0.25 * 0.5 = 0.875.
    assert result.weights == {"correctness": pytest.approx(0.75), "constant": pytest.approx(0.25)}
    assert result.score == pytest.approx(0.875)
    assert result.status == "passed"
    assert result.error is None


def test_zero_weight_criterion_is_not_run(with_constant_scorer):
    suite = ScoringSuite({"correctness": 1.0, "constant": 0.0}, LIMITS)
    result = suite.score(make_task(), "def double(x):\n    return 2 * x\n")
    assert result.criteria == {"correctness": 1.0}
    assert result.weights == {"correctness": 1.0}


def test_not_applicable_criterion_drops_out(with_constant_scorer, monkeypatch):
    class OnlyWithoutTests(ConstantScorer):
        def score(self, task, code):
            return 0.4, None

    monkeypatch.setitem(suite_module.KNOWN_SCORERS, "constant", OnlyWithoutTests)
    suite = ScoringSuite({"correctness": 1.0, "constant": 1.0}, LIMITS)
    result = suite.score(make_task(tests=()), "def double(x):\n    return 2 * x\n")
    # correctness is None without tests, so "constant" carries all the weight: score 0.4.
    assert result.criteria == {"correctness": None, "constant": 0.4}
    assert result.weights == {"constant": 1.0}
    assert result.score == pytest.approx(0.4)
    assert (result.status, result.tests_total) == ("not_run", 0)


def test_no_applicable_criterion_is_a_scoring_error():
    suite = ScoringSuite({"correctness": 1.0}, LIMITS)
    with pytest.raises(ScoringError, match="t-no-tests"):
        suite.score(make_task(tests=(), task_id="t-no-tests"), "def double(x):\n    return 2\n")


def test_empty_program_scores_zero():
    result = ScoringSuite({"correctness": 1.0}, LIMITS).score(make_task(), "")
    assert (result.score, result.status, result.tests_passed) == (0.0, "not_run", 0)
    assert result.error == "empty program"


def test_timeout_error_summary():
    limits = SandboxLimits(wall_seconds=1.0)
    code = "def double(x):\n    while True:\n        pass\n"
    result = ScoringSuite({"correctness": 1.0}, limits).score(make_task(), code)
    assert result.status == "timeout"
    assert result.score == 0.0
    assert result.error.startswith("timeout: ")


def test_unknown_scorer_weight_lists_known_ones():
    with pytest.raises(
        ValueError, match=r"unknown scorer\(s\) 'quality'.*known scorers: correctness, code_q"
    ):
        ScoringSuite({"correctness": 1.0, "quality": 0.5}, LIMITS)


@pytest.mark.parametrize("weights", [{"correctness": -1.0}, {"correctness": 0.0}, {}])
def test_negative_or_all_zero_weights(weights):
    with pytest.raises(ValueError, match="weight"):
        ScoringSuite(weights, LIMITS)


def test_pool_matches_results_to_submissions_when_completion_is_shuffled():
    suite = ScoringSuite({"correctness": 1.0}, LIMITS)
    # Program k sleeps (3 - k) * 0.3 s before defining double() and passes exactly k tests,
    # so the earliest submission finishes last.
    programs = [
        f"import time\ntime.sleep({(3 - k) * 0.3})\n"
        f"def double(x):\n    return 2 * x if x <= {k} else -1\n"
        for k in range(4)
    ]
    finished = []
    with ScoringPool(suite, workers=4) as pool:
        futures = [pool.submit(make_task(), code) for code in programs]
        for k, future in enumerate(futures):
            future.add_done_callback(lambda _, k=k: finished.append((time.monotonic(), k)))
        results = [future.result() for future in futures]
    assert [r.tests_passed for r in results] == [0, 1, 2, 3]
    assert [r.score for r in results] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    completion_order = [k for _, k in sorted(finished)]
    assert completion_order != [0, 1, 2, 3]  # the shuffle really happened


def test_pool_futures_carry_exceptions():
    suite = ScoringSuite({"correctness": 1.0}, LIMITS)
    with ScoringPool(suite, workers=2) as pool:
        no_tests = pool.submit(make_task(tests=(), task_id="t-none"), "x = 1")
        with pytest.raises(ScoringError, match="t-none"):
            no_tests.result()


def test_pool_rejects_zero_workers():
    with pytest.raises(ValueError, match="workers"):
        ScoringPool(ScoringSuite({"correctness": 1.0}, LIMITS), workers=0)


def test_regression_uncompilable_code_earns_no_documentation_or_quality():
    # A random student model's C++ "program" of comment-shaped noise once scored
    # documentation 1.0 while failing to compile: a reward for writing `//`.
    from rfai.tasks import load_tasks
    from scorers import SandboxLimits, ScoringSuite

    task = load_tasks("builtin:cpp")[0]
    suite = ScoringSuite(
        {"correctness": 0.3, "code_quality": 0.3, "documentation": 0.2, "efficiency": 0.2},
        SandboxLimits(),
    )
    noise = "// numerator! args chunks\n/// This library does things\nheap S W break.state(("
    result = suite.score(task, noise)
    assert result.status == "compile_error"
    assert result.criteria["documentation"] == 0.0
    assert result.criteria["code_quality"] == 0.0
    assert result.score == 0.0


TIDY_STUBS = {
    # Tidy, documented code that compiles and does nothing: it must earn nothing.
    "python": 'def rle(s: str) -> str:\n    """Run-length encode s."""\n    return "?"\n',
    "cpp": "#include <string>\n\n/// Run-length encode s.\n"
    'std::string rle(const std::string& s) {\n    return "?";\n}\n',
    "rust": "/// Run-length encode `s`.\npub fn rle(s: &str) -> String {\n    let _ = s;\n"
    '    "?".to_string()\n}\n',
}


@pytest.mark.parametrize("language", sorted(TIDY_STUBS))
def test_regression_code_that_passes_no_test_earns_no_quality_or_documentation(language):
    """Found by a learning run: code that compiled but failed every test kept code_quality
    0.94, and plain GRPO learned to answer with a bare name (reward 0.045 -> 0.356, nothing
    passed). Quality and documentation now count in proportion to the tests passed."""
    from rfai.tasks import load_tasks

    task = next(t for t in load_tasks(f"builtin:{language}") if t.entry_point == "rle")
    suite = ScoringSuite(
        {"correctness": 0.3, "code_quality": 0.3, "documentation": 0.2, "efficiency": 0.2},
        SandboxLimits(),
    )
    stub = suite.score(task, TIDY_STUBS[language])
    assert stub.status == "failed" and stub.tests_passed == 0
    assert stub.criteria["code_quality"] == 0.0 and stub.criteria["documentation"] == 0.0
    assert stub.details["code_quality"]["ungated_value"] > 0.5  # what it used to earn
    assert stub.score == 0.0
    bare = suite.score(make_task(), "RRRR\n") if language == "python" else None
    assert bare is None or (bare.score == 0.0 and bare.status != "passed")
    honest = suite.score(task, task.reference_solution)
    assert honest.status == "passed" and honest.criteria["code_quality"] > 0.5


@pytest.mark.parametrize("language", ["python", "cpp", "rust"])
def test_regression_efficiency_alone_is_a_usable_weighting(language):
    """`scoring.weights: {efficiency: 1}` used to make every teacher score a ScoringError (no
    criterion applied to the teacher before its efficiency 1.0 was filled in), so every task
    was skipped at every step. The teacher now scores 1.0 against itself."""
    from rfai.tasks import load_tasks

    task = load_tasks(f"builtin:{language}")[0]
    suite = ScoringSuite({"efficiency": 1.0}, SandboxLimits())
    teacher = suite.score_teacher(task, task.reference_solution)
    assert teacher.criteria == {"efficiency": 1.0} and teacher.score == 1.0
    assert suite.score(task, task.reference_solution, baseline=teacher).score == pytest.approx(
        1.0, abs=0.05
    )
    assert suite.score(task, "", baseline=teacher).score == 0.0
