"""Read several regions at once under one overall deadline (for ``status`` and ``report``).

An operator's morning check must answer in bounded time even when the API endpoint is
silent: reading regions one after another, each call waiting for its own timeout and its
retries, took minutes (issue #17: 190 s). Each region is read in its own daemon thread;
whatever has not answered when the deadline passes is reported as unreadable ("no answer
within 20s"), and the command goes on. Daemon threads, so a call still blocked in the
SDK never keeps the process from exiting.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class RegionReads(Generic[T]):
    """What was read per region, and why each other region could not be."""

    read: dict[str, T] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)


def read_regions(
    regions: Sequence[str],
    read: Callable[[str], T],
    deadline_seconds: float,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> RegionReads[T]:
    """Call ``read(region)`` for every region in parallel; wait at most ``deadline_seconds``
    in total. Results keep the order of ``regions``.

    A ``CloudError`` (or any other exception: a bug must not hide the other regions) makes
    the region unreadable with its message; a region still running at the deadline is
    unreadable with "no answer within ...".
    """
    answers: queue.Queue[tuple[str, T | None, str | None]] = queue.Queue()

    def worker(region: str) -> None:
        try:
            answers.put((region, read(region), None))
        except Exception as error:  # a CloudError, or a bug: a sentence, never lost
            answers.put((region, None, f"cannot read the inventory: {error}"))

    for region in dict.fromkeys(regions):
        threading.Thread(target=worker, args=(region,), name=f"read-{region}", daemon=True).start()
    pending = set(regions)
    got: dict[str, T] = {}
    problems: dict[str, str] = {}
    end = clock() + max(0.0, deadline_seconds)
    while pending:
        remaining = end - clock()
        if remaining <= 0:
            break
        try:
            region, value, problem = answers.get(timeout=remaining)
        except queue.Empty:
            break
        pending.discard(region)
        if problem is not None:
            problems[region] = problem
        else:
            got[region] = value  # type: ignore[assignment]
    for region in pending:
        problems[region] = (
            f"cannot read the inventory: no answer within {deadline_seconds:g}s "
            "(the endpoint is silent or slow; see cloud.endpoint and cloud.timeout)"
        )
    ordered = list(dict.fromkeys(regions))
    return RegionReads(
        read={r: got[r] for r in ordered if r in got},
        unreadable={r: problems[r] for r in ordered if r in problems},
    )
