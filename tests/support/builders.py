"""The one way tests build a ``Policy`` value: ``policy(...)`` with everything defaulted.

Defaults: an hourly schedule in UTC, region ``ap-guangzhou``, no targets, ``keep_last: 1``,
the whole machine (``disks``).
Retention is given either whole (``retention=Retention(...)``) or as counts
(``policy(keep_last=3, keep_daily=7)``). Tests that need a policy *file* write YAML
(``tests/scheduler/daemon_helpers.policy_text``) or a document (``tests/executor/world``);
those go through the real loader on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from cvmkeeper.core.disks import DiskSelection
from cvmkeeper.core.policy import Consistency, OnQuotaFull, Policy, Retention, Schedule, Targets

REGION = "ap-guangzhou"
HOURLY = Schedule(every=timedelta(hours=1))


def policy(
    name: str = "p",
    *,
    ids: Sequence[str] = (),
    tags: Mapping[str, str] | None = None,
    exclude: Sequence[str] = (),
    regions: Sequence[str] = (REGION,),
    schedules: Sequence[Schedule] = (HOURLY,),
    retention: Retention | None = None,
    timezone: str = "UTC",
    on_quota_full: OnQuotaFull = "evict",
    consistency: Consistency = Consistency.LIVE,
    disks: DiskSelection | None = None,
    **keep: int,
) -> Policy:
    """A policy; ``keep`` counts (``keep_last=3``) build its retention when none is given."""
    if retention is None:
        retention = Retention(**keep) if keep else Retention(keep_last=1)
    elif keep:
        raise TypeError("give retention= or keep counts, not both")
    return Policy(
        name=name,
        regions=tuple(regions),
        targets=Targets(
            instance_ids=tuple(ids), tags=dict(tags or {}), exclude_instance_ids=tuple(exclude)
        ),
        schedules=tuple(schedules),
        retention=retention,
        timezone=timezone,
        on_quota_full=on_quota_full,
        consistency=consistency,
        disks=disks if disks is not None else DiskSelection(),
    )
