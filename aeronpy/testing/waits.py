"""Bounded waiting for tests and tools: poll a condition until it holds or time runs out."""
from __future__ import annotations

import time
from typing import Callable


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.01) -> bool:
    """Call ``predicate`` every ``interval_s`` until it returns true or ``timeout_s`` passes;
    returns its last answer (checked once more at the deadline), so a caller can assert it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
