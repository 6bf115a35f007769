"""Waiting on a condition, not a window: the tests run on busy shared machines."""

from __future__ import annotations

import time


def wait_for(condition, timeout: float = 30, every: float = 0.1):
    """`condition()`'s first truthy value, polled every `every` s; its last value (falsy)
    once `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)
