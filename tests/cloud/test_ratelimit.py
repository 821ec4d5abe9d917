"""The token buckets: evenly spaced calls at the configured rate, adaptive on throttling."""

from __future__ import annotations

import threading
import time

from cvmkeeper.cloud.ratelimit import DEFAULT_RATES, RateLimitConfig, RateLimiter


class FakeTime:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(fake: FakeTime, **config: object) -> RateLimiter:
    return RateLimiter(
        RateLimitConfig(**config),
        clock=fake.clock,  # type: ignore[arg-type]
        sleep=fake.sleep,
    )


def test_documented_defaults() -> None:
    config = RateLimitConfig()
    for action in ("CreateImage", "DeleteImages", "SyncImages", "StopInstances", "StartInstances"):
        assert config.rate_for(action) == 10
    assert config.rate_for("DescribeImages") == config.rate_for("DescribeInstances") == 40
    assert config.rate_for("DescribeImageQuota") == 10  # its own page's limit (issue #18)
    assert config.rate_for("DescribeInstancesStatus") == 20
    assert set(DEFAULT_RATES) <= set(config.rates)


def test_calls_are_spaced_at_the_rate() -> None:
    fake = FakeTime()
    bucket = limiter(fake, headroom=1.0)
    start = fake.now
    for _ in range(21):
        bucket.acquire("ap-guangzhou", "CreateImage")
    # the first call is free (burst 1), the next 20 take 1/10 s each
    assert abs((fake.now - start) - 2.0) < 1e-9
    assert all(abs(s - 0.1) < 1e-9 for s in fake.slept)


def test_headroom_keeps_below_the_limit() -> None:
    fake = FakeTime()
    bucket = limiter(fake)  # default headroom 0.95
    for _ in range(101):
        bucket.acquire("r", "DescribeImages")
    achieved = 100 / (fake.now - 1000.0)
    assert 0.9 * 40 <= achieved <= 40


def test_buckets_are_per_region_and_action() -> None:
    fake = FakeTime()
    bucket = limiter(fake)
    for region in ("a", "b"):
        for action in ("CreateImage", "DeleteImages"):
            assert bucket.acquire(region, action) == 0.0
    assert fake.slept == []


def test_idle_time_does_not_build_up_more_than_the_burst() -> None:
    fake = FakeTime()
    bucket = limiter(fake, headroom=1.0, burst=2.0)
    fake.now += 3600
    waits = [bucket.acquire("r", "CreateImage") for _ in range(3)]
    assert waits[:2] == [0.0, 0.0]
    assert abs(waits[2] - 0.1) < 1e-9


def test_throttling_halves_the_rate_and_successes_recover_it() -> None:
    fake = FakeTime()
    bucket = limiter(fake, headroom=1.0, recovery_step=0.25)
    assert bucket.current_rate("r", "CreateImage") == 10
    bucket.throttled("r", "CreateImage")
    assert bucket.current_rate("r", "CreateImage") == 5
    bucket.throttled("r", "CreateImage")  # same event: the calls in flight answer together
    assert bucket.current_rate("r", "CreateImage") == 5
    fake.now += 1.0
    bucket.throttled("r", "CreateImage")
    assert bucket.current_rate("r", "CreateImage") == 2.5
    assert bucket.current_rate("r", "DeleteImages") == 10  # other buckets unaffected
    for _ in range(2):
        bucket.succeeded("r", "CreateImage")
    assert bucket.current_rate("r", "CreateImage") == 7.5
    for _ in range(10):
        bucket.succeeded("r", "CreateImage")
    assert bucket.current_rate("r", "CreateImage") == 10  # never above the configured rate


def test_slowdown_has_a_floor() -> None:
    fake = FakeTime()
    bucket = limiter(fake, headroom=1.0, min_factor=0.25)
    for _ in range(20):
        bucket.throttled("r", "CreateImage")
        fake.now += 2
    assert bucket.current_rate("r", "CreateImage") == 2.5


def test_shared_by_threads_with_real_time() -> None:
    """Eight threads, one bucket at 50/s: together they get the rate, not eight times it."""
    bucket = RateLimiter(RateLimitConfig(rates={"X": 50.0}, headroom=1.0))
    calls: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            bucket.acquire("r", "X")
            with lock:
                calls.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(calls) == 40
    # 40 calls at 50/s need at least 39/50 s after the first
    assert max(calls) - start >= 39 / 50 - 0.01
