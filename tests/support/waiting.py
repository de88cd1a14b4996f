"""One way for a test to wait: poll a condition until it holds, and fail the test naming what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str = "", *, timeout: float = 60.0, interval: float = 0.05) -> T:
    """Call `condition` every `interval` seconds until it returns something truthy, and return that.

    The tests wait on real processes (Azurite, the emulator, a local host), whose work lands a little after the
    call that caused it; a condition that holds is seen within one interval, so the timeouts can be generous
    enough for a loaded machine without slowing a passing test. After `timeout` seconds the test fails with an
    AssertionError naming `what` (or the condition's name).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up waiting for {what or getattr(condition, '__name__', condition)} after {timeout:.0f} s")
        time.sleep(interval)
