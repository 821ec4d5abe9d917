"""The retry loop: what is retried, how often, how long, and what is logged."""

from __future__ import annotations

import logging
import random

import pytest

from cvmkeeper.cloud.errors import CloudError, classify
from cvmkeeper.cloud.retry import RetryPolicy, call_with_retries


class Script:
    """Fails with the given codes in order, then returns "ok"; counts attempts."""

    def __init__(self, *codes: str) -> None:
        self.codes = list(codes)
        self.attempts = 0

    def __call__(self) -> str:
        self.attempts += 1
        if self.codes:
            raise classify(
                self.codes.pop(0),
                "m",
                action="CreateImage",
                region="r",
                request_id=f"req-{self.attempts}",
            )
        return "ok"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def run(script: Script, fake: FakeTime, policy: RetryPolicy | None = None) -> str:
    return call_with_retries(
        script,
        policy=policy or RetryPolicy(),
        action="CreateImage",
        region="r",
        sleep=fake.sleep,
        clock=fake.clock,
        rng=random.Random(7),
    )


def test_retryable_errors_are_absorbed() -> None:
    fake = FakeTime()
    script = Script(
        "RequestLimitExceeded", "ResourceInUse", "ClientNetworkError", "MutexOperation.TaskRunning"
    )
    assert run(script, fake) == "ok"
    assert script.attempts == 5
    assert len(fake.slept) == 4


@pytest.mark.parametrize(
    "code",
    [
        "InvalidParameterValue",
        "AuthFailure.SignatureFailure",
        "InvalidImageName.Duplicate",
        "ImageQuotaLimitExceeded",
        "Unheard.Of",
    ],
)
def test_non_retryable_errors_are_raised_at_once(code: str) -> None:
    fake = FakeTime()
    script = Script(code)
    with pytest.raises(CloudError) as caught:
        run(script, fake)
    assert caught.value.code == code
    assert script.attempts == 1
    assert fake.slept == []


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    fake = FakeTime()
    script = Script(*["RequestLimitExceeded"] * 20)
    with pytest.raises(CloudError) as caught:
        run(script, fake, RetryPolicy(max_attempts=4))
    assert script.attempts == 4
    assert caught.value.request_id == "req-4"  # the last error, not the first


def test_internal_error_is_retried_only_a_bounded_few_times() -> None:
    fake = FakeTime()
    script = Script(*["InternalError"] * 10)
    with pytest.raises(CloudError):
        run(script, fake, RetryPolicy(max_attempts=10, max_internal_errors=2))
    assert script.attempts == 3  # first try + 2 retries


def test_full_jitter_stays_within_the_capped_window() -> None:
    fake = FakeTime()
    policy = RetryPolicy(max_attempts=12, base_seconds=0.5, cap_seconds=3.0, deadline_seconds=1000)
    run(Script(*["RequestLimitExceeded"] * 11), fake, policy)
    for attempt, slept in enumerate(fake.slept, start=1):
        assert 0 <= slept <= min(3.0, 0.5 * 2 ** (attempt - 1))
    assert len(set(fake.slept)) > 1  # random, not fixed


def test_deadline_bounds_the_whole_call() -> None:
    fake = FakeTime()
    policy = RetryPolicy(max_attempts=1000, base_seconds=1, cap_seconds=5, deadline_seconds=20)
    script = Script(*["ResourceInUse"] * 1000)
    with pytest.raises(CloudError):
        run(script, fake, policy)
    assert fake.now <= 20
    assert script.attempts < 1000


def test_give_up_on_stops_early() -> None:
    fake = FakeTime()
    script = Script("ClientNetworkError", "ClientNetworkError")
    with pytest.raises(CloudError):
        call_with_retries(
            script,
            policy=RetryPolicy(),
            action="A",
            region="r",
            give_up_on=lambda e: e.code == "ClientNetworkError",
            sleep=fake.sleep,
            clock=fake.clock,
        )
    assert script.attempts == 1


def test_each_retry_is_logged_with_action_code_and_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTime()
    caplog.set_level(logging.INFO, logger="cvmkeeper.cloud.retry")
    run(Script("RequestLimitExceeded", "InternalError"), fake)
    records = [r for r in caplog.records if r.name == "cvmkeeper.cloud.retry"]
    assert len(records) == 2
    throttled, internal = records
    assert throttled.levelno == logging.INFO
    assert internal.levelno == logging.WARNING
    assert "CreateImage in r after RequestLimitExceeded (attempt 1 of at most 8" in (
        throttled.getMessage()
    )
    assert "InternalError (attempt 2" in internal.getMessage()
    assert "RequestId req-2" in internal.getMessage()
