"""NullAlerter and RecordingAlerter: what other layers use when Sentry is off or in tests."""

from __future__ import annotations

import threading

import pytest

from cvmkeeper.alerting.alerter import (
    Alerter,
    CheckIn,
    NullAlerter,
    RecordingAlerter,
    monitored_run,
)
from cvmkeeper.alerting.events import Failure, MonitorConfig

CONFIG = MonitorConfig(schedule="0 3 * * *")
BROKEN = Failure(policy="web", action="CreateImage", message="gone", tencent_code="X")
EVICTED = Failure(policy="web", action="rotate", message="evicted", level="warning")


def test_the_null_alerter_accepts_everything_and_keeps_nothing() -> None:
    alerter: Alerter = NullAlerter()
    first = alerter.checkin_start("web", CONFIG)
    second = alerter.checkin_start("web", CONFIG)
    alerter.error(BROKEN)
    alerter.warning(EVICTED)
    alerter.checkin_finish("web", first, ok=False, config=CONFIG)
    alerter.flush(timeout=0)
    alerter.close(timeout=0)
    assert first != second
    assert vars(alerter) == {}


def test_the_recording_alerter_keeps_failures_and_checkins_in_order() -> None:
    alerter = RecordingAlerter()
    run = alerter.checkin_start("web", CONFIG)
    alerter.warning(EVICTED)
    alerter.error(BROKEN)
    alerter.checkin_finish("web", run, ok=False, config=CONFIG)
    other = alerter.checkin_start("db", CONFIG)
    alerter.checkin_finish("db", other, ok=True, config=CONFIG)

    assert alerter.failures == [EVICTED, BROKEN]
    assert alerter.errors == [BROKEN]
    assert alerter.warnings == [EVICTED]
    assert alerter.checkin_statuses("web") == ["in_progress", "error"]
    assert alerter.checkin_statuses("db") == ["in_progress", "ok"]
    assert alerter.checkins[1] == CheckIn("web", run, "error", CONFIG)


def test_the_recording_alerter_refuses_a_level_given_to_the_wrong_method() -> None:
    alerter = RecordingAlerter()
    with pytest.raises(ValueError, match="warning-level failure was given to error"):
        alerter.error(EVICTED)
    with pytest.raises(ValueError, match="error-level failure was given to warning"):
        alerter.warning(BROKEN)
    assert alerter.failures == []


def test_the_recording_alerter_refuses_to_finish_a_run_twice_or_unstarted() -> None:
    alerter = RecordingAlerter()
    run = alerter.checkin_start("web", CONFIG)
    with pytest.raises(ValueError):
        alerter.checkin_finish("db", run, ok=True, config=CONFIG)  # another monitor's id
    alerter.checkin_finish("web", run, ok=True, config=CONFIG)
    with pytest.raises(ValueError):
        alerter.checkin_finish("web", run, ok=True, config=CONFIG)
    with pytest.raises(ValueError):
        alerter.checkin_finish("web", "never-started", ok=True, config=CONFIG)


def test_the_recording_alerter_is_safe_across_threads() -> None:
    alerter = RecordingAlerter()

    def one_run(index: int) -> None:
        slug = f"policy-{index}"
        run = alerter.checkin_start(slug, CONFIG)
        for _ in range(50):
            alerter.error(Failure(policy=slug, action="CreateImage", message="x"))
        alerter.checkin_finish(slug, run, ok=False, config=CONFIG)

    threads = [threading.Thread(target=one_run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(alerter.errors) == 8 * 50
    for index in range(8):
        assert alerter.checkin_statuses(f"policy-{index}") == ["in_progress", "error"]


def test_a_monitored_run_checks_in_ok_or_error() -> None:
    alerter = RecordingAlerter()
    with monitored_run(alerter, "good", CONFIG) as run:
        assert alerter.checkin_statuses("good") == ["in_progress"]
    with monitored_run(alerter, "failed", CONFIG) as run:
        run.fail()
    with pytest.raises(RuntimeError), monitored_run(alerter, "crashed", CONFIG):
        raise RuntimeError("executor crashed")

    assert alerter.checkin_statuses("good") == ["in_progress", "ok"]
    assert alerter.checkin_statuses("failed") == ["in_progress", "error"]
    assert alerter.checkin_statuses("crashed") == ["in_progress", "error"]
    assert run.ok is False
