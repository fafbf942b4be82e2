"""extract_code: every branch of the module's rule, for Python, C++ and Rust tags."""

import pytest

from rfai.extract import ExtractedCode, extract_code

PY_DEF = "def add(a, b):\n    return a + b"
CPP_DEF = "int add(int a, int b) {\n    return a + b;\n}"
RUST_DEF = "fn add(a: i32, b: i32) -> i32 {\n    a + b\n}"


@pytest.mark.parametrize(
    ("language", "tag", "code"),
    [
        ("python", "python", PY_DEF),
        ("python", "py", PY_DEF),
        ("python", "Python3", PY_DEF),
        ("cpp", "cpp", CPP_DEF),
        ("cpp", "c++", CPP_DEF),
        ("rust", "rust", RUST_DEF),
        ("rust", "rs", RUST_DEF),
    ],
)
def test_rule1_tagged_block_is_extracted(language: str, tag: str, code: str) -> None:
    text = f"Here is the solution:\n\n```{tag}\n{code}\n```\n\nIt adds two numbers."
    assert extract_code(text, language, "add") == ExtractedCode(code, "fenced")


def test_rule1_tag_with_info_string_and_indented_fence() -> None:
    # "```python title=x.py": only the first word is the language.
    text = f"  ```python title=add.py\n{PY_DEF}\n  ```\n"
    assert extract_code(text, "python", "add") == ExtractedCode(PY_DEF, "fenced")


def test_rule1_block_defining_entry_point_wins_over_longer_one() -> None:
    helper = "def helper(xs):\n    # a long helper, longer than the definition block\n" + (
        "    xs = list(xs)\n" * 5
    )
    text = f"```python\n{helper}```\n\n```python\n{PY_DEF}\n```\n"
    assert extract_code(text, "python", "add") == ExtractedCode(PY_DEF, "fenced")


def test_rule1_longest_block_without_entry_point() -> None:
    short = "x = 1"
    text = f"```python\n{short}\n```\n```python\n{PY_DEF}\n```\n```python\ny = 2\n```"
    assert extract_code(text, "python", None) == ExtractedCode(PY_DEF, "fenced")
    # An entry point that no block defines falls back to the longest too.
    assert extract_code(text, "python", "missing") == ExtractedCode(PY_DEF, "fenced")


@pytest.mark.parametrize(
    ("language", "usage", "definition"),
    [
        ("python", "print(add(1, 2))\nassert add(2, 2) == 4", PY_DEF),
        ("cpp", "int main() {\n    assert(add(1, 2) == 3);\n    return 0;\n}", CPP_DEF),
        ("rust", "fn main() {\n    assert_eq!(add(1, 2), 3);\n}", RUST_DEF),
    ],
)
def test_regression_usage_block_calling_entry_point_is_not_a_definition(
    language: str, usage: str, definition: str
) -> None:
    # Bug: the entry-point test was `\badd\s*[(<]`, so a usage example shown BEFORE the
    # solution (it calls add(...)) counted as "defines the entry point" and was extracted
    # instead of the block that defines it.
    text = f"Usage:\n```{language}\n{usage}\n```\nSolution:\n```{language}\n{definition}\n```\n"
    assert extract_code(text, language, "add") == ExtractedCode(definition, "fenced")


def test_rule1_tagged_beats_untagged() -> None:
    text = f"```\n{PY_DEF}\n# untagged and longer\n```\n```python\nx = 1\n```"
    assert extract_code(text, "python", None) == ExtractedCode("x = 1", "fenced")


def test_rule2_untagged_blocks_same_preference() -> None:
    text = f"```\nprint(add(1, 2))\n```\n```\n{PY_DEF}\n```\n"
    assert extract_code(text, "python", "add") == ExtractedCode(PY_DEF, "fenced_untagged")
    text = f"```\n{PY_DEF}\n```\n```\nx = 1\n```\n"
    assert extract_code(text, "python", None) == ExtractedCode(PY_DEF, "fenced_untagged")


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("python", f"```cpp\n{CPP_DEF}\n```\n"),
        ("cpp", f"```rust\n{RUST_DEF}\n```\n"),
        ("rust", f"```python\n{PY_DEF}\n```\n"),
        # An unterminated block in another language is ignored too.
        ("python", f"```rust\n{RUST_DEF}\n"),
    ],
)
def test_rule3_wrong_language_block_gives_empty(language: str, text: str) -> None:
    assert extract_code(text, language, "add") == ExtractedCode("", "empty")


def test_rule3_wrong_language_ignored_but_untagged_used() -> None:
    text = f"```cpp\n{CPP_DEF}\n```\n```\n{PY_DEF}\n```\n"
    assert extract_code(text, "python", "add") == ExtractedCode(PY_DEF, "fenced_untagged")


@pytest.mark.parametrize("tag", ["python", ""])
def test_rule4_unterminated_fence_takes_rest(tag: str) -> None:
    text = f"Sure:\n```{tag}\n{PY_DEF}\n    # truncated by max_new_toke"
    expected = f"{PY_DEF}\n    # truncated by max_new_toke"
    assert extract_code(text, "python", "add") == ExtractedCode(expected, "unterminated_fence")


def test_rule4_unterminated_after_wrong_language_block() -> None:
    text = f"```cpp\n{CPP_DEF}\n```\nIn Python:\n```python\n{PY_DEF}\n"
    assert extract_code(text, "python", "add") == ExtractedCode(PY_DEF, "unterminated_fence")


def test_rule5_no_fence_whole_text_stripped() -> None:
    assert extract_code(f"\n\n{PY_DEF}\n  \n", "python", "add") == ExtractedCode(PY_DEF, "no_fence")


@pytest.mark.parametrize("text", ["", "  \n\t\n"])
def test_empty_completion(text: str) -> None:
    assert extract_code(text, "python", "add") == ExtractedCode("", "empty")


def test_stray_backticks_without_a_fence_line_give_empty() -> None:
    # "```" appears but never opens a block (no newline after it): nothing to extract, and
    # the text is not treated as bare code either.
    assert extract_code("I would write ```add``` here", "python", "add") == ExtractedCode(
        "", "empty"
    )
