"""The daemon's small state file: the last run of each policy, for ``cvmkeeper status``.

The cloud is the source of truth for images; this file only remembers what the daemon did
last (when, which slot, the result, the errors), so that an administrator can ask without
reading the journal. It lives in the config's ``state_dir`` (systemd's ``StateDirectory=``)
as ``daemon-state.json`` and is always replaced whole: written to a temporary file in the
same directory, flushed, then renamed over the old one (``files.write_atomically``), so a
reader or a crash never sees half a file.

It never holds a secret: error texts pass through ``cvmkeeper.logs.redact`` (the same rules
as log lines) before they are stored, and are cut to a bounded length and count.

Layout (version 1)::

    {"version": 1, "updated": "2026-11-27T18:00:41Z", "pid": 4242,
     "policies": {"web-daily": {"kind": "scheduled", "slot": "2026-11-27T18:00:00Z",
                                "started": "...", "finished": "...", "result": "ok",
                                "errors": [], "warnings": []}},
     "broken_policy_files": [{"file": "policies/weekly.yaml", "policy": "weekly",
                              "old_version_kept": false, "problems": ["...:5:3: ..."]}],
     "notification_failures": {"webhook": {"time": "2026-11-27T18:00:44Z",
                                           "reason": "error event failed ...: HTTP 500"}}}

``broken_policy_files`` (issue #19) lists the policy files the daemon runs without, as of
its last start or reload, so that ``status`` on the host and the metrics show them even
after the file on disk changed; an older file without the key reads as none.

``notification_failures`` (issue #17) holds, per notification channel (``webhook``,
``apprise``, ``healthchecks``; never its URL), the last delivery that failed, until a
delivery on that channel succeeds again: a dead webhook shows in ``status``, not only in
the journal. The reason is redacted like every other text here.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cvmkeeper import files
from cvmkeeper.config import BrokenPolicy
from cvmkeeper.logs import redact

__all__ = [
    "STATE_FILE_NAME",
    "BrokenFileRecord",
    "DaemonState",
    "NotificationFailure",
    "PolicyRun",
    "RunResult",
    "StateStore",
    "read_state",
]

log = logging.getLogger(__name__)

STATE_FILE_NAME = "daemon-state.json"
STATE_VERSION = 1
#: At most this many error (and warning) texts are kept per policy, each cut to MAX_TEXT.
MAX_MESSAGES = 20
MAX_TEXT = 500

RunResult = Literal["ok", "failed", "stopped"]
RunKind = Literal["scheduled", "catch-up"]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def safe_messages(messages: Iterable[object]) -> tuple[str, ...]:
    """``messages`` as stored: text, redacted, one line, cut to MAX_TEXT, at most MAX_MESSAGES."""
    texts: list[str] = []
    for message in messages:
        if len(texts) >= MAX_MESSAGES:
            break
        text = " ".join(redact(str(message)).split())
        texts.append(text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…")
    return tuple(texts)


@dataclass(frozen=True, slots=True)
class PolicyRun:
    """The last run of one policy: what slot, when, how it ended and why."""

    kind: RunKind
    slot: datetime | None
    started: datetime
    finished: datetime
    result: RunResult
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored for this run."""
        return {
            "kind": self.kind,
            "slot": _iso(self.slot) if self.slot else None,
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "result": self.result,
            "errors": list(safe_messages(self.errors)),
            "warnings": list(safe_messages(self.warnings)),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PolicyRun | None:
        """Parse one stored run; ``None`` when it is not in the expected shape."""
        started = _parse_iso(raw.get("started"))
        finished = _parse_iso(raw.get("finished"))
        result = raw.get("result")
        kind = raw.get("kind", "scheduled")
        if started is None or finished is None or result not in ("ok", "failed", "stopped"):
            return None
        if kind not in ("scheduled", "catch-up"):
            return None
        errors = raw.get("errors") or []
        warnings = raw.get("warnings") or []
        return cls(
            kind=kind,
            slot=_parse_iso(raw.get("slot")),
            started=started,
            finished=finished,
            result=result,
            errors=tuple(str(e) for e in errors) if isinstance(errors, list) else (),
            warnings=tuple(str(w) for w in warnings) if isinstance(warnings, list) else (),
        )


@dataclass(frozen=True, slots=True)
class BrokenFileRecord:
    """A policy file the daemon runs without: the policy it declares, whether the old
    version of that policy stands in (else its images are held), its problems as text."""

    file: str
    policy: str | None
    old_version_kept: bool
    problems: tuple[str, ...]

    @classmethod
    def of(cls, broken: BrokenPolicy) -> BrokenFileRecord:
        """The record of a broken file of a loaded setup."""
        return cls(broken.file, broken.name, broken.stand_in, tuple(map(str, broken.problems)))

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored for this file (problems redacted and bounded)."""
        return {
            "file": self.file,
            "policy": self.policy,
            "old_version_kept": self.old_version_kept,
            "problems": list(safe_messages(self.problems)),
        }

    @classmethod
    def from_json(cls, raw: Any) -> BrokenFileRecord | None:
        """Parse one stored record; ``None`` when it is not in the expected shape."""
        if not isinstance(raw, dict) or not isinstance(raw.get("file"), str):
            return None
        policy = raw.get("policy")
        problems = raw.get("problems")
        return cls(
            file=raw["file"],
            policy=policy if isinstance(policy, str) else None,
            old_version_kept=raw.get("old_version_kept") is True,
            problems=tuple(str(p) for p in problems) if isinstance(problems, list) else (),
        )


@dataclass(frozen=True, slots=True)
class NotificationFailure:
    """The last delivery on one channel that failed: when, and why (redacted)."""

    time: datetime
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {"time": _iso(self.time), "reason": self.reason}

    @classmethod
    def from_json(cls, raw: Any) -> NotificationFailure | None:
        """The stored form read back; ``None`` when it is not one."""
        if not isinstance(raw, dict):
            return None
        when = _parse_iso(raw.get("time"))
        if when is None:
            return None
        return cls(time=when, reason=safe_messages([raw.get("reason", "")])[0])


def _notification_failures(stored: Any) -> dict[str, NotificationFailure]:
    """``notification_failures`` of a state file (absent in older files: none)."""
    if not isinstance(stored, dict):
        return {}
    found = {str(k): NotificationFailure.from_json(v) for k, v in stored.items()}
    return {channel: failure for channel, failure in found.items() if failure is not None}


@dataclass(frozen=True, slots=True)
class DaemonState:
    """Everything in the state file: when it was written, by which process, the last runs,
    and the policy files the daemon runs without."""

    updated: datetime | None = None
    pid: int | None = None
    policies: Mapping[str, PolicyRun] = field(default_factory=dict)
    broken_files: tuple[BrokenFileRecord, ...] = ()
    notification_failures: Mapping[str, NotificationFailure] = field(default_factory=dict)


def read_state(path: Path) -> DaemonState:
    """Read a state file; a missing one is an empty state.

    Raises ``ValueError`` naming the file when it exists but is not a state file (broken
    JSON, wrong version), so ``cvmkeeper status`` can say so instead of showing nothing.
    """
    try:
        text = files.read_text(path)  # a symbolic link is refused (OSError)
    except FileNotFoundError:
        return DaemonState()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not a cvmkeeper state file ({exc.msg}, line {exc.lineno})"
        ) from None
    if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: not a version {STATE_VERSION} cvmkeeper state file")
    policies: dict[str, PolicyRun] = {}
    for name, entry in (raw.get("policies") or {}).items():
        run = PolicyRun.from_json(entry) if isinstance(entry, dict) else None
        if run is not None:
            policies[str(name)] = run
    pid = raw.get("pid")
    stored = raw.get("broken_policy_files")
    records = [BrokenFileRecord.from_json(r) for r in stored] if isinstance(stored, list) else []
    return DaemonState(
        updated=_parse_iso(raw.get("updated")),
        pid=pid if isinstance(pid, int) else None,
        policies=policies,
        broken_files=tuple(r for r in records if r is not None),
        notification_failures=_notification_failures(raw.get("notification_failures")),
    )


class StateStore:
    """The state file of one daemon: updated after every run, thread-safe.

    Writing is best effort: a state directory that cannot be written (not created, read
    only) is logged once as a warning and the daemon goes on backing up.
    """

    def __init__(self, state_dir: Path) -> None:
        """Load what an earlier daemon left in ``state_dir`` (an unreadable file is ignored)."""
        self.path = state_dir / STATE_FILE_NAME
        self._lock = threading.Lock()
        self._write_failure_logged = False
        self._broken: tuple[BrokenFileRecord, ...] = ()
        self._notifications: dict[str, NotificationFailure] = {}
        try:
            old = read_state(self.path)
            self._policies, self._broken = dict(old.policies), old.broken_files
            self._notifications = dict(old.notification_failures)
        except (ValueError, OSError) as exc:
            log.warning("ignoring the old state file: %s", exc)
            self._policies = {}

    def last_runs(self) -> dict[str, PolicyRun]:
        """The last run of every policy known to the file (a copy)."""
        with self._lock:
            return dict(self._policies)

    def record(self, policy: str, run: PolicyRun, now: datetime) -> None:
        """Remember ``run`` as the last run of ``policy`` and rewrite the file atomically."""
        with self._lock:
            self._policies[policy] = run
            self._write_document(now)

    def record_broken(self, broken: Iterable[BrokenPolicy], now: datetime) -> None:
        """Remember the policy files the daemon now runs without (at start and on every
        reload, an empty list once they are fixed) and rewrite the file atomically."""
        records = tuple(BrokenFileRecord.of(b) for b in broken)
        with self._lock:
            if records == self._broken:
                return  # nothing to say (a daemon with good files writes no file at start)
            self._broken = records
            self._write_document(now)

    def record_delivery(self, channel: str, reason: str | None, now: datetime) -> None:
        """Remember a failed delivery on ``channel`` (``reason``, already redacted), or
        forget the channel's failure once a delivery succeeds; the file is rewritten only
        when that changes what it says (not on every successful delivery)."""
        with self._lock:
            if reason is None:
                if self._notifications.pop(channel, None) is None:
                    return
            else:
                self._notifications[channel] = NotificationFailure(
                    time=now, reason=safe_messages([reason])[0]
                )
            self._write_document(now)

    def _write_document(self, now: datetime) -> None:
        """Write the whole state (the caller holds the lock)."""
        document = {
            "version": STATE_VERSION,
            "updated": _iso(now),
            "pid": os.getpid(),
            "policies": {name: r.to_json() for name, r in sorted(self._policies.items())},
            "broken_policy_files": [record.to_json() for record in self._broken],
            "notification_failures": {
                channel: failure.to_json()
                for channel, failure in sorted(self._notifications.items())
            },
        }
        self._write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")

    def _write(self, text: str) -> None:
        """Replace the state file with ``text`` (``files.write_atomically``)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            files.write_atomically(self.path, text)
        except OSError as exc:
            if not self._write_failure_logged:
                self._write_failure_logged = True
                log.warning(
                    "cannot write the state file %s (%s); backups go on, `cvmkeeper status` "
                    "will not show them",
                    self.path,
                    exc.strerror or exc,
                )
