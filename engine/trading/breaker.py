"""A circuit breaker for the model service.

``closed``: calls go through; ``failures`` failures in a row open it. ``open``: calls are
skipped (the engine opens no new risk) until ``cooldown_s`` has passed; then one call is let
through (``half_open``): success closes the breaker, failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

__all__ = ["CircuitBreaker"]

State = Literal["closed", "open", "half_open"]
STATE_CODES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    """See the module docstring."""

    def __init__(self, failures: int = 3, cooldown_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or cooldown_s <= 0:
            raise ValueError("failures must be >= 1 and cooldown_s > 0")
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state: State = "closed"
        self.in_a_row = 0
        self.opened_at = 0.0
        self.opens = 0
        self.last_error = ""

    def allow(self) -> bool:
        """True if a call may be made now."""
        if self.state == "open":
            if self.clock() - self.opened_at < self.cooldown_s:
                return False
            self.state = "half_open"
        return True

    def success(self) -> State | None:
        """Record a successful call; return the new state if it changed."""
        self.in_a_row = 0
        if self.state != "closed":
            self.state = "closed"
            return "closed"
        return None

    def failure(self, error: str) -> State | None:
        """Record a failed call; return the new state if it changed."""
        self.in_a_row += 1
        self.last_error = error
        if self.state == "half_open" or (self.state == "closed" and self.in_a_row >= self.failures):
            self.state = "open"
            self.opened_at = self.clock()
            self.opens += 1
            return "open"
        if self.state == "open":
            self.opened_at = self.clock()
        return None
