"""Retention: which images of one instance set to keep, and why (docs/design.md "Retention").

One pure function, ``decide``, in the spirit of restic's snapshot policy: it takes the
instance set's images and the keep rules of every policy that targets the instance, and
returns one ``Decision`` per image with every reason that keeps it (or the reason it goes).

- Rules of several policies are OR-ed; each is bucketed in its own policy's timezone.
- Bucket rules (hourly .. yearly) keep the newest image of each of the N most recent
  buckets that have an image; weeks are ISO weeks (ISO year + week number).
- ``keep_within`` is measured from the newest image, not from now.
- The newest usable image is always kept; ``min_keep`` keeps more of the newest.
- Pinned images are always kept and are not counted by the rules.
- ``CREATEFAILED`` images are deleted ("clean up"); images still in flight are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from cvmkeeper.core.durations import format_duration
from cvmkeeper.core.inventory import ImageState
from cvmkeeper.core.policy import Retention
from cvmkeeper.core.schedule import zone


@dataclass(frozen=True, slots=True)
class Backup:
    """One managed image as retention sees it. ``slot`` is the aware UTC slot of its name."""

    image_id: str
    slot: datetime
    state: ImageState
    pinned: bool = False
    hold: str = ""  # the reason a pinned backup is kept, when it is not the pin tag


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The keep rules of one policy, with the timezone its buckets are taken in."""

    retention: Retention
    timezone: str = "UTC"
    policy: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """Keep or delete one image, with every reason (``keep_daily #3 (2026-11-25)``, ``expired``)."""

    image_id: str
    keep: bool
    reasons: tuple[str, ...]


_Bucket = Callable[[datetime], tuple[Hashable, str]]


def _hourly(local: datetime) -> tuple[Hashable, str]:
    # The UTC offset separates the two 01:00 hours of a fall-back night.
    return (local.date(), local.hour, local.utcoffset()), f"{local:%Y-%m-%d %H}:00"


def _daily(local: datetime) -> tuple[Hashable, str]:
    return local.date(), f"{local:%Y-%m-%d}"


def _weekly(local: datetime) -> tuple[Hashable, str]:
    year, week, _ = local.isocalendar()
    return (year, week), f"{year}-W{week:02d}"


def _monthly(local: datetime) -> tuple[Hashable, str]:
    return (local.year, local.month), f"{local:%Y-%m}"


def _yearly(local: datetime) -> tuple[Hashable, str]:
    return local.year, f"{local:%Y}"


BUCKET_RULES: tuple[tuple[str, _Bucket], ...] = (
    ("keep_hourly", _hourly),
    ("keep_daily", _daily),
    ("keep_weekly", _weekly),
    ("keep_monthly", _monthly),
    ("keep_yearly", _yearly),
)


def _apply_rules(
    rules: RuleSet, newest_first: Sequence[Backup], prefix: str, reasons: dict[str, list[str]]
) -> None:
    retention = rules.retention
    tz: tzinfo = zone(rules.timezone)
    for index, backup in enumerate(newest_first[: retention.keep_last], start=1):
        reasons[backup.image_id].append(f"{prefix}keep_last #{index}")
    local_times = [backup.slot.astimezone(tz) for backup in newest_first]
    for rule, bucket_of in BUCKET_RULES:
        wanted = int(getattr(retention, rule))
        kept = 0
        last_bucket: Hashable = None
        for backup, local in zip(newest_first, local_times, strict=True):
            if kept >= wanted:
                break
            bucket, label = bucket_of(local)
            if kept and bucket == last_bucket:
                continue
            kept += 1
            last_bucket = bucket
            reasons[backup.image_id].append(f"{prefix}{rule} #{kept} ({label})")
    if retention.keep_within is not None and newest_first:
        horizon = newest_first[0].slot - retention.keep_within
        reason = f"{prefix}keep_within {format_duration(retention.keep_within)}"
        for backup in newest_first:
            if backup.slot <= horizon:
                break
            reasons[backup.image_id].append(reason)


def decide(backups: Sequence[Backup], rules: Sequence[RuleSet]) -> list[Decision]:
    """Decide the fate of every image of one instance set; one ``Decision`` per backup.

    ``rules`` holds one ``RuleSet`` per policy targeting the instance. With no rules at all
    (an orphan) every image is kept. Decisions come back newest first (by slot, then id).
    Reasons of several policies are prefixed with the policy name.
    """
    ordered = sorted(backups, key=lambda b: (b.slot, b.image_id), reverse=True)
    reasons: dict[str, list[str]] = {b.image_id: [] for b in ordered}
    deletable: set[str] = set()
    usable = [b for b in ordered if b.state.usable]
    counted = [b for b in usable if not b.pinned]

    for backup in ordered:
        if backup.pinned:
            reasons[backup.image_id].append(backup.hold or "pinned")
        elif backup.state is ImageState.CREATEFAILED:
            deletable.add(backup.image_id)
        elif not backup.state.usable:
            reasons[backup.image_id].append(f"{backup.state.value}: left alone")
    if usable:
        reasons[usable[0].image_id].append("newest NORMAL")

    if not rules:
        for backup in counted:
            reasons[backup.image_id].append("no policy targets this instance")
    named = len(rules) > 1
    for rule_set in rules:
        prefix = f"{rule_set.policy}: " if named and rule_set.policy else ""
        _apply_rules(rule_set, counted, prefix, reasons)
    min_keep = max((r.retention.min_keep for r in rules), default=1)
    for backup in counted[:min_keep]:
        if not reasons[backup.image_id]:
            reasons[backup.image_id].append("min_keep")

    decisions: list[Decision] = []
    for backup in ordered:
        kept_by = reasons[backup.image_id]
        if kept_by:
            decisions.append(Decision(backup.image_id, True, tuple(kept_by)))
        elif backup.image_id in deletable:
            decisions.append(Decision(backup.image_id, False, ("CREATEFAILED: clean up",)))
        else:
            decisions.append(Decision(backup.image_id, False, ("expired",)))
    return decisions
