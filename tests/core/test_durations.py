"""Durations: one spelling for every duration key, printed back the same way."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvmkeeper.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("6h", timedelta(hours=6)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(hours=36)),
        ("1D 12H", timedelta(hours=36)),
        ("90s", timedelta(seconds=90)),
    ],
)
def test_parses_what_people_write(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "6", "h", "1x", "0m", "1h1h", "-1h", "1.5h", "six hours"])
def test_refuses_anything_else_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|twice|zero"):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10**8))
def test_format_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


def test_format_uses_the_largest_units() -> None:
    assert format_duration(timedelta(hours=36)) == "1d12h"
    assert format_duration(timedelta(days=14)) == "2w"


@pytest.mark.parametrize(
    "text", ["521w", "99999999999w", "3641d", "1" + "0" * 5000 + "s", "520w1s", "87361h"]
)
def test_refuses_durations_longer_than_ten_years(text: str) -> None:
    # Past the bound, date arithmetic (now + every, newest - keep_within) overflows.
    with pytest.raises(ValueError, match="too long: at most 520w"):
        parse_duration(text)


def test_the_longest_duration_is_accepted_and_fits_every_date() -> None:
    from datetime import UTC, datetime

    from cvmkeeper.core.durations import MAX_DURATION

    assert parse_duration("520w") == MAX_DURATION
    now = datetime(2026, 12, 3, tzinfo=UTC)
    assert now + MAX_DURATION > now > now - MAX_DURATION
