"""The teachers' only door to the network: one JSON POST, and the retry policy around it.

Plain `urllib` rather than the `openai`/`anthropic` SDKs: both endpoints are one JSON POST, and
what the SDKs add (retries, timeouts) is exactly what rfai must own, count and test (backoff,
Retry-After, the budget, never leaking the key); with their retries off they would only add a
dependency and their own exception types. `urllib` also works with any OpenAI-compatible
server (mlx_lm.server, Ollama, vLLM) without an extra install.

The timeout applies to connecting and to each read, not to the whole response: a server that
trickles bytes slower than that is not cut off.
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# 408 timeout, 409 conflict (OpenAI: retry), 429 rate limit, 5xx incl. Anthropic's 529.
RETRYABLE_STATUSES = frozenset({408, 409, 429})
# The key, the URL or the model is wrong: every later request would fail the same way.
FATAL_STATUSES = frozenset({401, 403, 404})


class RequestFailed(Exception):
    """One attempt failed. `retryable`: worth another attempt; `retry_after`: the server's
    requested wait in seconds, if it gave one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after

    @property
    def fatal(self) -> bool:
        return self.status in FATAL_STATUSES


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by ***; error bodies may echo what was sent."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or an
    HTTP date), or None when the server gave neither or gave nonsense."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def post_json(url: str, headers: dict[str, str], body: dict[str, Any], timeout: float) -> Any:
    """POST `body` as JSON; the decoded JSON answer, or `RequestFailed`.

    Messages name the URL and status, and quote at most 300 characters of an error body;
    they never include the request headers (where the key is).
    """
    return _request_json(url, headers, body, timeout)


def get_json(url: str, headers: dict[str, str], timeout: float) -> Any:
    """GET `url`; the decoded JSON answer, or `RequestFailed` (as `post_json`)."""
    return _request_json(url, headers, None, timeout)


def _request_json(
    url: str, headers: dict[str, str], body: dict[str, Any] | None, timeout: float
) -> Any:
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json", **headers},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode("utf-8", "replace")
        status = exc.code
        raise RequestFailed(
            f"HTTP {status} from {url}: {detail.strip() or exc.reason}",
            status=status,
            retryable=status in RETRYABLE_STATUSES or status >= 500,
            retry_after=parse_retry_after(exc.headers),
        ) from None
    except TimeoutError:
        raise RequestFailed(f"no answer from {url} within {timeout:g} s", retryable=True) from None
    except (urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        retryable = not isinstance(reason, str)  # str reasons are e.g. unknown URL schemes
        if isinstance(reason, TimeoutError):
            message = f"no answer from {url} within {timeout:g} s"
        else:
            message = f"cannot reach {url}: {reason}"
        raise RequestFailed(message, retryable=retryable) from None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        excerpt = raw[:120].decode("utf-8", "replace")
        raise RequestFailed(
            f"malformed answer from {url}: not JSON: {excerpt!r}", status=status
        ) from None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: attempt k (0-based) waits backoff * 2**k, at most max_backoff,
    unless the server asked for a wait (Retry-After), which is honoured as given."""

    max_retries: int
    backoff_seconds: float
    max_backoff_seconds: float

    def delay(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return min(self.backoff_seconds * 2**retry, self.max_backoff_seconds)
