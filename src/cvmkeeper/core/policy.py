"""A policy as plain frozen values: which instances, when, how many to keep.

``cvmkeeper.config`` builds these from YAML after validating every key; everything after
that (schedule maths, retention, the planner) takes them as they are and never re-checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Literal

from cvmkeeper.core.disks import DiskSelection
from cvmkeeper.core.drill import DrillSpec
from cvmkeeper.core.durations import format_duration

OnQuotaFull = Literal["evict", "skip"]
ON_QUOTA_FULL_CHOICES: tuple[OnQuotaFull, ...] = ("evict", "skip")

MAX_SCHEDULES = 4
MIN_INTERVAL = timedelta(minutes=1)


class Consistency(StrEnum):
    """How the instance is treated while its image is made."""

    LIVE = "live"
    """Image a running instance (crash-consistent)."""
    FORCE_POWEROFF = "force_poweroff"
    """Let CreateImage power the instance off (``ForcePoweroff="true"``)."""
    STOP_START = "stop_start"
    """Stop the instance, image it, start it again (unless it was already stopped)."""


@dataclass(frozen=True, slots=True)
class Targets:
    """Which instances a policy backs up.

    An instance is targeted when its id is listed in ``instance_ids`` or it carries *all*
    of ``tags`` (when ``tags`` is not empty), and it is not in ``exclude_instance_ids``.
    """

    instance_ids: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    exclude_instance_ids: tuple[str, ...] = ()

    def selects(self, instance_id: str, instance_tags: Mapping[str, str]) -> bool:
        """True when an instance with this id and these tags is targeted."""
        if instance_id in self.exclude_instance_ids:
            return False
        if instance_id in self.instance_ids:
            return True
        return bool(self.tags) and all(
            instance_tags.get(key) == value for key, value in self.tags.items()
        )

    def describe(self) -> str:
        """``ins-6pb6lrmy, tag backup=daily, excluding ins-2kd9x0qa`` (for one-line summaries)."""
        parts = list(self.instance_ids)
        if self.tags:
            parts.append("tag " + ",".join(f"{k}={v}" for k, v in sorted(self.tags.items())))
        text = ", ".join(parts)
        if self.exclude_instance_ids:
            text += ", excluding " + ",".join(self.exclude_instance_ids)
        return text


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a policy fires: a crontab expression or a fixed interval, never both.

    ``cron`` has standard crontab meaning in ``timezone`` (day of week 0 and 7 are Sunday).
    ``every`` slots are whole multiples of the interval since 1970-01-01 00:00 UTC, so
    they never depend on when the daemon started. ``jitter`` delays the *run* by up to
    that much; the slot (and so the image name) stays the nominal time.
    """

    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"
    jitter: timedelta = timedelta()

    def describe(self) -> str:
        """A short human description: ``cron "0 2 * * *" (Asia/Shanghai)`` or ``every 6h``."""
        if self.cron is not None:
            text = f'cron "{self.cron}" ({self.timezone})'
        else:
            assert self.every is not None
            text = f"every {format_duration(self.every)}"
        if self.jitter:
            text += f" jitter {format_duration(self.jitter)}"
        return text


RETENTION_COUNT_RULES: tuple[str, ...] = (
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
)


@dataclass(frozen=True, slots=True)
class Retention:
    """How many images of one instance a policy keeps (docs/design.md "Retention")."""

    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within: timedelta | None = None
    min_keep: int = 1

    def counts(self) -> dict[str, int]:
        """The count rules by name (``keep_last`` .. ``keep_yearly``), zeros included."""
        return {rule: int(getattr(self, rule)) for rule in RETENTION_COUNT_RULES}

    @property
    def keeps_something(self) -> bool:
        """False for a retention with no rule at all (refused at load time)."""
        return any(self.counts().values()) or self.keep_within is not None


@dataclass(frozen=True, slots=True)
class CopyRule:
    """Copy every image of the policy to ``region`` and keep the copies by ``retention``.

    The copies are retained in ``region`` independently of the source images (deleting
    or rotating a source never deletes its copies); ``retention`` defaults to the policy's
    own retention and is bucketed in the policy's timezone.
    """

    region: str
    retention: Retention


@dataclass(frozen=True, slots=True)
class Policy:
    """One policy file, validated.

    ``timezone`` buckets the retention rules (days, weeks ... in that zone); it defaults
    to the first schedule's timezone. ``catch_up`` is how old a missed latest slot may be
    and still be made on start or reload (zero disables catch-up). ``copies`` are the
    regions each image is copied to for disaster recovery (``SyncImages``), each with
    the retention of its copies. ``source`` is the file the policy came from, for messages.
    ``disks`` says which disks its images hold (``core.disks``; default: the whole machine).
    """

    name: str
    regions: tuple[str, ...]
    targets: Targets
    schedules: tuple[Schedule, ...]
    retention: Retention
    timezone: str = "UTC"
    consistency: Consistency = Consistency.LIVE
    catch_up: timedelta = timedelta(days=1)
    copies: tuple[CopyRule, ...] = ()
    on_quota_full: OnQuotaFull = "evict"
    description: str = ""
    source: str = ""
    disks: DiskSelection = field(default_factory=DiskSelection)
    #: a periodic restore drill (``core.drill``; policy key ``drill``); None: off
    drill: DrillSpec | None = None

    @staticmethod
    def disks_default() -> DiskSelection:
        """The ``disks`` of a policy that does not say: the whole machine."""
        return DiskSelection()

    def copy_to(self, region: str) -> CopyRule | None:
        """The copy rule of destination ``region``, or ``None`` when nothing is copied there."""
        return next((rule for rule in self.copies if rule.region == region), None)
