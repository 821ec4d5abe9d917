"""The images cvmkeeper created and has not yet seen whole: eventual consistency (issue #18).

DescribeImages may leave a just-created image out for a while, and list it without its
tags for a while longer (Terraform's tencentcloud provider polls for the first and says
tag attachment is asynchronous). Read naively, the first makes a new image look
"disappeared" and hides it from the quota arithmetic (a CreateImage could then be sent into
a quota that is full in truth); the second makes it look unmanaged, so rotation stops.

So every image a run creates or adopts is remembered (:class:`CreatedImages`), in memory
for the run, and in ``created-images.json`` in ``state_dir`` for the runs after it when the
run ends before it is listed with cvmkeeper's marker (the usual run sees it whole and
writes nothing). :func:`reconcile` applies both to a freshly read inventory:

- listed with the marker: seen whole; the entry is dropped.
- listed without any tags: ``Inventory.provisional`` (managed by its name, its creator and
  this record; never deleted on that basis: ``core.ownership.classify_image``).
- not listed, younger than the grace (``api.visibility_grace``): ``Inventory.unlisted``,
  counted against the quota.
- past the grace and not listed (*lost*): reported by the caller (an error; rule 7) and
  dropped, so it is reported once. Listed and still without tags past the grace: still
  provisional (kept, never deleted), and warned about by every run until its tags show
  (or someone deletes it).

A run killed between sending ``CreateImage`` and the end of the run (rule 6) never learns
or never stores the image's id, and the rerun, seconds later, would find the image listed
without its tags: unmanaged by the ordinary rules, so its name blocks the slot. So before
each ``CreateImage`` the run writes an *intent* (an entry with the name and no id) to the
file, and drops its own intents when it ends. An intent left by a killed run makes an
image listed by that name without tags provisional like an entry with its id; it is
dropped once an image of that name is listed with the marker.

An intent not listed yet is *live*: the create may have reached the cloud, and under a
listing lag the image may exist unlisted, so it counts as one used image of its region
(``Inventory.intents``, rule 2) and the planner sends no CreateImage under its name: a
rerun never sends a create into a quota that image filled. It *expires* once
``api.visibility_grace`` has passed since it was recorded (the intent's time is the killed
run's ``now``) with no image of its name listed: the cloud lists a new image within the
grace, so the create never reached it, or its image is lost. It is then dropped, stops
counting, and the caller warns once (``Reconciled.expired``): a warning, not an error,
because most often nothing was made (a kill before the send); the slot it was for was
already reported by the runs that skipped it while the intent was live (rule 7).

The record is an aid, not the truth (the cloud is): a file that cannot be read or written
is logged and the run goes on with what it has in memory. Writers change it under an
``flock`` on ``created-images.lock``; the file goes through ``files.write_atomically``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cvmkeeper.core.inventory import Image, Inventory
from cvmkeeper.core.ownership import looks_managed
from cvmkeeper.executor.json_record import JsonRecord

__all__ = [
    "RECORD_NAME",
    "CreatedEntry",
    "CreatedImages",
    "CreatedRecord",
    "Reconciled",
    "reconcile",
]

log = logging.getLogger(__name__)

RECORD_NAME = "created-images.json"
LOCK_NAME = "created-images.lock"
RECORD_VERSION = 1


@dataclass(frozen=True, slots=True)
class CreatedEntry:
    """One image cvmkeeper created (or adopted) and has not yet seen with its marker."""

    region: str
    #: empty for an intent: a ``CreateImage`` about to be sent, whose id is not known yet
    image_id: str
    name: str
    created_at: datetime

    @property
    def key(self) -> str:
        """What the record keys the entry by in its region: the id, or the intent's name."""
        return self.image_id or f"?{self.name}"

    def to_json(self) -> dict[str, str]:
        """The entry as the file holds it."""
        return {
            "region": self.region,
            "image_id": self.image_id,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_json(cls, raw: Any) -> CreatedEntry | None:
        """An entry from the file; ``None`` for one that is malformed (skipped)."""
        try:
            created = datetime.fromisoformat(str(raw["created_at"]))
            if created.tzinfo is None:
                return None
            return cls(str(raw["region"]), str(raw["image_id"]), str(raw["name"]), created)
        except (KeyError, TypeError, ValueError):
            return None


class CreatedRecord:
    """``created-images.json`` in ``state_dir``, shared by the processes of one host."""

    _threads = threading.Lock()

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / RECORD_NAME
        self._file = JsonRecord(
            self.path, state_dir / LOCK_NAME, version=RECORD_VERSION, field="images", indent=1
        )

    def add(self, entries: Iterable[CreatedEntry]) -> None:
        """Remember ``entries`` (a failure to write is logged, never raised)."""
        new = list(entries)
        if new:
            self._change(lambda held: {**held, **{(e.region, e.key): e for e in new}})

    def forget(self, region: str, keys: Iterable[str]) -> None:
        """Drop the entries of ``keys`` (``CreatedEntry.key``) in ``region``."""
        gone = {(region, key) for key in keys}
        if gone:
            self._change(lambda held: {k: v for k, v in held.items() if k not in gone})

    def entries(self, region: str) -> list[CreatedEntry]:
        """The entries of ``region`` (none when the file cannot be read)."""
        if not os.path.lexists(self.path):
            return []  # nothing recorded yet: no need to create state_dir to say so
        try:
            with self._locked():
                held = self._load()
        except OSError as error:
            log.warning("cannot read %s: %s", self.path, error)
            return []
        return [entry for (where, _), entry in held.items() if where == region]

    def _change(self, change: Any) -> None:
        try:
            with self._locked():
                self._store(change(self._load()))
        except OSError as error:
            log.warning("cannot update %s: %s", self.path, error)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._threads:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._file.locked():
                yield

    def _load(self) -> dict[tuple[str, str], CreatedEntry]:
        try:
            raw = self._file.read()
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError):
            log.warning("%s is not valid JSON; starting it again", self.path)
            return {}
        items = raw.get("images") if isinstance(raw, dict) else None
        entries = (CreatedEntry.from_json(item) for item in items or [])
        return {(e.region, e.key): e for e in entries if e is not None}

    def _store(self, held: dict[tuple[str, str], CreatedEntry]) -> None:
        self._file.write(e.to_json() for e in held.values())


@dataclass(frozen=True, slots=True)
class Reconciled:
    """An inventory with the record applied, and what the record says about it.

    ``seen``: entries now listed with the marker (drop them; expired intents too);
    ``lost``: never listed within the grace (the caller reports and drops them);
    ``untagged``: listed, still without tags after the grace (still provisional; the
    caller warns, and keeps them); ``expired``: intents past the grace with no image of
    their name listed (dropped with ``seen``; the caller warns once)."""

    inventory: Inventory
    seen: tuple[CreatedEntry, ...] = ()
    lost: tuple[CreatedEntry, ...] = ()
    untagged: tuple[CreatedEntry, ...] = ()
    expired: tuple[CreatedEntry, ...] = ()


def reconcile(
    inventory: Inventory, entries: Sequence[CreatedEntry], now: datetime, grace: timedelta
) -> Reconciled:
    """Apply the record of ``entries`` (this region's) to ``inventory`` at ``now``."""
    listed = {image.image_id: image for image in inventory.images}
    intents = _resolve_intents(inventory, entries, now, grace)
    entries = intents.resolved
    unlisted: list[str] = []
    provisional: set[str] = set()
    seen: list[CreatedEntry] = []
    lost: list[CreatedEntry] = []
    untagged: list[CreatedEntry] = []
    for entry in entries:
        image = listed.get(entry.image_id)
        young = now - entry.created_at <= grace
        if image is not None and looks_managed(image):
            seen.append(entry)
        elif image is not None and not image.tags:
            provisional.add(entry.image_id)  # ours by the record: kept, never deleted
            if not young:
                untagged.append(entry)
        elif image is not None:
            seen.append(entry)  # other tags, not ours: the ordinary rules decide (unmanaged)
        elif young:
            unlisted.append(entry.image_id)
        else:
            lost.append(entry)
    adjusted = replace(
        inventory,
        unlisted=tuple(dict.fromkeys(unlisted)),
        provisional=frozenset(provisional),
        intents=tuple(sorted({entry.name for entry in intents.live})),
    )
    settled = (*seen, *intents.settled, *intents.expired)
    return Reconciled(adjusted, settled, tuple(lost), tuple(untagged), intents.expired)


@dataclass(frozen=True, slots=True)
class _Intents:
    """The intents sorted by what the listing shows: ``settled`` (listed with tags: drop),
    ``expired`` (unlisted past the grace: drop and warn), ``live`` (unlisted within the
    grace: counted against the quota), and ``resolved``, the entries to reconcile by id."""

    resolved: list[CreatedEntry]
    settled: tuple[CreatedEntry, ...]
    expired: tuple[CreatedEntry, ...]
    live: tuple[CreatedEntry, ...]


def _resolve_intents(
    inventory: Inventory, entries: Sequence[CreatedEntry], now: datetime, grace: timedelta
) -> _Intents:
    """An intent whose name is listed stands for those images (by id, with the intent's
    time): provisional while untagged (the intent stays), settled once each shows tags.
    Unlisted, it is live while young (one used image: its id is unknown, its image may
    exist) and expired past the grace."""
    by_name: dict[str, list[Image]] = {}
    for image in inventory.images:
        by_name.setdefault(image.name, []).append(image)
    settled: list[CreatedEntry] = []
    expired: list[CreatedEntry] = []
    live: list[CreatedEntry] = []
    resolved: list[CreatedEntry] = []
    for entry in entries:
        if entry.image_id:
            resolved.append(entry)
            continue
        images = by_name.get(entry.name, [])
        resolved += [replace(entry, image_id=image.image_id) for image in images]
        if images and all(image.tags for image in images):
            settled.append(entry)  # seen with its tags (the marker, or not ours)
        elif not images and now - entry.created_at > grace:
            expired.append(entry)
        elif not images:
            live.append(entry)
    return _Intents(resolved, tuple(settled), tuple(expired), tuple(live))


class CreatedImages:
    """One region run's view of the images it created and has not yet seen whole: the
    entries of this run (in memory) and those earlier runs left in the record.

    Nothing is written unless something is left over: :meth:`flush` at the end of the run
    stores the entries still unseen, and :meth:`apply` forgets only entries that came from
    the record. ``writable`` is False for a dry run (the record is read, never changed).
    """

    def __init__(
        self,
        record: CreatedRecord | None,
        region: str,
        *,
        now: datetime,
        grace: timedelta,
        writable: bool,
    ) -> None:
        self._record = record if writable else None
        self._reader = record
        self._region = region
        self._now = now
        self._grace = grace
        self._here: dict[str, CreatedEntry] = {}
        self._stored: set[str] = set()
        self._intents: set[str] = set()  # the keys of this run's intents in the record

    def intend(self, name: str) -> None:
        """A ``CreateImage`` of ``name`` is about to be sent: written to the record at once,
        so that a rerun after a kill before :meth:`flush` recognises the image."""
        if self._record is None:
            return
        entry = CreatedEntry(self._region, "", name, self._now)
        self._record.add([entry])
        self._intents.add(entry.key)

    def remember(self, image_id: str, name: str) -> None:
        """An image this run created or adopted."""
        self._here[image_id] = CreatedEntry(self._region, image_id, name, self._now)

    def forget(self, image_ids: Iterable[str]) -> None:
        """Stop remembering ``image_ids`` (reported already)."""
        ids = list(image_ids)
        for image_id in ids:
            self._here.pop(image_id, None)
        stored = [key for key in ids if key in self._stored]
        if stored and self._record is not None:
            self._record.forget(self._region, stored)
            self._stored -= set(stored)

    def apply(self, inventory: Inventory) -> Reconciled:
        """:func:`reconcile` of ``inventory`` with every entry; what is settled (seen,
        lost) is forgotten. The caller reports the lost and warns about the untagged."""
        stored = self._reader.entries(self._region) if self._reader is not None else []
        # this run's own intents are not a killed run's: its answers are in ``_here``
        stored = [entry for entry in stored if entry.key not in self._intents]
        self._stored = {entry.key for entry in stored}
        entries = {entry.key: entry for entry in stored}
        entries.update(self._here)
        if not entries:
            return Reconciled(inventory)
        result = reconcile(inventory, list(entries.values()), self._now, self._grace)
        self.forget(e.key for e in (*result.seen, *result.lost))
        return result

    def flush(self) -> None:
        """Store this run's entries that are still unseen, for the runs after it, and drop
        its intents (the run ended: what it created is in those entries)."""
        if self._record is None:
            return
        if self._intents:
            self._record.forget(self._region, self._intents)
            self._intents = set()
        if self._here:
            self._record.add(self._here.values())
            self._stored |= set(self._here)
