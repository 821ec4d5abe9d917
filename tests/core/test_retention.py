"""Retention: table-driven keep sets with reasons, and the properties of docs/design.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvmkeeper.core.inventory import ImageState
from cvmkeeper.core.policy import Retention
from cvmkeeper.core.retention import Backup, Decision, RuleSet, decide


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def normal(image_id: str, slot: datetime, pinned: bool = False) -> Backup:
    return Backup(image_id, slot, ImageState.NORMAL, pinned)


def kept(decisions: list[Decision]) -> set[str]:
    return {d.image_id for d in decisions if d.keep}


def reasons(decisions: list[Decision]) -> dict[str, tuple[str, ...]]:
    return {d.image_id: d.reasons for d in decisions}


def daily_images(first: datetime, days: int, hour: int = 18) -> list[Backup]:
    return [normal(f"d{i:03d}", first.replace(hour=hour) + timedelta(days=i)) for i in range(days)]


def test_keep_last_keeps_the_newest_and_says_so() -> None:
    images = daily_images(utc(2026, 11, 1), 5)
    decisions = decide(images, [RuleSet(Retention(keep_last=2))])
    assert kept(decisions) == {"d004", "d003"}
    why = reasons(decisions)
    assert why["d004"] == ("newest NORMAL", "keep_last #1")
    assert why["d003"] == ("keep_last #2",)
    assert why["d000"] == ("expired",)
    assert [d.image_id for d in decisions] == ["d004", "d003", "d002", "d001", "d000"]


def test_keep_daily_names_its_bucket_in_the_policy_timezone() -> None:
    # 18:00 UTC is 02:00 the next day in Shanghai.
    images = daily_images(utc(2026, 11, 20), 6)
    decisions = decide(images, [RuleSet(Retention(keep_daily=3), "Asia/Shanghai")])
    why = reasons(decisions)
    assert why["d005"] == ("newest NORMAL", "keep_daily #1 (2026-11-26)")
    assert why["d003"] == ("keep_daily #3 (2026-11-24)",)
    assert kept(decisions) == {"d005", "d004", "d003"}


def test_several_images_in_one_bucket_keep_the_newest_of_it() -> None:
    images = [normal(f"h{i:02d}", utc(2026, 11, 25, i)) for i in range(24)] + [
        normal("prev", utc(2026, 11, 24, 23))
    ]
    decisions = decide(images, [RuleSet(Retention(keep_daily=2))])
    assert kept(decisions) == {"h23", "prev"}


@pytest.mark.parametrize(
    ("slots", "tz", "expected"),
    [
        # ISO week-year: 1 Jan 2027 (Friday) belongs to 2026-W53.
        (
            [
                utc(2026, 12, 27, 12),
                utc(2026, 12, 28, 12),
                utc(2027, 1, 1, 12),
                utc(2027, 1, 4, 12),
            ],
            "UTC",
            {"2027-01-04T12": "2027-W01", "2027-01-01T12": "2026-W53", "2026-12-27T12": "2026-W52"},
        ),
        # 31 Dec 2024 is in 2025-W01: the week holding it and 1 Jan 2025 is one bucket.
        (
            [utc(2024, 12, 29, 12), utc(2024, 12, 31, 12), utc(2025, 1, 2, 12)],
            "UTC",
            {"2025-01-02T12": "2025-W01", "2024-12-29T12": "2024-W52"},
        ),
    ],
)
def test_weeks_are_iso_weeks(slots: list[datetime], tz: str, expected: dict[str, str]) -> None:
    images = [normal(f"{s:%Y-%m-%dT%H}", s) for s in slots]
    decisions = decide(images, [RuleSet(Retention(keep_weekly=10), tz)])
    labels = {
        d.image_id: r.split("(")[1].rstrip(")")
        for d in decisions
        for r in d.reasons
        if r.startswith("keep_weekly")
    }
    assert labels == expected


def test_months_of_different_lengths_and_years() -> None:
    slots = [utc(2026, 1, 31), utc(2026, 2, 28), utc(2026, 3, 1), utc(2026, 3, 31), utc(2027, 2, 1)]
    images = [normal(f"{s:%Y-%m-%d}", s) for s in slots]
    monthly = decide(images, [RuleSet(Retention(keep_monthly=4))])
    assert kept(monthly) == {"2027-02-01", "2026-03-31", "2026-02-28", "2026-01-31"}
    yearly = decide(images, [RuleSet(Retention(keep_yearly=2))])
    assert kept(yearly) == {"2027-02-01", "2026-03-31"}


def test_a_month_boundary_depends_on_the_timezone() -> None:
    # 2026-11-30 20:00 UTC is already 1 December in Shanghai.
    images = [normal("a", utc(2026, 11, 30, 20)), normal("b", utc(2026, 11, 30, 10))]
    assert kept(decide(images, [RuleSet(Retention(keep_monthly=2), "UTC")])) == {"a"}
    assert kept(decide(images, [RuleSet(Retention(keep_monthly=2), "Asia/Shanghai")])) == {"a", "b"}


def test_hourly_buckets_on_a_fall_back_night_are_distinct_hours() -> None:
    # Berlin 2026-10-25: 00:30 UTC is 02:30 CEST, 01:30 UTC is 02:30 CET.
    images = [normal("cest", utc(2026, 10, 25, 0, 30)), normal("cet", utc(2026, 10, 25, 1, 30))]
    decisions = decide(images, [RuleSet(Retention(keep_hourly=5), "Europe/Berlin")])
    assert kept(decisions) == {"cest", "cet"}


def test_daily_buckets_on_a_dst_day() -> None:
    # Berlin 2026-03-29 has 23 hours; 22:30 UTC on the 28th and 21:30 UTC on the 29th are
    # 23:30 local on two different days.
    images = [normal("28th", utc(2026, 3, 28, 22, 30)), normal("29th", utc(2026, 3, 29, 21, 30))]
    decisions = decide(images, [RuleSet(Retention(keep_daily=2), "Europe/Berlin")])
    assert reasons(decisions)["28th"] == ("keep_daily #2 (2026-03-28)",)


def test_keep_within_is_measured_from_the_newest_image_not_from_now() -> None:
    # The newest is a year old: a stalled backup must not expire the rest.
    images = daily_images(utc(2025, 1, 1), 10)
    decisions = decide(images, [RuleSet(Retention(keep_within=timedelta(days=3)))])
    assert kept(decisions) == {"d009", "d008", "d007"}
    assert reasons(decisions)["d007"] == ("keep_within 3d",)


def test_pins_are_kept_and_not_counted() -> None:
    images = daily_images(utc(2026, 11, 1), 5)
    images[4] = normal("d004", images[4].slot, pinned=True)
    images[1] = normal("d001", images[1].slot, pinned=True)
    decisions = decide(images, [RuleSet(Retention(keep_last=2))])
    assert kept(decisions) == {"d004", "d001", "d003", "d002"}
    assert reasons(decisions)["d004"] == ("pinned", "newest NORMAL")
    assert reasons(decisions)["d003"] == ("keep_last #1",)


def test_failed_and_in_flight_images() -> None:
    images = [
        Backup("creating", utc(2026, 11, 5), ImageState.CREATING),
        Backup("failed", utc(2026, 11, 4), ImageState.CREATEFAILED),
        Backup("syncing", utc(2026, 10, 1), ImageState.SYNCING),
        Backup("unknown", utc(2026, 10, 2), ImageState.UNKNOWN),
        normal("ok", utc(2026, 11, 3)),
        normal("old", utc(2026, 11, 2)),
    ]
    why = reasons(decide(images, [RuleSet(Retention(keep_last=1))]))
    assert why["creating"] == ("CREATING: left alone",)
    assert why["failed"] == ("CREATEFAILED: clean up",)
    assert why["syncing"] == ("SYNCING: left alone",)
    assert why["unknown"] == ("UNKNOWN: left alone",)
    assert why["ok"] == ("newest NORMAL", "keep_last #1")
    assert why["old"] == ("expired",)
    assert not next(d for d in decide(images, []) if d.image_id == "failed").keep


def test_min_keep_keeps_more_of_the_newest() -> None:
    images = [normal(f"h{i}", utc(2026, 11, 25, i)) for i in range(6)]
    decisions = decide(images, [RuleSet(Retention(keep_daily=1, min_keep=3))])
    assert kept(decisions) == {"h5", "h4", "h3"}
    assert reasons(decisions)["h4"] == ("min_keep",)


def test_rules_of_several_policies_are_ored_each_in_its_timezone() -> None:
    images = daily_images(utc(2026, 11, 1), 10, hour=20)
    decisions = decide(
        images,
        [
            RuleSet(Retention(keep_last=2), "UTC", "hourly"),
            RuleSet(Retention(keep_weekly=2), "Asia/Shanghai", "weekly"),
        ],
    )
    why = reasons(decisions)
    assert kept(decisions) == {"d009", "d008", "d006"}
    assert why["d008"] == ("hourly: keep_last #2",)
    # 2026-11-07 20:00 UTC is Sunday 8 November 04:00 in Shanghai: the end of W45.
    assert why["d006"] == ("weekly: keep_weekly #2 (2026-W45)",)


def test_an_orphan_without_rules_keeps_everything() -> None:
    images = daily_images(utc(2026, 11, 1), 3)
    assert kept(decide(images, [])) == {"d000", "d001", "d002"}


# --- properties ---------------------------------------------------------------------------

STATES = [ImageState.NORMAL] * 6 + [
    ImageState.CREATING,
    ImageState.CREATEFAILED,
    ImageState.SYNCING,
    ImageState.USING,
]
backups = st.lists(
    st.builds(
        lambda minutes, state, pinned: (minutes, state, pinned),
        st.integers(0, 60 * 24 * 800),
        st.sampled_from(STATES),
        st.sampled_from([False, False, False, False, True]),  # pins are the exception
    ),
    max_size=40,
    unique_by=lambda t: t[0],
).map(
    lambda items: [
        Backup(f"img-{m:07d}", utc(2025, 1, 1) + timedelta(minutes=m), state, pinned)
        for m, state, pinned in items
    ]
)
retentions = st.builds(
    Retention,
    keep_last=st.integers(0, 5),
    keep_hourly=st.integers(0, 5),
    keep_daily=st.integers(0, 5),
    keep_weekly=st.integers(0, 4),
    keep_monthly=st.integers(0, 4),
    keep_yearly=st.integers(0, 2),
    keep_within=st.none() | st.integers(1, 24 * 30).map(lambda h: timedelta(hours=h)),
    min_keep=st.integers(1, 4),
)
rule_sets = st.lists(
    st.builds(
        RuleSet,
        retentions,
        st.sampled_from(["UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York"]),
        st.sampled_from(["a", "b", "c"]),
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(backups, rule_sets)
def test_the_newest_normal_image_is_always_kept(images: list[Backup], rules: list[RuleSet]) -> None:
    usable = [b for b in images if b.state.usable]
    decisions = decide(images, rules)
    assert len(decisions) == len(images)
    if usable:
        newest = max(usable, key=lambda b: b.slot)
        assert newest.image_id in kept(decisions)
    for backup in images:
        decision = next(d for d in decisions if d.image_id == backup.image_id)
        assert decision.reasons
        if backup.pinned or backup.state.busy:
            assert decision.keep
        if backup.state is ImageState.CREATEFAILED and not backup.pinned:
            assert not decision.keep


@settings(max_examples=200, deadline=None)
@given(backups, rule_sets)
def test_retention_of_its_own_kept_set_deletes_nothing_more(
    images: list[Backup], rules: list[RuleSet]
) -> None:
    first = kept(decide(images, rules))
    survivors = [b for b in images if b.image_id in first]
    assert kept(decide(survivors, rules)) == first


@settings(max_examples=200, deadline=None)
@given(backups, rule_sets, st.integers(1, 60 * 24 * 400))
def test_an_older_image_never_changes_the_fate_of_newer_ones(
    images: list[Backup], rules: list[RuleSet], minutes_before: int
) -> None:
    oldest = min((b.slot for b in images), default=utc(2025, 1, 1))
    older = normal("img-older", oldest - timedelta(minutes=minutes_before))
    before = {d.image_id: d.keep for d in decide(images, rules)}
    after = {d.image_id: d.keep for d in decide([*images, older], rules)}
    assert {k: after[k] for k in before} == before


@settings(max_examples=200, deadline=None)
@given(backups, rule_sets)
def test_kept_count_is_bounded_by_the_rules(images: list[Backup], rules: list[RuleSet]) -> None:
    rules = [
        RuleSet(
            Retention(**{**r.retention.counts(), "min_keep": r.retention.min_keep}),
            r.timezone,
            r.policy,
        )
        for r in rules
    ]
    decisions = decide(images, rules)
    by_id = {b.image_id: b for b in images}
    usable_kept = [
        d
        for d in decisions
        if d.keep and by_id[d.image_id].state.usable and not by_id[d.image_id].pinned
    ]
    bound = sum(sum(r.retention.counts().values()) for r in rules) + max(
        r.retention.min_keep for r in rules
    )
    assert len(usable_kept) <= bound
