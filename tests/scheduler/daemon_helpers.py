"""A small real runner that records its calls, for the daemon's scheduling tests.

It has the signature of ``cvmkeeper.executor.runner.run_once`` and returns a real
``RunReport`` with one ``Outcome`` per policy. A test can hold a call open with ``gate``
(to have a run "still going"), make it fail, or raise.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cvmkeeper.executor.report import Outcome, RunReport

GATE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Call:
    """One runner call and what it was given."""

    policy_names: tuple[str, ...] | None
    slot: datetime | None
    now: datetime
    stop: threading.Event | None
    region_locks: object
    setup: Any
    client: Any
    stop_was_set_at_end: bool = False


@dataclass
class RecordingRunner:
    """Records calls; ``gate`` (when set) blocks each call until it is set or stop is set."""

    ok: bool = True
    error: str = "CreateImage failed: ResourceInsufficient"
    raises: BaseException | None = None
    gate: threading.Event | None = None
    calls: list[Call] = field(default_factory=list)
    started: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self,
        setup: Any,
        client: Any,
        alerter: Any,
        *,
        now: datetime,
        policy_names: Any = None,
        slot: datetime | None = None,
        stop: threading.Event | None = None,
        region_locks: object = None,
        **options: Any,
    ) -> RunReport:
        """Record the call, wait on the gate if any, and report one outcome per policy."""
        names = tuple(policy_names) if policy_names is not None else None
        self.started.release()
        if self.gate is not None:
            deadline = threading.Event()
            for _ in range(int(GATE_TIMEOUT / 0.02)):
                if self.gate.is_set() or (stop is not None and stop.is_set()):
                    break
                deadline.wait(0.02)
        call = Call(
            names,
            slot,
            now,
            stop,
            region_locks,
            setup,
            client,
            stop_was_set_at_end=bool(stop and stop.is_set()),
        )
        with self.lock:
            self.calls.append(call)
        if self.raises is not None:
            raise self.raises
        policies = names if names is not None else tuple(p.name for p in setup.policies)
        slot_of = slot or now.replace(second=0, microsecond=0)
        outcomes = tuple(
            Outcome(
                policies=(name,),
                region="ap-guangzhou",
                instance_id="ins-6pb6lrmy",
                slot=slot_of,
                image_name=f"{slot_of:%y%m%d-%H%M}-6pb6lrmy",
                image_id="img-00000001" if self.ok else None,
                status="created" if self.ok else "failed",
                error=None if self.ok else self.error,
            )
            for name in policies
        )
        return RunReport(
            started=now,
            finished=now,
            outcomes=outcomes,
            errors=() if self.ok else (self.error,),
            failed_policies=frozenset() if self.ok else frozenset(policies),
        )

    def wait_started(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Wait until ``count`` more calls have started."""
        return all(self.started.acquire(timeout=timeout) for _ in range(count))

    def snapshot(self) -> list[Call]:
        """The finished calls so far."""
        with self.lock:
            return list(self.calls)


def write_setup(directory: Path, policies: dict[str, str], *, extra_config: str = "") -> Path:
    """Write a daemon config and policy files under ``directory``; return the config path."""
    (directory / "policies").mkdir(parents=True, exist_ok=True)
    for name, text in policies.items():
        (directory / "policies" / f"{name}.yaml").write_text(text, encoding="utf-8")
    config = directory / "cvmkeeper.yaml"
    config.write_text(
        "policies_dir: policies\nregions: [ap-guangzhou]\nstate_dir: state\n" + extra_config,
        encoding="utf-8",
    )
    return config


def policy_text(
    name: str, schedule: str, *, catch_up: str | None = None, tags: str = "{backup: daily}"
) -> str:
    """A policy file with one schedule line such as ``every: 1h`` or ``cron: "0 2 * * *"``."""
    text = (
        f"name: {name}\n"
        f"targets: {{tags: {tags}}}\n"
        "schedules:\n"
        f"  - {schedule}\n"
        "retention: {keep_last: 3}\n"
    )
    if catch_up is not None:
        text += f"catch_up: {catch_up}\n"
    return text


def daily_slot_before(now: datetime, minutes: int = 30) -> tuple[str, datetime]:
    """A daily UTC cron line whose latest slot is ``minutes`` before ``now``, and that slot.

    The daemon's end-to-end tests use the real clock. With such a schedule the slot a
    catch-up makes is known before the daemon starts and is the same at every instant
    (hour and year boundaries, DST: the cron is in UTC), and no scheduled slot fires for
    the next 23 hours, so a test that crosses an hour while it runs sees no second slot.
    The default ``catch_up`` (one period, a day) covers a slot 30 minutes old.
    """
    slot = (now - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    return f'cron: "{slot.minute} {slot.hour} * * *"', slot
