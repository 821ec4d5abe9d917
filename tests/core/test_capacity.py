"""Worst-case image counts and the per-region quota arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_planner import REGION, A, B, foreign, hour
from test_planner import inventory as planner_inventory
from test_planner import run as run_planner

from cvmkeeper.core.capacity import (
    check_region_quota,
    explain_max_images,
    max_images,
    needs_rotation_headroom,
    policy_max_images,
)
from cvmkeeper.core.plan import DeleteKind
from cvmkeeper.core.policy import Policy, Retention, Schedule, Targets
from cvmkeeper.core.simulation import simulate
from support.builders import policy

DAILY = Schedule(cron="0 2 * * *")


def test_the_newest_image_is_counted_once() -> None:
    gfs = Retention(keep_daily=7, keep_weekly=4, keep_monthly=3)
    assert max_images(gfs, [DAILY]) == 12
    assert explain_max_images(gfs, [DAILY]) == (
        "keep_daily 7 + keep_weekly 4 + keep_monthly 3 + min_keep 1"
        " - 3 (the newest, kept by every rule) = 12"
    )
    assert max_images(Retention(keep_last=3), [DAILY]) == 3
    assert max_images(Retention(keep_last=3, min_keep=5), [DAILY]) == 7


def test_keep_within_counts_the_slots_its_window_can_hold() -> None:
    within = Retention(keep_within=timedelta(days=2))
    assert max_images(within, [DAILY]) == 2
    assert max_images(within, [Schedule(every=timedelta(hours=6))]) == 8
    assert max_images(within, [DAILY, Schedule(cron="0 14 * * *")]) == 4


def test_region_arithmetic_sums_listed_instances_and_counts_tags_as_one() -> None:
    by_id = policy(
        "web",
        retention=Retention(keep_last=3),
        schedules=(DAILY,),
        ids=("ins-aaaaaaaa", "ins-bbbbbbbb", "ins-cccccccc"),
        exclude=("ins-cccccccc",),
    )
    by_tag = policy(
        "db", retention=Retention(keep_daily=4), schedules=(DAILY,), tags={"role": "db"}
    )
    check = check_region_quota("ap-guangzhou", [by_id, by_tag], 10)
    assert check.total == 10 and check.fits
    assert check.explain() == (
        "ap-guangzhou: web 3 x 2 instances + db 4 x >=1 instance = 10 <= quota 10"
    )
    online = check_region_quota(
        "ap-guangzhou", [by_id, by_tag], 10, tagged_instances={"db": 2, "web": 0}, unmanaged=1
    )
    assert not online.fits
    assert online.explain() == (
        "ap-guangzhou: web 3 x 2 instances + db 4 x 2 instances + 1 unmanaged = 15 > quota 10"
    )
    assert check_region_quota("ap-shanghai", [by_id, by_tag], 10).total == 0


retentions = st.builds(
    Retention,
    keep_last=st.integers(0, 4),
    keep_hourly=st.integers(0, 4),
    keep_daily=st.integers(0, 4),
    keep_weekly=st.integers(0, 3),
    keep_monthly=st.integers(0, 3),
    keep_within=st.none() | st.integers(1, 72).map(lambda h: timedelta(hours=h)),
    min_keep=st.integers(1, 3),
).filter(lambda r: r.keeps_something)


@settings(max_examples=25, deadline=None)
@given(retentions, st.sampled_from(["0 * * * *", "0 2 * * *", "*/20 * * * *", "0 9 * * 1,4"]))
def test_a_simulated_quarter_never_holds_more_than_the_bound(
    retention: Retention, cron: str
) -> None:
    candidate = Policy(
        name="p",
        regions=("ap-guangzhou",),
        targets=Targets(instance_ids=("ins-aaaaaaaa",)),
        schedules=(Schedule(cron=cron, timezone="Europe/Berlin"),),
        retention=retention,
        timezone="Europe/Berlin",
    )
    start = datetime(2026, 1, 1, tzinfo=UTC)
    result = simulate(candidate, start, start + timedelta(days=15))
    assert result.peak_after_rotation <= policy_max_images(candidate)


# --- rotation headroom: validate and the planner agree -----------------------------------

HOURLY = Schedule(every=timedelta(hours=1))


@pytest.mark.parametrize(
    ("retention", "schedules", "expected"),
    [
        (Retention(keep_last=1), [DAILY], True),  # the next image replaces the only one
        (Retention(keep_last=2), [HOURLY], False),  # the oldest expires, deleted first
        (Retention(keep_daily=7), [HOURLY], True),  # the images of one day replace each other
        (Retention(keep_daily=7), [DAILY], False),  # one image a day: yesterday's stays
        (Retention(keep_daily=1), [DAILY], True),  # a bucket rule keeping 1
        (Retention(keep_daily=7, keep_last=2), [HOURLY], False),
        (Retention(keep_daily=7, min_keep=2), [HOURLY], False),
        (Retention(keep_within=timedelta(hours=2)), [HOURLY], False),
        (Retention(keep_within=timedelta(hours=1)), [HOURLY], True),  # the gap is not within
        (Retention(keep_hourly=3), [Schedule(cron="*/20 * * * *")], True),
        (Retention(keep_weekly=4), [Schedule(cron="0 2 * * 1")], False),
        (Retention(keep_weekly=4), [Schedule(cron="0 2 * * 1,4")], True),
    ],
)
def test_rotation_headroom_is_needed_exactly_when_the_next_image_expires_the_newest(
    retention: Retention, schedules: list[Schedule], expected: bool
) -> None:
    assert needs_rotation_headroom(retention, schedules) is expected


def test_the_arithmetic_shows_the_image_rotation_needs() -> None:
    one = policy(
        "web",
        retention=Retention(keep_last=1),
        schedules=(DAILY,),
        ids=("ins-aaaaaaaa", "ins-bbbbbbbb"),
    )
    check = check_region_quota("ap-guangzhou", [one], 10, unmanaged=6)
    assert check.explain() == (
        "ap-guangzhou: web (1 + 1 to rotate) x 2 instances + 6 unmanaged = 10 <= quota 10"
    )
    assert not check_region_quota("ap-guangzhou", [one], 10, unmanaged=7).fits


def rotate(candidate: Policy, quota: int, slots: int) -> tuple[int, int]:
    """Run the planner (with the in-memory executor of test_planner) hourly for ``slots``
    slots from an empty region with two unmanaged images: (evictions, skips)."""
    inv = planner_inventory(quota, [foreign("img-hand1"), foreign("img-hand2")])
    evictions = skips = 0
    for n in range(slots):
        slot = hour(n)
        inv, plans = run_planner(inv, [candidate], {candidate.name: slot}, slot)
        evictions += sum(
            len(d.targets) for p in plans for d in p.deletes() if d.kind is DeleteKind.EVICT
        )
        skips += sum(len(p.skips) for p in plans)
    return evictions, skips


@pytest.mark.parametrize(
    ("retention", "headroom"),
    [
        ({"keep_last": 4}, False),  # the example: quota 10, 2 x 4 + 2 unmanaged
        ({"keep_last": 1}, True),
        ({"keep_daily": 2}, True),  # hourly slots under keep_daily alone
        ({"keep_last": 2, "keep_daily": 2}, False),
    ],
)
def test_validate_and_the_planner_agree_on_what_a_full_quota_can_rotate(
    retention: dict[str, int], headroom: bool
) -> None:
    candidate = policy(ids=(A, B), **retention)  # hourly, two instances
    check = check_region_quota(REGION, [candidate], 100, unmanaged=2)
    assert [t.headroom for t in check.terms] == [int(headroom)]
    # At validate's total the planner rotates 50 hourly slots without evicting or skipping;
    # with one image less it cannot: validate's count is exactly what rotation needs.
    assert rotate(candidate, check.total, 50) == (0, 0)
    assert rotate(candidate, check.total - 1, 50) != (0, 0)
