"""Durations as people write them in policies: ``90m``, ``6h``, ``7d``, ``2w``, ``1d12h``.

One parser and one formatter, so that ``every:``, ``jitter:``, ``keep_within:`` and
``catch_up:`` all accept the same spelling and every message prints it back the same way.
Calendar units (months, years) are deliberately absent: their length varies, and a
retention window must mean the same thing every day of the year.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS: dict[str, timedelta] = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
}
_PART = re.compile(r"(\d+)([wdhms])")
_WHOLE = re.compile(r"(?:\d+[wdhms])+")

DURATION_HELP = "a duration such as 30m, 6h, 7d, 2w or 1d12h (units: w d h m s)"

#: The longest duration any key accepts: ten years (520 weeks). Every duration is added to
#: or subtracted from a date somewhere (the next slot, the catch-up window, the oldest image
#: ``keep_within`` keeps, a deadline), and ``datetime`` stops at year 9999: an unbounded
#: value would be accepted here and crash later with ``OverflowError``. Bounding it at the
#: parser bounds every duration key at once.
MAX_DURATION = timedelta(weeks=520)
_MAX_DIGITS = 12  # longer numbers are over MAX_DURATION in any unit; never int() them


def parse_duration(text: str) -> timedelta:
    """Parse ``"1d12h"`` into a timedelta; raise ``ValueError`` saying what is allowed.

    Units may appear in any order but each at most once; the result must be positive and at
    most ``MAX_DURATION``.
    """
    compact = text.strip().lower().replace(" ", "")
    if not _WHOLE.fullmatch(compact):
        raise ValueError(f"{text!r} is not {DURATION_HELP}")
    total = timedelta()
    seen: set[str] = set()
    for number, unit in _PART.findall(compact):
        if unit in seen:
            raise ValueError(f"{text!r} names the unit {unit!r} twice")
        seen.add(unit)
        if len(number.lstrip("0")) > _MAX_DIGITS or int(number) > MAX_DURATION // _UNITS[unit]:
            raise ValueError(_too_long(text))
        total += int(number) * _UNITS[unit]
        if total > MAX_DURATION:
            raise ValueError(_too_long(text))
    if total <= timedelta():
        raise ValueError(f"{text!r} must be longer than zero")
    return total


def _too_long(text: str) -> str:
    return f"{text!r} is too long: at most {format_duration(MAX_DURATION)} (10 years)"


def format_duration(value: timedelta) -> str:
    """Format a timedelta the way ``parse_duration`` reads it: 36 hours is ``1d12h``."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0s" if seconds == 0 else "-" + format_duration(-value)
    parts: list[str] = []
    for unit in ("w", "d", "h", "m", "s"):
        size = int(_UNITS[unit].total_seconds())
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
