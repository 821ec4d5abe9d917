"""Fire-time maths: when a schedule's slots fall, in UTC, with crontab and DST meaning.

Crontab strings are parsed here (standard meaning: day of week 0 and 7 are Sunday, names
such as ``mon-fri``, day-of-month and day-of-week OR-ed when both are restricted) into
explicit field sets, whose *wall clock* times are walked here day by day (standard library
only: the pure core never imports the scheduler library; the APScheduler trigger that fires
these slots lives in ``cvmkeeper.scheduler.trigger``). The mapping from wall clock to UTC
is done here, the way cron does it (docs/design.md, "Scheduling"):

- a wall time that does not exist (spring forward) fires once, at the end of the gap;
- a wall time that occurs twice (fall back) fires once, the first time.

Slots are aware UTC datetimes on a whole minute. ``every:`` schedules are multiples of
the interval since the Unix epoch, so a restart never moves them. Nothing here reads the
clock: every function takes the moment it reasons about.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cvmkeeper.core.policy import Policy, Schedule

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
_ONE_DAY = timedelta(days=1)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
_ELEMENT = re.compile(r"(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?")

CRON_HELP = (
    'five fields "minute hour day-of-month month day-of-week" (e.g. "0 2 * * *", '
    '"*/15 8-18 * * mon-fri") or one of @hourly @daily @weekly @monthly @yearly'
)


class CronError(ValueError):
    """A crontab expression that cvmkeeper cannot accept; the message says why."""


@dataclass(frozen=True, slots=True)
class CronFields:
    """A parsed crontab expression as explicit sets (day of week: 0 = Sunday .. 6)."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_or: bool
    """True when both day fields are restricted: a day matches if *either* does."""

    def day_matches(self, day: date) -> bool:
        """True when the crontab's day, month and weekday fields accept ``day``."""
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        return (in_days or in_weekdays) if self.day_or else (in_days and in_weekdays)

    def times_of_day(self) -> list[int]:
        """Minutes after midnight at which a matching day fires, ascending."""
        return sorted(h * 60 + m for h in self.hours for m in self.minutes)


def _parse_value(text: str, names: Sequence[str] | None, low: int, high: int, what: str) -> int:
    if text.isdigit():
        value = int(text)
    elif names is not None and text in names:
        value = names.index(text) + (low if names is _MONTH_NAMES else 0)
    else:
        raise CronError(f"{what}: {text!r} is not a number{' or name' if names else ''}")
    if not low <= value <= high:
        raise CronError(f"{what}: {value} is outside {low}-{high}")
    return value


def _parse_field(
    text: str, what: str, low: int, high: int, names: Sequence[str] | None
) -> set[int]:
    values: set[int] = set()
    for element in text.split(","):
        match = _ELEMENT.fullmatch(element)
        if match is None:
            raise CronError(f"{what}: {element!r} is not a value, range, list or step")
        step = int(match.group("step")) if match.group("step") else 1
        if step < 1:
            raise CronError(f"{what}: step in {element!r} must be at least 1")
        part = match.group("range")
        if part == "*":
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-")
            start = _parse_value(first, names, low, high, what)
            end = _parse_value(last, names, low, high, what)
            if names is _DOW_NAMES and last == "sun" and start > 0:
                end = 7  # "sat-sun" and "fri-sun" mean what they say
            if start > end:
                raise CronError(f"{what}: range {element!r} runs backwards")
        else:
            start = _parse_value(part, names, low, high, what)
            end = high if match.group("step") else start
        values.update(range(start, end + 1, step))
    return values


@functools.lru_cache(maxsize=512)
def parse_cron(expression: str) -> CronFields:
    """Parse a crontab expression; raise ``CronError`` naming the field that is wrong.

    Accepts numbers, names (``jan``, ``mon``), ranges, lists, steps and the @-macros;
    refuses the non-standard ``L``, ``W``, ``#``, ``?`` and a seconds field, and any
    expression that can never fire (``0 0 30 2 *``).
    """
    text = expression.strip().lower()
    text = _MACROS.get(text, text)
    if text.startswith("@"):
        raise CronError(f"{expression!r}: unknown macro; expected {CRON_HELP}")
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"{expression!r} has {len(parts)} fields; expected {CRON_HELP}")
    minute, hour, day, month, weekday = parts
    minutes = _parse_field(minute, "minute", 0, 59, None)
    hours = _parse_field(hour, "hour", 0, 23, None)
    days = _parse_field(day, "day of month", 1, 31, None)
    months = _parse_field(month, "month", 1, 12, _MONTH_NAMES)
    weekdays = {d % 7 for d in _parse_field(weekday, "day of week", 0, 7, _DOW_NAMES)}
    day_or = not day.startswith("*") and not weekday.startswith("*")
    fields = CronFields(
        expression=expression.strip(),
        minutes=frozenset(minutes),
        hours=frozenset(hours),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(weekdays),
        day_or=day_or,
    )
    if not day_or and min(days) > max(_DAYS_IN_MONTH[m - 1] for m in months):
        raise CronError(f"{expression!r} never fires: no chosen month has day {min(days)}")
    return fields


def zone(name: str) -> tzinfo:
    """The ``ZoneInfo`` for an IANA name; ``ValueError`` with a clear message if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as exc:
        raise ValueError(
            f"unknown timezone {name!r} (use an IANA name such as Asia/Shanghai)"
        ) from exc


def check_schedule(schedule: Schedule) -> None:
    """Raise ``ValueError`` if the schedule cannot be used (bad cron, zone, interval, jitter)."""
    zone(schedule.timezone)
    if (schedule.cron is None) == (schedule.every is None):
        raise ValueError("a schedule has exactly one of cron or every")
    if schedule.cron is not None:
        parse_cron(schedule.cron)
    elif schedule.every is not None and (schedule.every < MINUTE or schedule.every % MINUTE):
        raise ValueError("every must be a whole number of minutes, at least 1m")
    if schedule.jitter and schedule.jitter >= shortest_gap(schedule):
        raise ValueError("jitter must be shorter than the shortest gap between two slots")


# --- wall clock to UTC ---------------------------------------------------------------------


def _to_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def wall_to_utc(wall: datetime, tz: tzinfo) -> datetime:
    """Map a naive wall-clock time in ``tz`` to its UTC slot, the way cron fires.

    An ambiguous wall time maps to its first occurrence; a wall time inside a DST gap
    maps to the end of the gap (the first instant after the clocks jump).
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return _to_minute(first)
    # Inside a gap: fold=1 uses the offset after the jump (an earlier instant), fold=0 the
    # one before (a later instant). The jump lies between them; find its minute.
    low = _to_minute(wall.replace(tzinfo=tz, fold=1).astimezone(UTC))
    high = _to_minute(first) + MINUTE
    while high - low > MINUTE:
        middle = low + ((high - low) // MINUTE // 2) * MINUTE
        if middle.astimezone(tz).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return high


@functools.lru_cache(maxsize=512)
def _times_of_day(fields: CronFields) -> tuple[int, ...]:
    return tuple(fields.times_of_day())


def _next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def _wall_times(fields: CronFields, start: datetime) -> Iterator[datetime]:
    """Naive wall-clock times matching ``fields``, ascending, from ``start`` (inclusive).

    Walks the calendar day by day (a month the expression excludes is skipped whole) and
    yields the expression's times of day on each matching day; ends at ``date.max``.
    """
    times = _times_of_day(fields)
    day = start.date()
    first = start.hour * 60 + start.minute
    while True:
        if day.month not in fields.months:
            if day.year == date.max.year and day.month == 12:
                return
            day, first = _next_month(day), 0
            continue
        if fields.day_matches(day):
            for minutes in times:
                if minutes >= first:
                    yield datetime(day.year, day.month, day.day, minutes // 60, minutes % 60)
        if day == date.max:
            return
        day, first = day + _ONE_DAY, 0


# --- slots ---------------------------------------------------------------------------------


def iter_slots(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """All slots of ``schedule`` strictly after ``after`` (aware), ascending, without end."""
    after = after.astimezone(UTC)
    if schedule.every is not None:
        step = schedule.every
        index = (after - EPOCH) // step + 1
        while True:
            yield EPOCH + index * step
            index += 1
    assert schedule.cron is not None
    tz = zone(schedule.timezone)
    fields = parse_cron(schedule.cron)
    start = _to_minute(after.astimezone(tz).replace(tzinfo=None))
    previous: datetime | None = None
    for wall in _wall_times(fields, start):
        slot = wall_to_utc(wall, tz)
        if slot > after and slot != previous:
            previous = slot
            yield slot


def next_slots(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` slots strictly after ``after``, in UTC, ascending."""
    slots: list[datetime] = []
    for slot in iter_slots(schedule, after):
        if len(slots) >= count:
            break
        slots.append(slot)
    return slots


_LOOKBACK = (
    timedelta(hours=2),
    timedelta(days=2),
    timedelta(days=9),
    timedelta(days=63),
    timedelta(days=370),
    timedelta(days=8 * 366 + 2),
)


def latest_slot(schedule: Schedule, at: datetime) -> datetime | None:
    """The most recent slot at or before ``at`` (``None`` only for a schedule never firing).

    This is "the current slot" of a run and the slot catch-up looks for.
    """
    at = at.astimezone(UTC)
    if schedule.every is not None:
        return EPOCH + ((at - EPOCH) // schedule.every) * schedule.every
    for window in _LOOKBACK:
        found: datetime | None = None
        for slot in iter_slots(schedule, at - window):
            if slot > at:
                break
            found = slot
        if found is not None:
            return found
    return None


def iter_policy_slots(policy: Policy, after: datetime) -> Iterator[datetime]:
    """All slots of all of a policy's schedules after ``after``, merged, each once."""
    previous: datetime | None = None
    for slot in heapq.merge(*(iter_slots(s, after) for s in policy.schedules)):
        if slot != previous:
            previous = slot
            yield slot


def next_policy_slots(policy: Policy, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` slots of a policy (all schedules merged), strictly after ``after``."""
    slots: list[datetime] = []
    for slot in iter_policy_slots(policy, after):
        if len(slots) >= count:
            break
        slots.append(slot)
    return slots


def latest_policy_slot(policy: Policy, at: datetime) -> datetime | None:
    """The most recent slot of any of the policy's schedules at or before ``at``."""
    candidates = [s for s in (latest_slot(x, at) for x in policy.schedules) if s is not None]
    return max(candidates, default=None)


# --- periods -------------------------------------------------------------------------------

_SAMPLE_START = date(2001, 1, 1)
_SAMPLE_DAYS = (date(2034, 1, 1) - _SAMPLE_START).days  # > one 28-year calendar cycle


@functools.lru_cache(maxsize=512)
def _cron_gaps(expression: str) -> tuple[timedelta, timedelta]:
    fields = parse_cron(expression)
    matching = [
        ordinal
        for ordinal in range(_SAMPLE_START.toordinal(), _SAMPLE_START.toordinal() + _SAMPLE_DAYS)
        if fields.day_matches(date.fromordinal(ordinal))
    ]
    times = fields.times_of_day()
    within = [b - a for a, b in itertools.pairwise(times)]
    day_gaps = [b - a for a, b in itertools.pairwise(matching)] or [366 * 4]
    wrap = times[0] - times[-1]
    across = [min(day_gaps) * 1440 + wrap, max(day_gaps) * 1440 + wrap]
    shortest = min([*within, across[0]])
    longest = max([*within, across[1]])
    return timedelta(minutes=shortest), timedelta(minutes=longest)


def period(schedule: Schedule) -> timedelta:
    """The nominal interval: the longest wall-clock gap between two consecutive slots.

    ``every: 6h`` is 6h; ``0 2 * * *`` is 1d; ``0 2 * * mon-fri`` is 3d (Friday to Monday).
    Used as the default catch-up window and for freshness checks.
    """
    if schedule.every is not None:
        return schedule.every
    assert schedule.cron is not None
    return _cron_gaps(schedule.cron)[1]


def shortest_gap(schedule: Schedule) -> timedelta:
    """The shortest wall-clock gap between two consecutive slots (bounds jitter)."""
    if schedule.every is not None:
        return schedule.every
    assert schedule.cron is not None
    return _cron_gaps(schedule.cron)[0]


def policy_period(policy: Policy) -> timedelta:
    """An upper bound of the wait between two slots of a policy: its shortest period."""
    return min(period(s) for s in policy.schedules)
