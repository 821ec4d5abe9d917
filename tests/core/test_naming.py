"""Image names: ≤ 20 characters, unique per region, deterministic, sortable, parseable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvmkeeper.core.inventory import Image, ImageState
from cvmkeeper.core.naming import (
    DEFAULT_FORMAT,
    DESCRIPTION_PREFIX,
    MARKER_TAG,
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    PIN_TAG,
    TAG_INSTANCE,
    NameFormat,
    NameTemplateError,
    image_description,
    image_name,
    image_tags,
    is_managed,
    is_pinned,
    name_matches_instance,
    parse_image_name,
)

instance_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=8).map(
    lambda s: "ins-" + s
)
slots = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59), timezones=st.just(UTC)
).map(lambda d: d.replace(second=0, microsecond=0))


def test_the_default_name_reads_as_utc_minute_then_instance() -> None:
    slot = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert image_name("ins-6pb6lrmy", slot) == "261127-1800-6pb6lrmy"


def test_a_slot_given_in_another_zone_names_the_same_utc_minute() -> None:
    shanghai = timezone(timedelta(hours=8))
    slot = datetime(2026, 11, 28, 2, 0, tzinfo=shanghai)
    assert image_name("ins-6pb6lrmy", slot) == "261127-1800-6pb6lrmy"


@given(instance_ids, slots)
def test_round_trip_and_length(instance_id: str, slot: datetime) -> None:
    name = image_name(instance_id, slot)
    assert len(name) <= MAX_NAME_LENGTH
    parsed = parse_image_name(name)
    assert parsed is not None
    assert parsed.instance_id == instance_id
    assert parsed.slot == slot
    assert name_matches_instance(name, instance_id)


@given(instance_ids, slots, slots)
def test_names_sort_like_their_slots(instance_id: str, first: datetime, second: datetime) -> None:
    a, b = image_name(instance_id, first), image_name(instance_id, second)
    assert (a < b) == (first < second)
    assert (a == b) == (first == second)


@given(st.lists(st.tuples(instance_ids, slots), min_size=2, max_size=60, unique=True))
def test_no_two_distinct_pairs_of_a_fleet_collide(pairs: list[tuple[str, datetime]]) -> None:
    names = [image_name(i, s) for i, s in pairs]
    assert len(set(names)) == len(pairs)


@pytest.mark.parametrize(
    "instance_id", ["ins-6pb6lrm", "ins-6pb6lrmyx", "ins-6PB6LRMY", "lhins-6pb6lrmy", "6pb6lrmy"]
)
def test_ids_that_cannot_fit_are_refused_not_guessed(instance_id: str) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        image_name(instance_id, datetime(2026, 1, 1, tzinfo=UTC))


def test_slots_must_be_aware_whole_minutes() -> None:
    with pytest.raises(ValueError, match="timezone"):
        image_name("ins-6pb6lrmy", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="minute"):
        image_name("ins-6pb6lrmy", datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))


@pytest.mark.parametrize(
    "name",
    ["golden-base", "261327-1800-6pb6lrmy", "261127-2500-6pb6lrmy", "261127-1800-6PB6LRMY", ""],
)
def test_other_names_do_not_parse(name: str) -> None:
    assert parse_image_name(name) is None


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{yyyy}{mm}{dd}-{HH}{MM}-{id}", "worst case is 22 characters"),
        ("{yy}{mm}{dd}{HH}-{id}", r"missing \{MM\}"),
        ("{mm}{dd}{HH}{MM}{id}", "yyyy"),
        ("{yy}{mm}{dd}{HH}{MM}{ss}{id}", "unknown field"),
        ("{yy}{mm}{dd} {HH}{MM}{id}", "characters other than"),
        ("{yy}{yy}{mm}{dd}{HH}{MM}{id}", "twice"),
    ],
)
def test_templates_are_checked_against_their_worst_case(template: str, message: str) -> None:
    with pytest.raises(NameTemplateError, match=message):
        NameFormat.compile(template)


@given(instance_ids, slots)
def test_a_shorter_template_round_trips_too(instance_id: str, slot: datetime) -> None:
    fmt = NameFormat.compile("{yyyy}{mm}{dd}{HH}{MM}{id}")
    name = fmt.format(instance_id, slot)
    assert len(name) == 20
    assert fmt.parse(name) == parse_image_name(image_name(instance_id, slot))


def _image(name: str, tags: dict[str, str], description: str = "") -> Image:
    return Image(
        image_id="img-1",
        name=name,
        state=ImageState.NORMAL,
        created_time=datetime(2026, 1, 1, tzinfo=UTC),
        region="ap-guangzhou",
        description=description,
        tags=tags,
    )


def test_managed_needs_marker_description_and_a_parsing_name() -> None:
    slot = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    name = image_name("ins-6pb6lrmy", slot)
    tags = image_tags(("web-daily",), "ins-6pb6lrmy", slot)
    description = image_description(("web-daily",), slot)
    assert description.startswith(DESCRIPTION_PREFIX)
    parsed = is_managed(_image(name, tags, description))
    assert parsed is not None and parsed.slot == slot
    without_marker = {k: v for k, v in tags.items() if k != MARKER_TAG}
    assert is_managed(_image(name, without_marker, description)) is None
    assert is_managed(_image(name, tags, "hand made")) is None
    assert is_managed(_image("golden-base", tags, description)) is None
    other_instance = {**tags, TAG_INSTANCE: "ins-2kd9x0qa"}
    assert is_managed(_image(name, other_instance, description)) is None


def test_descriptions_stay_within_the_api_limit() -> None:
    names = tuple(f"policy-number-{i}" for i in range(10))
    text = image_description(names, datetime(2026, 1, 1, tzinfo=UTC))
    assert len(text) <= MAX_DESCRIPTION_LENGTH
    assert text.startswith(DESCRIPTION_PREFIX)


def test_pin_tag() -> None:
    assert is_pinned({PIN_TAG: "true"})
    assert is_pinned({PIN_TAG: "TRUE"})
    assert not is_pinned({PIN_TAG: "no"})
    assert not is_pinned({})
    assert DEFAULT_FORMAT.length == 20
