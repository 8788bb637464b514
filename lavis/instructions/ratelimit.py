"""Client-side pacing: requests- and tokens-per-minute buckets, backoff with jitter, Retry-After.

Staying under the provider's limits avoids most 429s; the backoff handles the rest. Buckets hold
one second's worth of budget, so requests go out evenly instead of in one burst per minute.
"""

from __future__ import annotations

import email.utils
import random
import re
import threading
import time
from collections.abc import Callable, Mapping


class TokenBucket:
    """``rate_per_minute`` units refilled continuously; ``take(n)`` blocks until they are there.

    A request larger than the bucket waits for a full bucket and then drives it negative, so
    oversized requests still run, followed by a proportionally longer pause.
    """

    def __init__(
        self,
        rate_per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError(f"rate must be > 0 per minute, got {rate_per_minute}")
        self.rate = rate_per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.clock, self.sleep = clock, sleep
        self.stamp = clock()
        self.lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, amount: float) -> float:
        """Remove ``amount``; returns the seconds spent waiting."""
        waited = 0.0
        while True:
            with self.lock:
                self._refill()
                need = min(amount, self.capacity)
                if self.level >= need:
                    self.level -= amount
                    return waited
                delay = (need - self.level) / self.rate
            self.sleep(delay)
            waited += delay

    def give_back(self, amount: float) -> None:
        """Return an over-reservation (e.g. estimated tokens the reply did not use)."""
        with self.lock:
            self._refill()
            self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    """Requests- and tokens-per-minute limits (either may be None: unlimited) plus a shared pause.

    ``hold(seconds)`` makes every worker wait, e.g. after a 429 with Retry-After or when the
    server's ``x-ratelimit-remaining-*`` headers reach zero, so one worker's signal slows all.
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.requests = TokenBucket(rpm, clock, sleep) if rpm else None
        self.tokens = TokenBucket(tpm, clock, sleep) if tpm else None
        self.clock, self.sleep = clock, sleep
        self.resume_at = clock()
        self.lock = threading.Lock()

    def hold(self, seconds: float) -> None:
        with self.lock:
            self.resume_at = max(self.resume_at, self.clock() + seconds)

    def acquire(self, tokens: int) -> float:
        """Wait for any hold, one request slot and ``tokens``; returns the seconds waited."""
        with self.lock:
            pause = max(0.0, self.resume_at - self.clock())
        if pause:
            self.sleep(pause)
        waited = pause + (self.requests.take(1) if self.requests else 0.0)
        return waited + (self.tokens.take(tokens) if self.tokens else 0.0)

    def settle(self, reserved: int, used: int) -> None:
        """Correct the token bucket once the real usage of a request is known."""
        if self.tokens and reserved > used:
            self.tokens.give_back(reserved - used)
        elif self.tokens and used > reserved:
            self.tokens.take(used - reserved)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """OpenAI's reset headers: ``"20ms"``, ``"1s"``, ``"6m0s"``, ``"1h2m3.5s"``."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(a + b for a, b in parts) != text.strip():
        return None
    return sum(float(value) * _UNIT_SECONDS[unit] for value, unit in parts)


def exhausted_for(headers: Mapping[str, str] | None) -> float | None:
    """Seconds until the window resets when ``x-ratelimit-remaining-{requests,tokens}`` hit 0."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    waits = []
    for kind in ("requests", "tokens"):
        remaining = lowered.get(f"x-ratelimit-remaining-{kind}")
        reset = lowered.get(f"x-ratelimit-reset-{kind}")
        if remaining is not None and reset is not None and remaining.strip() == "0":
            seconds = parse_duration(reset)
            if seconds is not None:
                waits.append(seconds)
    return max(waits) if waits else None


def retry_after_seconds(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, or ``Retry-After`` (seconds or HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000.0)
    except ValueError:
        pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, parsed.timestamp() - (time.time() if now is None else now))


def backoff_delay(
    attempt: int, base: float, cap: float, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter (``uniform(0, min(cap, base * 2**attempt))``);
    a server's Retry-After is a floor, never shortened by jitter."""
    rng = rng or random
    delay = rng.uniform(0.0, min(cap, base * (2**attempt)))
    return max(delay, retry_after) if retry_after is not None else delay
