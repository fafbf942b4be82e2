"""macOS only: the ``sandbox-exec`` profile, and choosing the strictest one this macOS accepts.

The profile denies network access (unix sockets included), file writes outside the run's
directory (and ``/dev/null``, ``/dev/zero``) and signals to processes outside the sandbox.
rfai's tests run on Linux, where ``sandbox-exec`` does not exist, and a profile it refuses
would fail every run, so ``accepted_profile`` tries it once at start-up on ``/usr/bin/true``
(``tests/test_sandbox.py`` does so against a fake ``sandbox-exec``): where the signal
rules are refused they are dropped with a warning; where the whole profile is refused (or
there is no ``sandbox-exec``) it answers None and runs fall back to rlimits, also with a
warning (``scorers/isolation.py`` builds the ``Isolation`` from the answer).

Not covered by the profile: reading files (anything the user may read), ``RLIMIT_AS`` (not
enforced by the macOS kernel), ``setsid`` escapees, and the run's life after the trainer's
death (no parent-death mechanism; an in-flight program lives until its CPU limit).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger("rfai.scorers")

PROFILE = """(version 1)
(allow default)
(deny network*)
(deny file-write*)
(allow file-write* (subpath "{workdir}") (literal "/dev/null") (literal "/dev/zero"))
"""
# Checked once at start-up (``accepted_profile``): without these lines if they are refused.
SIGNALS = """(deny signal)
(allow signal (target same-sandbox))
"""
STRICTEST = PROFILE + SIGNALS


def accepted_profile(base: Path) -> str | None:
    """The strictest profile ``sandbox-exec`` accepts here (with ``{workdir}`` to fill in).

    None, with a warning, where there is no ``sandbox-exec`` or it refuses every profile.
    """
    if shutil.which("sandbox-exec") is None:
        log.warning("sandbox-exec not found: sandboxed runs get rlimits and process groups only")
        return None
    refused = []
    for profile in (STRICTEST, PROFILE):
        argv = ["sandbox-exec", "-p", profile.format(workdir=base.resolve()), "/usr/bin/true"]
        probe = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            if refused:
                log.warning(
                    "sandbox-exec refused the profile's signal rules (%s): sandboxed programs "
                    "can signal processes outside the sandbox, the trainer included",
                    refused[0],
                )
            return profile
        refused.append(f"exit {probe.returncode}: {probe.stderr.strip()[:200]}")
    log.warning(
        "sandbox FALLBACK: sandbox-exec refused every profile (%s), so sandboxed programs get "
        "rlimits and a process group only: NO network or filesystem isolation",
        "; ".join(refused),
    )
    return None
