"""The value of the cloud stop mark (``core.stop_marker``): written, parsed, expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cvmkeeper.core.stop_marker import marker_value, parse_marker

NOW = datetime(2026, 12, 3, 18, 0, 0, 250000, tzinfo=UTC)


def test_a_mark_round_trips_and_its_lease_is_never_shorter_than_asked() -> None:
    mark = marker_value("db host/1", "77-abc", NOW, timedelta(minutes=30))
    assert mark.value() == "2026-12-03T18:00:00Z/2026-12-03T18:30:01Z/db-host-1/77-abc"
    assert parse_marker(mark.value()) == mark
    assert mark.lease_until - NOW >= timedelta(minutes=30)


def test_a_lease_ends_at_its_end_and_not_before() -> None:
    mark = marker_value("h", "o", NOW, timedelta(seconds=10))
    assert not mark.expired(mark.lease_until - timedelta(microseconds=1))
    assert mark.expired(mark.lease_until)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "someone",
        "2026-12-03T18:00:00Z/2026-12-03T18:30:00Z/host",
        "2026-12-03T18:00:00Z/not-a-time/host/owner",
        "2026-12-03T18:00:00Z//host/owner",
    ],
)
def test_values_cvmkeeper_did_not_write_are_not_marks(value: str) -> None:
    assert parse_marker(value) is None


def test_a_naive_time_or_a_negative_lease_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        marker_value("h", "o", NOW.replace(tzinfo=None), timedelta(0))
    with pytest.raises(ValueError, match="negative"):
        marker_value("h", "o", NOW, timedelta(seconds=-1))
