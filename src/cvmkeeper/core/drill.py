"""Restore drills, pure: what a policy's ``drill:`` asks, which instances a run drills, and
whether a leftover drill instance may be terminated.

A backup never restored is a hope; a drill launches a throwaway instance from the newest
NORMAL image of a targeted instance, waits until it runs (and, if asked, until a TCP port
answers), records the time to ready, and terminates it. Cleanup must survive a crash of
the daemon and work across hosts, so drill instances carry their lease in the cloud:
:data:`DRILL_TAG` marks them and :data:`LEASE_TAG` says until when the drill that launched
them may still be running. :func:`may_terminate` is the one rule for a leftover: only an
instance carrying both tags, whose lease parses and has expired, is ever terminated by a
sweep; an instance without them is never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: Marks an instance launched by a drill (value: the policy).
DRILL_TAG = "cvmkeeper:drill"
#: Until when the drill that launched the instance may still need it (UTC, ``...Z``).
LEASE_TAG = "cvmkeeper:drill-lease-until"
#: Added to the drill's timeout to make its lease: time to terminate and report.
LEASE_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class DrillSpec:
    """A policy's ``drill:`` key. ``tcp_port`` 0: no check beyond ``RUNNING``."""

    every: timedelta
    zone: str
    subnet_id: str
    vpc_id: str
    security_group_ids: tuple[str, ...]
    instance_type: str
    tcp_port: int = 0
    timeout: timedelta = timedelta(minutes=15)
    max_per_run: int = 1

    @property
    def lease(self) -> timedelta:
        """How long a drill instance's lease lasts from its launch."""
        return self.timeout + LEASE_MARGIN


def lease_value(until: datetime) -> str:
    """The ``LEASE_TAG`` value for ``until`` (UTC, to the second)."""
    return until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_lease(value: str) -> datetime | None:
    """The time of a ``LEASE_TAG`` value, or ``None`` when it does not parse."""
    try:
        parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC)


def may_terminate(
    tags: Mapping[str, str], now: datetime, created: datetime | None
) -> tuple[bool, str]:
    """Whether a sweep may terminate an instance with ``tags``, made at ``created`` (its
    ``CreatedTime``), now, and why (or why not).

    The tags alone are not proof (anyone with tag rights writes them, and a console
    "create similar" or a tag policy copies them onto a new instance): a drill sets its
    lease at launch, so its instance was made before the lease ended. One made after (a copy
    of a drill instance's tags on a new instance), or whose ``CreatedTime`` the cloud does not
    say, is left alone; terminating it would take its data disks with it."""
    if DRILL_TAG not in tags:
        return False, "not a drill instance (no cvmkeeper:drill tag)"
    raw = tags.get(LEASE_TAG)
    if raw is None:
        return False, "drill instance without a lease tag: left alone"
    until = parse_lease(raw)
    if until is None:
        return False, f"lease {raw!r} does not parse: left alone"
    if until > now:
        return False, f"lease runs until {raw}: its drill may still be running"
    if created is None:
        return False, "no CreatedTime to check the lease against: left alone"
    if created > until:
        return False, (
            f"made at {lease_value(created)}, after its lease ended at {raw}: not launched "
            "by a drill (its tags were copied): left alone"
        )
    return True, f"drill lease expired at {raw}"


def drill_due(last: datetime | None, spec: DrillSpec, now: datetime) -> bool:
    """A drill is due when none ran yet or the last one is ``every`` old."""
    return last is None or now - last >= spec.every


def pick_instances(
    targeted: Sequence[str], last_drilled: Mapping[str, datetime], cap: int
) -> list[str]:
    """The instances a run drills: those drilled longest ago (never drilled first), at most
    ``cap``, so that successive runs walk the whole fleet."""
    epoch = datetime.min.replace(tzinfo=UTC)
    order = sorted(dict.fromkeys(targeted), key=lambda i: (last_drilled.get(i, epoch), i))
    return order[: max(0, cap)]


def expired(
    instances: Iterable[tuple[str, Mapping[str, str], datetime | None]], now: datetime
) -> list[str]:
    """The ids among (id, tags, created) that :func:`may_terminate` allows now."""
    return [i for i, tags, created in instances if may_terminate(tags, now, created)[0]]
