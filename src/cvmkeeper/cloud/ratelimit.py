"""Client-side rate limiting: stay under Tencent's per-action limits instead of bouncing off them.

Tencent limits each API action per region and second (CreateImage 10/s, DescribeImages 40/s,
...). A large run that fires calls as fast as it can gets ``RequestLimitExceeded`` answers,
each costing a backoff. :class:`RateLimiter` keeps one token bucket per (region, action),
shared by all threads, so calls are spaced at the documented rate in the first place.

It is adaptive: when throttling is answered anyway (another process shares the account, the
limit is lower than documented), :meth:`RateLimiter.throttled` halves that bucket's rate —
once per ``cooldown_seconds``, because the calls in flight when the limit was hit are all
answered with throttling together and are one event, not many; every success afterwards
recovers a step, until the configured rate is reached again.

Defaults (calls per second, per region) — :data:`DEFAULT_RATES`:

- CreateImage, DeleteImages, SyncImages, StopInstances, StartInstances, DescribeImageQuota: 10
- DescribeImages, DescribeInstances: 40
- any other action: 20 (:data:`DEFAULT_OTHER_RATE`)

The bucket holds at most ``burst`` tokens (default 1), so calls are evenly spaced rather than
sent in clumps that a server counting per-second windows could reject.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

DEFAULT_RATES: Mapping[str, float] = {
    "CreateImage": 10.0,
    "DeleteImages": 10.0,
    "SyncImages": 10.0,
    "StopInstances": 10.0,
    "StartInstances": 10.0,
    "DescribeImages": 40.0,
    "DescribeInstances": 40.0,
    # DescribeImageQuota's API page says 10/s, not the 20/s of other actions (issue #18)
    "DescribeImageQuota": 10.0,
}
DEFAULT_OTHER_RATE = 20.0


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """How fast each action may be called, per region.

    ``headroom`` scales every rate (0.95 keeps 5% below the limit, which absorbs clock
    differences between client and server). ``min_factor`` is the slowest an adaptive bucket
    gets (as a fraction of its rate); ``recovery_step`` is what each success gives back;
    ``cooldown_seconds`` is the least time between two slow-downs of one bucket.
    """

    rates: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    other_rate: float = DEFAULT_OTHER_RATE
    headroom: float = 0.93
    burst: float = 1.0
    min_factor: float = 1 / 16
    recovery_step: float = 0.05
    cooldown_seconds: float = 1.0

    def rate_for(self, action: str) -> float:
        """The configured calls per second for ``action`` (before headroom and adaptation)."""
        return float(self.rates.get(action, self.other_rate))


class _Bucket:
    """One token bucket. Not locked itself: :class:`RateLimiter` holds the lock."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.base_rate = rate
        self.factor = 1.0
        self.burst = burst
        self.tokens = burst
        self.updated = now
        self.slowed_at: float | None = None

    @property
    def rate(self) -> float:
        return self.base_rate * self.factor

    def reserve(self, now: float) -> float:
        """Take one token (possibly borrowed from the future); return how long to wait."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class RateLimiter:
    """Token buckets per (region, action), safe to share between threads.

    ``clock`` (monotonic seconds) and ``sleep`` are injectable so tests need not wait.
    """

    def __init__(
        self,
        config: RateLimitConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config or RateLimitConfig()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def _bucket(self, region: str, action: str) -> _Bucket:
        key = (region, action)
        bucket = self._buckets.get(key)
        if bucket is None:
            rate = self.config.rate_for(action) * self.config.headroom
            bucket = _Bucket(rate, self.config.burst, self._clock())
            self._buckets[key] = bucket
        return bucket

    def acquire(self, region: str, action: str) -> float:
        """Block until a call of ``action`` in ``region`` may be sent; return the time waited."""
        with self._lock:
            wait = self._bucket(region, action).reserve(self._clock())
        if wait > 0:
            self._sleep(wait)
        return wait

    def throttled(self, region: str, action: str) -> None:
        """The server answered ``RequestLimitExceeded``: halve this bucket's rate (at most
        once per ``cooldown_seconds``)."""
        with self._lock:
            now = self._clock()
            bucket = self._bucket(region, action)
            recent = bucket.slowed_at is not None and (
                now - bucket.slowed_at < self.config.cooldown_seconds
            )
            if recent:
                return
            bucket.slowed_at = now
            bucket.factor = max(self.config.min_factor, bucket.factor / 2)

    def succeeded(self, region: str, action: str) -> None:
        """A call went through: recover one step towards the configured rate."""
        with self._lock:
            bucket = self._bucket(region, action)
            if bucket.factor < 1.0:
                bucket.factor = min(1.0, bucket.factor + self.config.recovery_step)

    def current_rate(self, region: str, action: str) -> float:
        """The rate (calls/s) currently allowed for (region, action), adaptation included."""
        with self._lock:
            return self._bucket(region, action).rate
