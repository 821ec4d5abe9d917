"""Every policy's state at a moment, for ``plan``: due, not due (and why), or named.

``plan`` used to show only the regions and slots a run would make, so a policy that was
not due simply did not appear, and an operator could not tell "not due" from "forgotten"
(issue #17). Each policy now appears with its state, from the same catch-up rule the run
uses (``core.due``): its latest slot, the catch-up window, and the next slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cvmkeeper.config import Setup
from cvmkeeper.core.due import catch_up_window
from cvmkeeper.core.durations import format_duration
from cvmkeeper.core.schedule import latest_policy_slot, next_policy_slots


@dataclass(frozen=True)
class PolicyState:
    """One policy at ``now``: ``due``, ``not_due`` or ``named`` (--policy makes it anyway)."""

    name: str
    state: str
    latest_slot: datetime | None
    next_slot: datetime | None
    catch_up_seconds: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The JSON form (times as datetimes; ``print_json`` writes them as UTC ``...Z``)."""
        return {
            "name": self.name,
            "state": self.state,
            "latest_slot": self.latest_slot,
            "next_slot": self.next_slot,
            "catch_up_seconds": self.catch_up_seconds,
            "reason": self.reason,
        }


def _t(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def policy_states(
    setup: Setup, now: datetime, named: Sequence[str] = (), regions: Sequence[str] = ()
) -> list[PolicyState]:
    """The state of every policy (those in ``regions`` when given), in config order."""
    states = []
    for policy in setup.policies:
        if regions and not any(region in regions for region in policy.regions):
            continue
        if named and policy.name not in named:
            continue
        latest = latest_policy_slot(policy, now)
        upcoming = next_policy_slots(policy, now, 1)
        window = catch_up_window(policy)
        following = f"; next slot {_t(upcoming[0])}" if upcoming else "; no next slot"
        if policy.name in named:
            state = "named"
            reason = (
                f"named with --policy: its latest slot "
                f"{_t(latest) if latest else '(none yet)'} is planned even if not due"
            )
        elif latest is None:
            state, reason = "not_due", "no slot yet"
        elif now - latest < window:
            state = "due"
            reason = f"slot {_t(latest)} is within its catch-up window ({format_duration(window)})"
        else:
            state = "not_due"
            reason = (
                f"latest slot {_t(latest)} is older than its catch-up window "
                f"({format_duration(window)})"
            )
        states.append(
            PolicyState(
                policy.name,
                state,
                latest,
                upcoming[0] if upcoming else None,
                int(window.total_seconds()),
                reason + following,
            )
        )
    return states


def policy_state_lines(states: Sequence[PolicyState]) -> list[str]:
    """``policies:`` then one line per policy."""
    words = {"due": "due", "not_due": "not due", "named": "planned"}
    return ["policies:"] + [f"  {s.name}: {words[s.state]}: {s.reason}" for s in states]
