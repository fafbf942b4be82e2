"""Make a program's error message fit to publish: short, unquoted, with no token-shaped text.

A dataset row's ``error`` is the one field that a scored program writes (through its exception
messages, its stderr, or the compiler's diagnostics about files it ``#include``-s or
``include!``-s). A program can put any file it can read there, so the text is scrubbed before
it leaves the scorer (``scrub_message`` / ``scrub_error``) and checked again before an export
(``find_token``, used by ``rfai/dataset_schema.py``). Scrubbing, in order:

1. PEM blocks (``-----BEGIN ...-----`` up to its END, or to the end of the text) are replaced;
2. whitespace (newlines included) collapses to single spaces, so only one "line" remains;
3. compiler locations (``/any/path:3:5:``) are dropped: they name files a program chose;
4. quoted spans (‘…’, “…”, '…', "…", `…`) become ``…``; an unmatched opening quote cuts the
   rest. Values, source snippets and file contents are quoted in almost every message
   (Python reprs, g++ and rustc diagnostics), so this removes most of them;
5. token-shaped strings become ``[redacted]`` (see ``_detect``): Hugging Face, OpenAI /
   Anthropic, GitHub, Slack, GitLab, Google and AWS key shapes, JWTs, ``password=...``-style
   assignments, runs of 16+ hex digits, and runs of 16+ key characters ``[A-Za-z0-9+/=_-]``
   that mix lower case, upper case and digits or have high entropy;
6. the result is cut to a length limit (100 characters for a message) with ``…``.

What this does not cover: a secret shaped like ordinary words (a short password, a lowercase
passphrase, a user name) can still appear, up to the length limit, when a program deliberately
writes it into an unquoted exception message. Scrubbing is idempotent: a scrubbed text scrubs
to itself.
"""

from __future__ import annotations

import math
import re
from collections import Counter

MAX_MESSAGE_CHARS = 100
# A whole summary: a short prefix of our own ("compile_error: ", "test 12: ") + a message.
MAX_ERROR_CHARS = 140
MAX_INPUT_CHARS = 8000  # more is cut before scrubbing (bounds the regex work)
REDACTED = "[redacted]"
ELIDED = "…"

_PEM = re.compile(r"-----BEGIN[^\n]{0,80}?-----.*?(?:-----END[^\n]{0,80}?-----|\Z)", re.S)
_PEM_EDGE = re.compile(r"-----\s*(?:BEGIN|END)\b[^\n]{0,80}")
_LOCATION = re.compile(r"(?:(?<=\s)|^)\S*:\d+(?::\d+)?:(?=\s|$)")
# (kind, pattern): what find_token reports, and what scrub replaces.
_KNOWN = (
    ("Hugging Face token", r"\bhf_[A-Za-z0-9]{8,}"),
    ("OpenAI/Anthropic key", r"\bsk-[A-Za-z0-9_-]{8,}"),
    ("GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{12,}|github_pat_[A-Za-z0-9_]{12,})"),
    ("Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{8,}"),
    ("GitLab token", r"\bglpat-[A-Za-z0-9_-]{12,}"),
    ("Google API key", r"\bAIza[0-9A-Za-z_-]{20,}"),
    ("AWS access key id", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{12,}"),
    ("JSON web token", r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?"),
    (
        "credential assignment",
        r"(?i)\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|auth"
        r"(?:orization)?)\s*[:=]\s*(?P<v>(?!\[redacted\])[^\s,;]+)",
    ),
    ("bearer token", r"\b[Bb]earer\s+(?P<v>[A-Za-z0-9._~+/=-]{8,})"),
)
_KNOWN_RE = tuple((kind, re.compile(pattern)) for kind, pattern in _KNOWN)
_RUN = re.compile(r"[A-Za-z0-9+/=_-]{16,}")
_HEX = re.compile(r"[0-9a-fA-F]{16,}")
# An opening quote: not preceded by a word character (so the apostrophe in "can't" is not).
_OPENERS = {"‘": "’", "“": "”", "«": "»", "`": "`", '"': '"', "'": "'"}
_QUOTE_OPEN = re.compile(r"(?<![\w])['\"`]|[‘“«]")


def _entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def _run_kind(run: str) -> str | None:
    """Why a run of key characters looks like a token, or None when it looks like text."""
    if _HEX.search(run):
        return "run of 16+ hex digits"
    lower = sum(c.islower() for c in run)
    upper = sum(c.isupper() for c in run)
    digits = sum(c.isdigit() for c in run)
    if lower and upper and digits:
        return "mixed-case key characters with digits"
    if min(lower, upper) >= 0.25 * len(run):
        return "key characters in random-looking mixed case"
    if digits >= max(3, 0.15 * len(run)) and lower + upper >= 3:
        return "key characters with many digits"
    if _entropy(run) >= (4.3 if len(run) >= 32 else 4.0):
        return "high-entropy string"
    return None


def _detect(text: str) -> list[tuple[int, int, str]]:
    """Spans (start, end, kind) of token-shaped strings in ``text``, in order, not overlapping."""
    spans: list[tuple[int, int, str]] = []
    for kind, pattern in _KNOWN_RE:
        group = "v" if "v" in pattern.groupindex else 0  # an assignment keeps its key name
        spans += [(*m.span(group), kind) for m in pattern.finditer(text)]
    spans += [(m.start(), m.end(), "PEM block") for m in _PEM.finditer(text)]
    spans += [(m.start(), m.end(), "PEM block") for m in _PEM_EDGE.finditer(text)]
    for m in _RUN.finditer(text):
        kind = _run_kind(m.group())
        if kind is not None:
            spans.append((m.start(), m.end(), kind))
    spans.sort()
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in spans:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, kind))
    return merged


def find_token(text: str) -> str | None:
    """A description of the first token-shaped string in ``text`` (never the string itself)."""
    spans = _detect(text)
    if not spans:
        return None
    start, end, kind = spans[0]
    return f"{kind} ({end - start} characters at offset {start})"


def _redact(text: str) -> str:
    out, last = [], 0
    for start, end, _ in _detect(text):
        out += [text[last:start], REDACTED]
        last = end
    return "".join([*out, text[last:]])


def _elide_quotes(text: str) -> str:
    out, i = [], 0
    while True:
        m = _QUOTE_OPEN.search(text, i)
        if m is None:
            return "".join([*out, text[i:]])
        close = _OPENERS[m.group()]
        # A closing ASCII quote must not be followed by a word character ("'x'y" is no span).
        tail = re.compile(re.escape(close) + (r"(?!\w)" if close in "'\"`" else ""))
        end = tail.search(text, m.end())
        out.append(text[i : m.start()] + ELIDED)
        if end is None:
            return "".join(out)  # an unmatched quote: everything after it may be content
        i = end.end()


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELIDED


def scrub_message(text: str | None, limit: int = MAX_MESSAGE_CHARS) -> str | None:
    """``text`` made fit to publish (steps 1-6 of the module docstring); None stays None."""
    if text is None:
        return None
    text = _PEM.sub(REDACTED, text[:MAX_INPUT_CHARS])
    text = " ".join(text.split())
    text = " ".join(_LOCATION.sub("", text).split())
    text = _redact(_elide_quotes(text))
    return _cut(text, limit)


def scrub_error(text: str | None) -> str | None:
    """A whole error summary (our prefix + a message) scrubbed; what a dataset row holds."""
    return scrub_message(text, MAX_ERROR_CHARS)
