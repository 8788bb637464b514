"""Rate limiting, backoff, Retry-After parsing, prices and token estimates (no network)."""

from __future__ import annotations

import email.utils
import random

import pytest

from lavis.common.errors import ConfigError
from lavis.instructions.pricing import (
    Price,
    UsageEstimator,
    estimate_prompt_tokens,
    load_prices,
    resolve_price,
)
from lavis.instructions.ratelimit import (
    RateLimiter,
    TokenBucket,
    backoff_delay,
    exhausted_for,
    parse_duration,
    retry_after_seconds,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_token_bucket_paces_requests_per_minute():
    clock = FakeClock()
    bucket = TokenBucket(120, clock=clock, sleep=clock.sleep)  # 2 per second, bucket of 2
    for _ in range(12):
        bucket.take(1)
    assert clock.now == pytest.approx(5.0)  # 2 free, then 10 more at 0.5 s each


def test_tokens_per_minute_and_settling_unused_reservations():
    clock = FakeClock()
    limiter = RateLimiter(tpm=6000, clock=clock, sleep=clock.sleep)  # 100 tokens/s
    limiter.acquire(100)
    limiter.acquire(100)  # waits 1 s for the refill
    assert clock.now == pytest.approx(1.0)
    limiter.settle(reserved=100, used=20)  # 80 unused tokens come back
    limiter.acquire(80)
    assert clock.now == pytest.approx(1.0)
    limiter.acquire(250)  # larger than the bucket: waits for a full bucket, then goes negative
    limiter.acquire(10)
    assert clock.now == pytest.approx(1.0 + 1.0 + 1.6)


def test_hold_pauses_every_caller():
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    limiter.hold(2.5)
    assert limiter.acquire(10) == pytest.approx(2.5)
    assert limiter.acquire(10) == 0.0


def test_retry_after_forms():
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "0.25"}) == 0.25
    assert retry_after_seconds({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    date = email.utils.formatdate(1000.0 + 30, usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, now=1000.0) == pytest.approx(30.0)
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_backoff_is_exponential_capped_jittered_and_respects_the_server():
    rng = random.Random(0)
    delays = [[backoff_delay(attempt, 1.0, 8.0, rng=rng) for _ in range(200)] for attempt in range(6)]
    for attempt, values in enumerate(delays):
        assert 0 <= min(values) and max(values) <= min(8.0, 2**attempt)
        assert max(values) > 0.8 * min(8.0, 2**attempt)  # jitter spans the range
    assert len({round(v, 6) for v in delays[3]}) > 150
    assert backoff_delay(0, 0.01, 1.0, retry_after=5.0, rng=rng) == 5.0  # never shorter than asked


def test_ratelimit_reset_headers():
    assert parse_duration("6m0s") == 360.0 and parse_duration("20ms") == 0.02 and parse_duration("1h2m3.5s") == 3723.5
    assert parse_duration("abc") is None
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s", "x-ratelimit-remaining-tokens": "900", "x-ratelimit-reset-tokens": "9s"}
    assert exhausted_for(headers) == 1.5
    assert exhausted_for({"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "1s"}) is None


def test_price_table_lookup_and_overrides():
    table = load_prices()
    assert table.lookup("gpt-3.5-turbo") == Price(0.5, 1.5)
    assert table.lookup("gpt-4o-mini-2024-07-18") == table.lookup("gpt-4o-mini")  # longest prefix
    assert table.lookup("llama-3-8b") is None
    assert resolve_price("gpt-3.5-turbo", table, price_out=2.0) == Price(0.5, 2.0)
    assert resolve_price("llama-3-8b", table, 0.0, 0.0) == Price(0.0, 0.0)
    with pytest.raises(ConfigError, match="pass both --price-in and --price-out"):
        resolve_price("llama-3-8b", table, price_in=1.0)
    with pytest.raises(ConfigError, match="prices must be >= 0"):
        resolve_price("gpt-3.5-turbo", table, price_in=-1.0)
    assert Price(0.5, 1.5).cost(1_000_000, 2_000_000) == pytest.approx(3.5)


def test_usage_estimator_calibrates_on_reported_usage():
    messages = lambda caption: [{"role": "user", "content": caption}]  # noqa: E731
    estimator = UsageEstimator(messages, example_reply="x" * 400)
    assert estimator.completion == 100
    caption = "y" * 400
    base = estimate_prompt_tokens(messages(caption))
    assert estimator.prompt_tokens(caption) == base
    done = [
        {"caption": caption, "usage": {"prompt_tokens": 2 * 2 * base, "completion_tokens": 2 * 150, "replies": 2}},
        {"caption": caption, "usage": {"prompt_tokens": 1, "completion_tokens": 1, "replies": 1, "estimated": True}},
    ]
    estimator.calibrate(done)
    assert estimator.calibrated_on == 1
    assert estimator.prompt_tokens(caption) == 2 * base and estimator.completion == 150
    assert estimator.cost(caption, Price(1.0, 1.0)) == pytest.approx((2 * base + 150) / 1e6)
