"""The cloud marker of an instance cvmkeeper stopped (rule 9 across hosts): its value.

Before cvmkeeper stops an instance (``stop_start``, ``restore --in-place``) or lets
``CreateImage`` power it off (``force_poweroff``), it tags the instance with
:data:`STOPPED_BY_TAG` through Tencent's Tag API, and removes the tag once the instance was
started again. Every run of every daemon reads the tag: a ``STOPPED`` instance whose
marker's lease has ended was left down by a run that died, and is started again; one
without the marker was stopped by a person and is left alone; one whose lease is still
live is being worked on by a peer and is left alone too.

The value is ``<stopped at>/<lease until>/<host>/<owner>``: two UTC times to the second
(``2026-12-03T18:00:00Z``), the host name (reduced to what a tag value may hold) and the
stopping process's owner token (the one of its local stop journal, so that a journal
entry and a marker can be told to be the same stop). This module is pure: values in,
values out; the executor reads the clock and talks to the cloud.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["STOPPED_BY_TAG", "StopMarker", "marker_value", "parse_marker"]

#: The tag key of the marker (a tag value holds at most 255 characters).
STOPPED_BY_TAG = "cvmkeeper:stopped-by"
_TIME = "%Y-%m-%dT%H:%M:%SZ"
_HOST_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_MAX_PART = 100


@dataclass(frozen=True, slots=True)
class StopMarker:
    """A parsed marker: who stopped the instance, when, and until when it is theirs."""

    stopped_at: datetime
    lease_until: datetime
    host: str
    owner: str

    def expired(self, now: datetime) -> bool:
        """True once the lease has ended (at ``lease_until`` exactly, too)."""
        return now >= self.lease_until

    def value(self) -> str:
        """The tag value of this marker."""
        return (
            f"{self.stopped_at.astimezone(UTC).strftime(_TIME)}/"
            f"{self.lease_until.astimezone(UTC).strftime(_TIME)}/{self.host}/{self.owner}"
        )


def marker_value(host: str, owner: str, now: datetime, lease: timedelta) -> StopMarker:
    """The marker a stop at ``now`` by ``owner`` on ``host`` puts, its lease ``lease`` long
    (whole seconds, rounded up, so that a stored lease never ends before the asked one)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if lease < timedelta(0):
        raise ValueError("a lease cannot be negative")
    start = now.astimezone(UTC).replace(microsecond=0)
    until = now.astimezone(UTC) + lease
    if until.microsecond:
        until = until.replace(microsecond=0) + timedelta(seconds=1)
    return StopMarker(start, until, _clean(host), _clean(owner))


def parse_marker(value: str) -> StopMarker | None:
    """The marker in a tag value; ``None`` when it is not one cvmkeeper wrote."""
    parts = value.split("/")
    if len(parts) != 4 or not all(parts):
        return None
    try:
        stopped_at = datetime.strptime(parts[0], _TIME).replace(tzinfo=UTC)
        lease_until = datetime.strptime(parts[1], _TIME).replace(tzinfo=UTC)
    except ValueError:
        return None
    return StopMarker(stopped_at, lease_until, parts[2], parts[3])


def _clean(text: str) -> str:
    """``text`` with what a tag value (and the ``/`` separator) cannot carry replaced."""
    return _HOST_CHARS.sub("-", text)[:_MAX_PART] or "unknown"
