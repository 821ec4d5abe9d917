"""Pure values that describe what cvmkeeper tells Sentry, with no Sentry import.

A ``Failure`` is one failed (or worrying) step of a run; its tags and fingerprint are
computed here so that every alerter, the real one and the recording one, agrees on them.
The fingerprint is (policy, action, code): the same cause on the same policy is one Sentry
issue whose count grows, not a new issue per run.

A ``MonitorConfig`` is the Sentry Crons monitor of one policy, which cvmkeeper sends with
every check-in so that Sentry creates and updates the monitor itself (upsert).
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, Protocol

Level = Literal["error", "warning"]
IntervalUnit = Literal["minute", "hour", "day", "week", "month", "year"]

#: Sentry's limits on monitor slugs: lowercase letters, digits, ``-`` and ``_``, 50 at most.
MONITOR_SLUG_MAX_LENGTH = 50
#: Sentry truncates tag values longer than this; cvmkeeper cuts them itself, visibly.
TAG_VALUE_MAX_LENGTH = 200

_INTERVAL_UNITS: frozenset[str] = frozenset(("minute", "hour", "day", "week", "month", "year"))
_NOT_SLUG_CHARS = re.compile(r"[^a-z0-9_-]+")
_SLUG_HASH_LENGTH = 8


@dataclass(frozen=True)
class Failure:
    """One step of a run that went wrong (``error``) or needs a look (``warning``).

    ``instance``, ``region``, ``tencent_code`` and ``request_id`` are ``None`` when they do
    not apply (a region-wide quota warning has no instance; a local error has no request).
    ``extra`` holds further plain context (slot, image id, ...); ``exception`` is the
    exception behind the failure, if any, so the event carries its stack trace.
    ``group`` narrows the fingerprint further for failures that are not about one policy
    (a region short of quota is one issue per region, not one for all regions).
    """

    policy: str
    action: str
    message: str
    level: Level = "error"
    instance: str | None = None
    region: str | None = None
    tencent_code: str | None = None
    request_id: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    exception: BaseException | None = field(default=None, compare=False, repr=False)
    group: tuple[str, ...] = ()
    #: further Sentry tags (for a failure that stands for several policies or slots: their
    #: names and count), beside the fixed ones; never part of the fingerprint
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.level not in ("error", "warning"):
            raise ValueError(f"Failure.level must be 'error' or 'warning', not {self.level!r}")
        if not self.policy or not self.action:
            raise ValueError("Failure.policy and Failure.action must not be empty")


def failure_tags(failure: Failure) -> dict[str, str]:
    """The Sentry tags of ``failure``: only the ones that apply, values cut to Sentry's limit."""
    candidates = {
        "policy": failure.policy,
        "instance": failure.instance,
        "region": failure.region,
        "action": failure.action,
        "tencent_code": failure.tencent_code,
        "request_id": failure.request_id,
    }
    candidates.update({k: v for k, v in failure.tags.items() if k not in candidates})
    return {key: value[:TAG_VALUE_MAX_LENGTH] for key, value in candidates.items() if value}


def failure_fingerprint(failure: Failure) -> list[str]:
    """The Sentry fingerprint of ``failure``: (policy, action, code), so one cause is one issue.

    A failure without a Tencent error code (a local error, a warning) is grouped under
    ``-`` for its (policy, action); ``failure.group``, when given, is appended.
    """
    return [
        "cvmkeeper",
        failure.policy,
        failure.action,
        failure.tencent_code or "-",
        *failure.group,
    ]


@dataclass(frozen=True)
class MonitorConfig:
    """The Sentry Crons monitor of one policy.

    ``schedule`` is a standard 5-field crontab string (day of week 0 and 7 are Sunday, as
    Sentry reads it too) or an interval ``(value, unit)`` such as ``(6, "hour")``.
    ``checkin_margin`` and ``max_runtime`` are minutes. After ``failure_issue_threshold``
    consecutive failed or missed check-ins Sentry opens an issue; after
    ``recovery_threshold`` consecutive good ones it resolves it.
    """

    schedule: str | tuple[int, IntervalUnit]
    timezone: str = "UTC"
    checkin_margin: int = 5
    max_runtime: int = 60
    failure_issue_threshold: int = 1
    recovery_threshold: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.schedule, str):
            if len(self.schedule.split()) != 5:
                raise ValueError(
                    f"monitor schedule {self.schedule!r} is not a 5-field crontab string"
                )
        else:
            value, unit = self.schedule
            if value < 1 or unit not in _INTERVAL_UNITS:
                raise ValueError(
                    f"monitor interval {self.schedule!r} needs a value >= 1 and a unit in "
                    f"{sorted(_INTERVAL_UNITS)}"
                )
        for name in (
            "checkin_margin",
            "max_runtime",
            "failure_issue_threshold",
            "recovery_threshold",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"monitor {name} must be at least 1")

    def to_sentry(self) -> dict[str, Any]:
        """The ``monitor_config`` dictionary as Sentry's check-in API documents it."""
        schedule: dict[str, Any]
        if isinstance(self.schedule, str):
            schedule = {"type": "crontab", "value": " ".join(self.schedule.split())}
        else:
            value, unit = self.schedule
            schedule = {"type": "interval", "value": value, "unit": unit}
        return {
            "schedule": schedule,
            "timezone": self.timezone,
            "checkin_margin": self.checkin_margin,
            "max_runtime": self.max_runtime,
            "failure_issue_threshold": self.failure_issue_threshold,
            "recovery_threshold": self.recovery_threshold,
        }


class MonitorOptions(Protocol):
    """The monitor settings of the daemon config (``cvmkeeper.config.model.SentrySettings``)."""

    @property
    def checkin_margin(self) -> timedelta:
        """How late a check-in may arrive before the run counts as missed."""
        ...

    @property
    def max_runtime(self) -> timedelta:
        """How long a run may stay ``in_progress`` before it counts as failed."""
        ...

    @property
    def failure_issue_threshold(self) -> int:
        """Consecutive failed or missed runs before Sentry opens an issue."""
        ...

    @property
    def recovery_threshold(self) -> int:
        """Consecutive good runs before Sentry resolves it."""
        ...


def monitor_config_from(
    schedule: str | tuple[int, IntervalUnit], timezone: str, options: MonitorOptions
) -> MonitorConfig:
    """The monitor of one schedule, with margins from the config (rounded up to minutes)."""
    return MonitorConfig(
        schedule=schedule,
        timezone=timezone,
        checkin_margin=_whole_minutes(options.checkin_margin),
        max_runtime=_whole_minutes(options.max_runtime),
        failure_issue_threshold=options.failure_issue_threshold,
        recovery_threshold=options.recovery_threshold,
    )


def _whole_minutes(duration: timedelta) -> int:
    """``duration`` in minutes, rounded up, at least 1 (Sentry counts in whole minutes)."""
    return max(1, math.ceil(duration.total_seconds() / 60))


def monitor_slug(policy_name: str) -> str:
    """The Sentry Crons monitor slug of a policy: deterministic and valid for Sentry.

    A name that already is a valid slug (lowercase letters, digits, ``-``, ``_``, at most
    50 characters, not only digits) is used as it is, so the monitor is easy to find. Any
    other name is folded to ASCII, lowercased, its other characters replaced by ``-``,
    and given a short hash of the original name, so that two names that fold alike
    (``Web Prod`` and ``web-prod``) or share a long prefix still get different slugs.
    """
    if _is_plain_slug(policy_name):
        return policy_name
    ascii_name = (
        unicodedata.normalize("NFKD", policy_name).encode("ascii", "ignore").decode("ascii")
    )
    base = _NOT_SLUG_CHARS.sub("-", ascii_name.lower()).strip("-_")
    digest = hashlib.sha256(policy_name.encode("utf-8")).hexdigest()[:_SLUG_HASH_LENGTH]
    room = MONITOR_SLUG_MAX_LENGTH - _SLUG_HASH_LENGTH - 1
    base = base[:room].rstrip("-_") or "policy"
    return f"{base}-{digest}"


def _is_plain_slug(name: str) -> bool:
    """Whether ``name`` is already a valid Sentry monitor slug."""
    return (
        0 < len(name) <= MONITOR_SLUG_MAX_LENGTH
        and _NOT_SLUG_CHARS.search(name) is None
        and not name.isdigit()
    )
