"""Fault injection for tests: kill the whole run at a chosen point (tests/test_crash_kill.py).

A TEST HOOK, NOT A SETTING. ``point(site)`` marks a boundary of the apply where a crash
must not lose anything: between two changes of a target, after a target's rows are
committed, after a file is durably written, after a target's files are finished, after a
delivered file's remote rename (before it is recorded). When the environment variable
``BAS_TEST_KILL_AT`` is ``<site>#<n>``, the n-th time this process passes ``site`` it
sends SIGKILL to its process group: the run and its worker processes die at once, as
under ``kill -9``. Only tests set it, and they start the run as its own session (its own
process group). Unset (always, in production) it does nothing at all.

``BAS_TEST_SLOW_AT`` is ``<site>@<seconds>``, or several joined by commas: every pass of such
a site sleeps that long first.
Tests that stop a run part-way use it to hold the run at a known place (still planning, or
between two changes of a target) however fast the machine plans or applies.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

ENV = "BAS_TEST_KILL_AT"
SLOW_ENV = "BAS_TEST_SLOW_AT"
_passed: Counter[str] = Counter()  # times this process passed each site (a counter, not a switch)


def point(site: str) -> None:
    """A place a run may be killed or held; see the module docstring."""
    held = os.environ.get(SLOW_ENV)  # passed once per change: nothing more is done when unset
    if held:
        for slow in held.split(","):
            at, _, seconds = slow.rpartition("@")
            if site == at:
                time.sleep(float(seconds))
    spec = os.environ.get(ENV)
    if not spec:
        return
    want, _, n = spec.rpartition("#")
    if site != want:
        return
    _passed[site] += 1
    if _passed[site] == int(n):
        os.killpg(os.getpgrp(), signal.SIGKILL)
