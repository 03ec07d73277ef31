"""Per-caller token buckets: each caller may send `burst` requests at once, then `rate` per second."""

from __future__ import annotations

import time

# Callers are API key names (few) or, without keys, client addresses (unbounded): forget full buckets past this.
_MAX_TRACKED = 10_000


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, at)

    def take(self, caller: str, now: float | None = None) -> float:
        """Spend one token; returns 0 when allowed, else the seconds until a token is free."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(caller, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[caller] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self._buckets) >= _MAX_TRACKED and caller not in self._buckets:
            self._forget_full(now)
        self._buckets[caller] = (tokens - 1, now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        full = [c for c, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
        for caller in full:
            del self._buckets[caller]
