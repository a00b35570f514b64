"""Retry policy: UNAVAILABLE is retried with jittered exponential backoff, like the Go
client (attempt k waits between 0.5x and 1.5x of base * 2**(k-1))."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Backoff:
    """Jittered exponential backoff. ``rng`` and ``sleep`` are injectable for tests."""

    retries: int = 4
    base: float = 0.05
    maximum: float = 5.0
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = field(default=lambda s: None)

    def delay(self, attempt: int, hint: Optional[float] = None) -> float:
        """The wait after failed attempt number ``attempt`` (1-based): jittered
        exponential, at least ``hint`` (a server's RetryInfo), at most ``maximum``."""
        d = min(self.base * 2.0 ** (attempt - 1), self.maximum)
        d = d / 2 + self.rng.random() * d
        if hint is not None:
            d = max(d, hint)
        return min(d, self.maximum)
