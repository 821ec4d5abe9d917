"""Rule 7 for the reliability suite: which slots were due, and which an alert named.

``alerted_slots`` reads a ``RecordingAlerter``: the (region, instance, slot) of every error
alert that names them (the slot is the ``slot`` extra, ``2026-11-27T00:00Z``), and of every
slot a region's one alert for a cause lists (its ``missed_slots`` extra,
``executor.missed``: an unreadable region is one alert naming all its missed slots). A
region-wide alert that lists no slot counts for none: a missed slot must be named
(``emulator.invariants``' ``slot_missed_silently``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.emulator.invariants import DueKey
from cvmkeeper.executor.missed import missed_slots


def parse_slot(text: str) -> datetime:
    """``2026-11-27T00:00Z`` -> an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


def alerted_slots(alerter: RecordingAlerter) -> set[DueKey]:
    """Every (region, instance, slot) an error alert named."""
    named = {
        (f.region, f.instance, parse_slot(f.extra["slot"]))
        for f in alerter.errors
        if f.region and f.instance and f.extra.get("slot")
    }
    named |= {
        (f.region, instance, parse_slot(slot))
        for f in alerter.errors
        if f.region
        for _policy, instance, slot in missed_slots(f.extra)
    }
    return named


def due_keys(region: str, instances: Iterable[str], slot: datetime) -> list[DueKey]:
    """The due (region, instance, slot) of ``instances`` at one slot."""
    return [(region, instance, slot) for instance in instances]
