"""Extract the program from a model's completion.

The rule, in order (the first that applies wins):
1. fenced blocks tagged with the task's language (```python, ```py, ```cpp, ```rust, ...):
   the first one that defines the task's entry point (a definition, not a call), else the
   longest;
2. untagged fenced blocks (```), by the same preference;
3. blocks tagged with another language are ignored (an answer in the wrong language fails);
4. an opening fence that never closes (the completion was truncated inside the block): the
   text after the fence;
5. no fence at all: the whole completion, stripped (some models answer with bare code).
The method used is recorded so dataset rows show how the code was obtained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LANGUAGE_TAGS = {
    "python": {"python", "py", "python3"},
    "cpp": {"cpp", "c++", "cxx", "cc", "c"},
    "rust": {"rust", "rs"},
}

_FENCE = re.compile(r"^[ \t]*```[ \t]*([^\n`]*)\n(.*?)^[ \t]*```[ \t]*$", re.DOTALL | re.MULTILINE)
_OPEN_FENCE = re.compile(r"^[ \t]*```[ \t]*([^\n`]*)\n", re.MULTILINE)


@dataclass(frozen=True)
class ExtractedCode:
    code: str
    method: str  # "fenced" | "fenced_untagged" | "unterminated_fence" | "no_fence" | "empty"


def _definition_pattern(language: str, entry_point: str) -> re.Pattern[str]:
    """A definition of `entry_point`, not a mere call: a usage example such as
    `print(add(1, 2))` must not win over the block that defines `add`."""
    name = re.escape(entry_point)
    if language == "python":
        return re.compile(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{name}\s*\(", re.MULTILINE)
    if language == "rust":
        return re.compile(rf"\bfn\s+{name}\s*[(<]")
    # C++: a return type (or `>`, `*`, `&` of one) before the name, and a body after the
    # parameter list, e.g. `std::vector<int> add(int a, int b) const {`.
    return re.compile(
        rf"[\w>*&]\s+[*&]*{name}\s*(?:<[^;{{}}()]*>\s*)?\([^;{{}}]*\)"
        rf"[\w\s:&<>,\-]*\{{"
    )


def _pick(blocks: list[str], language: str, entry_point: str | None) -> str:
    if entry_point:
        pattern = _definition_pattern(language, entry_point)
        for block in blocks:
            if pattern.search(block):
                return block
    return max(blocks, key=len)


def extract_code(text: str, language: str, entry_point: str | None = None) -> ExtractedCode:
    """Apply the module's rule to one completion."""
    tags = LANGUAGE_TAGS[language]
    tagged: list[str] = []
    untagged: list[str] = []
    last_end = 0
    for match in _FENCE.finditer(text):
        tag = match.group(1).strip().lower().split()[0] if match.group(1).strip() else ""
        body = match.group(2)
        last_end = match.end()
        if tag in tags:
            tagged.append(body)
        elif not tag:
            untagged.append(body)
    if tagged:
        return ExtractedCode(_pick(tagged, language, entry_point).strip("\n"), "fenced")
    if untagged:
        return ExtractedCode(_pick(untagged, language, entry_point).strip("\n"), "fenced_untagged")
    opening = _OPEN_FENCE.search(text, last_end)
    if opening is not None:
        tag = opening.group(1).strip().lower()
        if not tag or tag.split()[0] in tags:
            return ExtractedCode(text[opening.end() :].strip("\n"), "unterminated_fence")
    if last_end == 0 and "```" not in text:
        stripped = text.strip()
        return ExtractedCode(stripped, "no_fence" if stripped else "empty")
    return ExtractedCode("", "empty")
