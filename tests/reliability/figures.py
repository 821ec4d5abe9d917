"""The figures each reliability part prints at the end of the session.

Tests add to a part's counters (runs, faults injected, crashes, slots checked,
violations); ``conftest.pytest_terminal_summary`` prints one line per part, so the
numbers show in ``make test`` output whether or not ``-s`` is given.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

#: ``CVMKEEPER_RELIABILITY=long`` selects the long profile (``make reliability-long``).
PROFILE = "long" if os.environ.get("CVMKEEPER_RELIABILITY", "").lower() == "long" else "short"

PARTS: dict[str, str] = {
    "1": "invariant checker",
    "2": "faults",
    "3": "crashes",
    "4": "two daemons",
    "5": "a simulated year",
    "6": "bad input",
    "7": "secrets",
}

_FIGURES: dict[str, Counter[str]] = {part: Counter() for part in PARTS}
# every part reports these, even at zero, so a missing figure is visible
_ALWAYS = ("runs", "violations")


def sized(short: int, long: int) -> int:
    """``short`` in the short profile, ``long`` in the long one."""
    return long if PROFILE == "long" else short


def add(part: str, **counts: int) -> None:
    """Add ``counts`` to part ``part``'s figures."""
    _FIGURES[part].update({key: value for key, value in counts.items() if value})
    for key in _ALWAYS:
        _FIGURES[part].setdefault(key, 0)


def count_faults(state: Mapping[str, Any]) -> int:
    """How many faults the emulator injected in a state document: drawn faults of every
    kind (``injected``) and images that ended ``CREATEFAILED``."""
    drawn = sum(int(n) for n in state.get("injected", {}).values())
    failed = sum(1 for e in state.get("history", []) if e.get("to") == "CREATEFAILED")
    return drawn + failed


def lines() -> list[str]:
    """One summary line per part that ran."""
    out: list[str] = []
    for part, title in PARTS.items():
        figures = _FIGURES[part]
        if not figures:
            continue
        text = ", ".join(f"{key} {value}" for key, value in figures.items())
        out.append(f"reliability part {part} ({title}, {PROFILE} profile): {text}")
    return out
