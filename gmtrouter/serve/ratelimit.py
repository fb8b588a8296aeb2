"""Per-key rate limits: a token bucket for each API key, refilled continuously.

A bucket holds up to `per_minute` tokens and gains `per_minute / 60` a second, so a key may burst to its
minute's allowance and then goes on at the steady rate. Buckets live in this process: with several replicas each
one limits on its own (a key gets at most replicas x the limit).
"""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """`take(key)` spends one token of `key`'s bucket, or says how many seconds until one is there."""

    def __init__(self, per_minute: int, max_keys: int = 100_000) -> None:
        self.per_minute, self.max_keys = per_minute, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> int:
        """0 when the event may go ahead (its token is spent), else the whole seconds to wait (Retry-After)."""
        if self.per_minute <= 0:
            return 0
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * rate)
            if tokens >= 1.0:
                if len(self._buckets) >= self.max_keys and key not in self._buckets:
                    self._buckets.clear()  # bounded memory; a full bucket for everyone is the safe side
                self._buckets[key] = (tokens - 1.0, now)
                return 0
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / rate))
