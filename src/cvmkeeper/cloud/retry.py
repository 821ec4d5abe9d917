"""Retrying transient cloud failures: full-jitter exponential backoff, bounded in count and time.

In the spirit of botocore's "standard" retry mode: only :class:`RetryableError` is retried;
each wait is drawn uniformly from ``[0, min(cap, base * 2**attempt)]`` ("full jitter", so
many clients that were throttled together do not come back together); a call gives up after
``max_attempts`` or when the next wait would pass its ``deadline``; ``InternalError`` is
retried only ``max_internal_errors`` times, because a server that keeps failing will not heal
within one call. The SDK's own ``StandardRetryer`` is never used: it re-sends after a success
and re-raises the first error instead of the last.

Each retry is logged (action, region, code, attempt, RequestId; never parameters, so never a
secret): throttling and busy resources at INFO, because they are expected and absorbed;
network and server faults at WARNING.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from cvmkeeper.cloud.errors import (
    BusyError,
    CloudError,
    InternalServerError,
    RetryableError,
    ThrottledError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one logical call tries before its last error is raised.

    ``base_seconds`` is the first backoff window, doubled per attempt up to ``cap_seconds``;
    ``deadline_seconds`` bounds the whole call, waits included.
    """

    max_attempts: int = 8
    base_seconds: float = 0.2
    cap_seconds: float = 20.0
    deadline_seconds: float = 120.0
    max_internal_errors: int = 3

    def backoff_window(self, attempt: int) -> float:
        """The upper bound of the wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1)))


#: Retries that happen all the time under load; logged at INFO.
_EXPECTED = (ThrottledError, BusyError)


class _RetryHooks:
    """tenacity's four hooks for one logical call, sharing that call's state: when it
    started (the deadline counts from there), how many ``InternalError`` it has met, and
    the rng the waits are drawn from."""

    def __init__(
        self,
        *,
        policy: RetryPolicy,
        action: str,
        region: str | None,
        give_up_on: Callable[[CloudError], bool] | None,
        clock: Callable[[], float],
        draw: random.Random,
    ) -> None:
        self._policy = policy
        self._action = action
        self._region = region
        self._give_up_on = give_up_on
        self._clock = clock
        self._draw = draw
        self._started = clock()
        self._internal_errors = 0

    def should_retry(self, error: BaseException) -> bool:
        """Only a :class:`RetryableError` the caller did not give up on, and ``InternalError``
        at most ``max_internal_errors`` times."""
        if not isinstance(error, RetryableError):
            return False
        if self._give_up_on is not None and self._give_up_on(error):
            return False
        if isinstance(error, InternalServerError):
            self._internal_errors += 1
            if self._internal_errors > self._policy.max_internal_errors:
                return False
        return True

    def wait(self, state: tenacity.RetryCallState) -> float:
        """Full jitter: uniform in ``[0, backoff_window(attempt)]``."""
        return self._draw.uniform(0.0, self._policy.backoff_window(state.attempt_number))

    def stop(self, state: tenacity.RetryCallState) -> bool:
        """Give up after ``max_attempts``, or when the next wait would pass the deadline."""
        if state.attempt_number >= self._policy.max_attempts:
            return True
        elapsed = self._clock() - self._started
        return elapsed + state.upcoming_sleep > self._policy.deadline_seconds

    def log_retry(self, state: tenacity.RetryCallState) -> None:
        """One line per retry: INFO for throttling and busy resources, WARNING otherwise."""
        error = state.outcome.exception() if state.outcome else None
        if not isinstance(error, CloudError):  # pragma: no cover - should_retry guarantees it
            return
        level = logging.INFO if isinstance(error, _EXPECTED) else logging.WARNING
        log.log(
            level,
            "retrying %s in %s after %s (attempt %d of at most %d, waiting %.2fs, RequestId %s)",
            self._action,
            self._region or "-",
            error.code,
            state.attempt_number,
            self._policy.max_attempts,
            state.upcoming_sleep,
            error.request_id or "-",
        )


def call_with_retries(
    attempt: Callable[[], T],
    *,
    policy: RetryPolicy,
    action: str,
    region: str | None,
    give_up_on: Callable[[CloudError], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """Run ``attempt`` until it returns, retrying :class:`RetryableError` under ``policy``.

    ``give_up_on`` lets a caller stop retrying a particular error early. The last error is
    raised unchanged when the policy gives up. ``sleep``, ``clock`` and ``rng`` are injectable
    so tests run without waiting and deterministically.
    """
    hooks = _RetryHooks(
        policy=policy,
        action=action,
        region=region,
        give_up_on=give_up_on,
        clock=clock,
        draw=rng or random.Random(),
    )

    # Fast path: most calls succeed at once, and tenacity's bookkeeping costs more than an
    # in-process call. Only an error that may be retried enters tenacity, replayed as its
    # first attempt so that counting, waits, the deadline and logging are unchanged.
    try:
        return attempt()
    except RetryableError as error:
        replay: RetryableError | None = error

    def resumed() -> T:
        nonlocal replay
        if replay is not None:
            error, replay = replay, None
            raise error
        return attempt()

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(hooks.should_retry),
        wait=hooks.wait,
        stop=hooks.stop,
        before_sleep=hooks.log_retry,
        sleep=sleep,
        reraise=True,
    )
    return retrying(resumed)
