"""Worst-case image counts and the per-region quota arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cvmkeeper.core.capacity import (
    check_region_quota,
    explain_max_images,
    max_images,
    policy_max_images,
)
from cvmkeeper.core.policy import Policy, Retention, Schedule, Targets
from cvmkeeper.core.simulation import simulate

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


def policy(name: str, retention: Retention, **targets: object) -> Policy:
    return Policy(
        name=name,
        regions=("ap-guangzhou",),
        targets=Targets(**targets),  # type: ignore[arg-type]
        schedules=(DAILY,),
        retention=retention,
    )


def test_region_arithmetic_sums_listed_instances_and_counts_tags_as_one() -> None:
    by_id = policy(
        "web",
        Retention(keep_last=3),
        instance_ids=("ins-aaaaaaaa", "ins-bbbbbbbb", "ins-cccccccc"),
        exclude_instance_ids=("ins-cccccccc",),
    )
    by_tag = policy("db", Retention(keep_daily=4), tags={"role": "db"})
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
