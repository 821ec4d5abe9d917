"""A durable record of the instances cvmkeeper stopped and has not started again (rule 9).

:class:`~cvmkeeper.executor.consistency.InstanceStopper` remembers in memory which
instances it stopped, which survives every exception but not a ``SIGKILL``, an OOM kill or
a power cut between ``StopInstances`` and ``StartInstances``. Without more, the next run
finds the instance ``STOPPED``, takes it for one that was stopped before, images it as it
is and leaves it down. The cloud cannot tell us who stopped it, so this journal does.

The protocol, per instance:

1. :meth:`StopJournal.record` writes the entry (temporary file, ``fsync``, rename, ``fsync``
   of the directory) *before* ``StopInstances`` is sent. When it cannot be written the
   instance is not stopped at all: an instance cvmkeeper cannot promise to restart stays up
   and its slot fails with an error naming the file.
2. :meth:`StopJournal.clear` removes it once ``StartInstances`` was accepted. A failed
   start keeps it, so the next run tries again.
3. Every region run, before it plans, :meth:`StopJournal.claim` hands over the region's
   entries whose writer is gone (or that this process left behind after a failed start);
   the stopper starts those that are ``STOPPED`` (a warning says it recovered from an
   interrupted stop/start) and drops those that run again.

The file is ``stopped-instances.json`` in the config's ``state_dir``, shared by every
cvmkeeper process of the host (the daemon, a ``cvmkeeper run`` by hand). Writers change it
under an ``flock`` on ``stopped-instances.lock``. Each writing process also holds, for its
whole life, an ``flock`` on its own ``stopped-instances.<owner>.owner`` file: the kernel
drops that lock however the process dies, so another process can tell a dead writer (its
entries are recovered) from a live one still imaging the instance (left alone).

The journal is this host's fast path. Across hosts, the same stop is also marked in the
cloud (``executor.stop_markers``: a tag on the instance with a lease), so any daemon on
any host starts again an instance whose stopping host died, once the lease has ended.

Limits, stated in docs/operations.md ("Known limits") too:

- The journal is per host (``state_dir`` is local): another host learns of the stop only
  from the cloud marker, after its lease.
- The journal cannot tell our stop from a stop by hand that came after our crash: an
  instance that someone stops on purpose between the crashed run and the next run is
  started again by that run (the warning names it, the writer and the time of our stop).
  A live marker of another process on the instance (a peer stopped it anew) is left alone.
- Entries of a region no run covers any more stay in the file until one does.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cvmkeeper import files
from cvmkeeper.executor.json_record import JsonRecord

__all__ = ["JOURNAL_NAME", "StopJournal", "StoppedEntry", "owner_token"]

log = logging.getLogger(__name__)

JOURNAL_NAME = "stopped-instances.json"
LOCK_NAME = "stopped-instances.lock"
OWNER_PREFIX = "stopped-instances."
OWNER_SUFFIX = ".owner"
JOURNAL_VERSION = 1


@dataclass(frozen=True, slots=True)
class StoppedEntry:
    """One instance cvmkeeper stopped and has not yet seen started again."""

    region: str
    instance_id: str
    stopped_at: datetime
    owner: str  # the writing process's token (see the module docstring)
    pid: int
    host: str
    #: set for a stop found through its cloud marker (``executor.stop_markers``): when the
    #: stopping run's lease ended; ``None`` for an entry of this host's journal
    lease_until: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored for this entry."""
        return {
            "region": self.region,
            "instance_id": self.instance_id,
            "stopped_at": self.stopped_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "owner": self.owner,
            "pid": self.pid,
            "host": self.host,
        }

    @classmethod
    def from_json(cls, raw: Any) -> StoppedEntry | None:
        """Parse one stored entry; ``None`` when it is not in the expected shape."""
        if not isinstance(raw, dict):
            return None
        try:
            stopped_at = datetime.fromisoformat(str(raw["stopped_at"]).replace("Z", "+00:00"))
            return cls(
                region=str(raw["region"]),
                instance_id=str(raw["instance_id"]),
                stopped_at=stopped_at if stopped_at.tzinfo else stopped_at.replace(tzinfo=UTC),
                owner=str(raw["owner"]),
                pid=int(raw["pid"]),
                host=str(raw["host"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


class _Owner:
    """This process's owner token and the owner locks it holds (one per state_dir)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._pid = -1
        self._token = ""
        self._held: dict[Path, int] = {}

    def token(self) -> str:
        """The token of this process (a new one after a fork)."""
        with self._guard:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._token = f"{self._pid}-{uuid.uuid4().hex[:12]}"
                self._held = {}  # the parent's locks are not ours to count on
            return self._token

    def hold(self, directory: Path) -> None:
        """Lock this process's owner file in ``directory`` until the process ends."""
        token = self.token()
        with self._guard:
            if directory in self._held:
                return
            path = directory / f"{OWNER_PREFIX}{token}{OWNER_SUFFIX}"
            fd = files.open_fd(path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise
            self._held[directory] = fd


_OWNER = _Owner()


def owner_token() -> str:
    """This process's owner token (the one its journal entries and cloud markers carry)."""
    return _OWNER.token()


def _owner_alive(directory: Path, owner: str) -> bool:
    """True while the process that wrote ``owner``'s entries still runs."""
    path = directory / f"{OWNER_PREFIX}{owner}{OWNER_SUFFIX}"
    try:
        fd = files.open_fd(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if we got it
    return False


class StopJournal:
    """The stop journal in ``state_dir`` (see the module docstring).

    ``record`` raises ``OSError`` (the caller must then not stop the instance); ``clear``
    and ``claim`` log what they cannot do and never raise.
    """

    def __init__(
        self, state_dir: Path, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.directory = state_dir
        self.path = state_dir / JOURNAL_NAME
        self._file = JsonRecord(
            self.path, state_dir / LOCK_NAME, version=JOURNAL_VERSION, field="stopped", indent=2
        )
        self._clock = clock

    def record(self, region: str, instance_ids: Iterable[str]) -> None:
        """Durably note that this process is about to stop ``instance_ids`` in ``region``."""
        ids = sorted(set(instance_ids))
        if not ids:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._file.locked():
            _OWNER.hold(self.directory)
            entries = self._load()
            now = self._clock()
            for instance_id in ids:
                entries[(region, instance_id)] = StoppedEntry(
                    region, instance_id, now, _OWNER.token(), os.getpid(), socket.gethostname()
                )
            self._store(entries)

    def clear(self, region: str, instance_ids: Iterable[str]) -> None:
        """Forget this process's entries of ``instance_ids`` in ``region`` (started again, or
        gone). An entry another process wrote since (it stopped the instance anew) stays."""
        ids = set(instance_ids)
        if not ids or not self.path.exists():
            return
        mine = _OWNER.token()
        try:
            with self._file.locked():
                entries = self._load()
                kept = {
                    key: entry
                    for key, entry in entries.items()
                    if not (key[0] == region and key[1] in ids and entry.owner == mine)
                }
                if len(kept) != len(entries):
                    self._store(kept)
        except OSError as error:
            log.warning(
                "cannot clear %s in %s from %s: %s; the next run checks them again",
                ", ".join(sorted(ids)),
                region,
                self.path,
                error,
            )

    def claim(self, region: str) -> list[StoppedEntry]:
        """The entries of ``region`` that the caller must recover, made this process's own:
        those written by a process that is gone, and those this process left behind (a
        start that failed). Entries of a live writer are left to it."""
        if not self.path.exists():
            return []
        mine = _OWNER.token()
        try:
            with self._file.locked():
                entries = self._load()
                claimed = [
                    entry
                    for (where, _), entry in sorted(entries.items())
                    if where == region
                    and (entry.owner == mine or not _owner_alive(self.directory, entry.owner))
                ]
                if any(entry.owner != mine for entry in claimed):
                    _OWNER.hold(self.directory)
                    for entry in claimed:  # ours now: nobody else recovers them meanwhile
                        entries[(entry.region, entry.instance_id)] = replace(entry, owner=mine)
                    self._store(entries)
                self._forget_dead_owners({e.owner for e in entries.values()} | {mine})
        except OSError as error:
            log.warning("cannot read the stop journal %s: %s", self.path, error)
            return []
        return claimed

    # -- the file --------------------------------------------------------------------------

    def _load(self) -> dict[tuple[str, str], StoppedEntry]:
        try:
            raw = self._file.read()
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise OSError(f"{self.path}: not a cvmkeeper stop journal ({exc})") from None
        if not isinstance(raw, dict) or raw.get("version") != JOURNAL_VERSION:
            raise OSError(f"{self.path}: not a version {JOURNAL_VERSION} cvmkeeper stop journal")
        entries: dict[tuple[str, str], StoppedEntry] = {}
        for item in raw.get("stopped") or []:
            entry = StoppedEntry.from_json(item)
            if entry is not None:
                entries[(entry.region, entry.instance_id)] = entry
        return entries

    def _store(self, entries: dict[tuple[str, str], StoppedEntry]) -> None:
        self._file.write(entry.to_json() for _key, entry in sorted(entries.items()))

    def _forget_dead_owners(self, referenced: set[str]) -> None:
        """Remove owner files of processes that are gone and have no entry left."""
        for path in self.directory.glob(f"{OWNER_PREFIX}*{OWNER_SUFFIX}"):
            owner = path.name[len(OWNER_PREFIX) : -len(OWNER_SUFFIX)]
            if owner not in referenced and not _owner_alive(self.directory, owner):
                path.unlink(missing_ok=True)
