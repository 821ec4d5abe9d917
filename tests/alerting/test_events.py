"""Failure tags and fingerprints, monitor configs and monitor slugs: pure values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvmkeeper.alerting.events import (
    Failure,
    MonitorConfig,
    failure_fingerprint,
    failure_tags,
    monitor_config_from,
    monitor_slug,
)

SENTRY_SLUG = re.compile(r"^[a-z0-9_-]{1,50}$")


def _failure(**changes: str) -> Failure:
    fields = {
        "policy": "web-daily",
        "action": "CreateImage",
        "message": "instance not found",
        "instance": "ins-1",
        "region": "ap-guangzhou",
        "tencent_code": "InvalidInstanceId.NotFound",
        "request_id": "req-1",
    }
    fields.update(changes)
    return Failure(**fields)  # type: ignore[arg-type]


def test_tags_are_the_fields_that_apply() -> None:
    failure = Failure(policy="p", action="rotate", message="m", level="warning", region="ap-1")
    assert failure_tags(failure) == {"policy": "p", "region": "ap-1", "action": "rotate"}


def test_tag_values_are_cut_to_sentrys_limit() -> None:
    failure = _failure(message="x", instance="i" * 500)
    assert failure_tags(failure)["instance"] == "i" * 200


def test_the_fingerprint_ignores_instance_message_and_request() -> None:
    first = _failure()
    other_run = _failure(instance="ins-2", message="another text", request_id="req-2")
    assert failure_fingerprint(first) == failure_fingerprint(other_run)


@pytest.mark.parametrize(
    "change",
    [{"policy": "db-hourly"}, {"action": "DeleteImages"}, {"tencent_code": "AuthFailure"}],
)
def test_the_fingerprint_follows_policy_action_and_code(change: dict[str, str]) -> None:
    assert failure_fingerprint(_failure()) != failure_fingerprint(_failure(**change))


def test_a_failure_without_a_code_has_a_stable_fingerprint() -> None:
    failure = Failure(policy="p", action="wait", message="timed out")
    assert failure_fingerprint(failure) == ["cvmkeeper", "p", "wait", "-"]


@pytest.mark.parametrize(
    "fields",
    [
        {"policy": "p", "action": "a", "message": "m", "level": "info"},
        {"policy": "", "action": "a", "message": "m"},
        {"policy": "p", "action": "", "message": "m"},
    ],
)
def test_an_invalid_failure_is_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Failure(**fields)  # type: ignore[arg-type]


def test_a_failure_repr_leaves_its_exception_out() -> None:
    failure = Failure(policy="p", action="a", message="m", exception=RuntimeError("inner text"))
    assert "inner text" not in repr(failure)


def test_a_crontab_monitor_config_as_sentry_documents_it() -> None:
    config = MonitorConfig(schedule="0  3 * * 1-5", timezone="Europe/Berlin", max_runtime=30)
    assert config.to_sentry() == {
        "schedule": {"type": "crontab", "value": "0 3 * * 1-5"},
        "timezone": "Europe/Berlin",
        "checkin_margin": 5,
        "max_runtime": 30,
        "failure_issue_threshold": 1,
        "recovery_threshold": 1,
    }


def test_an_interval_monitor_config_as_sentry_documents_it() -> None:
    schedule = MonitorConfig(schedule=(2, "day")).to_sentry()["schedule"]
    assert schedule == {"type": "interval", "value": 2, "unit": "day"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"schedule": "0 3 * *"},
        {"schedule": (0, "hour")},
        {"schedule": (1, "second")},
        {"schedule": "@daily"},
        {"schedule": "0 3 * * *", "checkin_margin": 0},
        {"schedule": "0 3 * * *", "max_runtime": 0},
        {"schedule": "0 3 * * *", "failure_issue_threshold": 0},
        {"schedule": "0 3 * * *", "recovery_threshold": 0},
    ],
)
def test_an_invalid_monitor_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MonitorConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["web-daily", "db_hourly", "a", "x" * 50, "prod-2"])
def test_a_name_that_is_already_a_slug_is_kept(name: str) -> None:
    assert monitor_slug(name) == name


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("Web Daily", "web-daily-"),
        ("web.daily", "web-daily-"),
        ("Überwachung/DB", "uberwachung-db-"),
        ("2024", "2024-"),
        ("", "policy-"),
        ("日本", "policy-"),
        ("x" * 51, "x" * 41 + "-"),
    ],
)
def test_other_names_are_folded_and_hashed(name: str, prefix: str) -> None:
    slug = monitor_slug(name)
    assert SENTRY_SLUG.match(slug)
    assert slug.startswith(prefix)
    assert len(slug) == len(prefix) + 8


def test_names_that_fold_alike_get_different_slugs() -> None:
    names = ["Web Daily", "web daily", "web.daily", "WEB-DAILY", "web-daily"]
    assert len({monitor_slug(n) for n in names}) == len(names)


def test_long_names_sharing_a_prefix_get_different_slugs() -> None:
    base = "production-database-cluster-in-guangzhou-zone-three-"
    assert monitor_slug(base + "primary") != monitor_slug(base + "replica")


@given(st.text(max_size=120))
def test_every_slug_is_valid_for_sentry_and_deterministic(name: str) -> None:
    slug = monitor_slug(name)
    assert SENTRY_SLUG.match(slug)
    assert not slug.isdigit()
    assert monitor_slug(name) == slug


@given(st.text(max_size=80), st.text(max_size=80))
def test_different_names_get_different_slugs(first: str, second: str) -> None:
    if first != second:
        assert monitor_slug(first) != monitor_slug(second)


@dataclass(frozen=True)
class _MonitorOptions:
    checkin_margin: timedelta
    max_runtime: timedelta
    failure_issue_threshold: int = 2
    recovery_threshold: int = 3


def test_a_monitor_config_from_the_config_counts_whole_minutes_rounded_up() -> None:
    options = _MonitorOptions(timedelta(seconds=30), timedelta(minutes=90, seconds=1))
    config = monitor_config_from((1, "day"), "Asia/Tokyo", options)
    assert config == MonitorConfig(
        schedule=(1, "day"),
        timezone="Asia/Tokyo",
        checkin_margin=1,
        max_runtime=91,
        failure_issue_threshold=2,
        recovery_threshold=3,
    )
