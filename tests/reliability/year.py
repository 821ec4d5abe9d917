"""A year of cvmkeeper on virtual time, for part 5 of the reliability suite.

:class:`YearWorld` holds an in-process ``EmulatorCore`` on a ``ManualClock``, a
``CloudClient`` whose retries and rate limiter sleep by advancing that clock, the
executor's ``PollTime`` seam pointed at the same clock, and a config with three policies
written to real files. :meth:`YearWorld.run_year` fires every slot of every policy between
``start`` and ``end`` in order, as the daemon's scheduler does (``run_once`` with the
policy and its slot), and hands each run's report and state to a callback. Nothing
sleeps: a year of slots costs only the work of the runs.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.ratelimit import RateLimiter
from cvmkeeper.cloud.retry import RetryPolicy
from cvmkeeper.config import Setup, load_setup
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.schedule import iter_policy_slots
from cvmkeeper.emulator.clock import ManualClock
from cvmkeeper.emulator.core import EmulatorCore
from cvmkeeper.emulator.fleet import FleetSpec
from cvmkeeper.emulator.profiles import with_env_profile
from cvmkeeper.emulator.transport import in_process_client
from cvmkeeper.executor import RunReport, run_once
from cvmkeeper.executor.polling import PollTime

SOURCE = "ap-guangzhou"  # hourly and weekly live here
DEST = "ap-shanghai"  # daily GFS lives here, and the weekly policy's copies go here
HOURLY_ID, WEEKLY_ID, DAILY_ID = "ins-hhhhhhhh", "ins-wwwwwwww", "ins-dddddddd"
UNMANAGED = {SOURCE: ("img-gold0001", "img-gold0002"), DEST: ("img-gold0003",)}
#: 366 days from 11 February 2026 to Friday 12 February 2027: Europe/Berlin springs forward
#: on 29 March and falls back on 25 October, America/New_York on 8 March and 1 November;
#: 2026 has an ISO week 53 that runs into 2027 (New Year inside one week bucket). Ending
#: mid-week and mid-month, the daily GFS keeps five images: three days, last week's
#: Sunday and January's last day.
YEAR_START = datetime(2026, 2, 11, tzinfo=UTC)
YEAR_DAYS = 366

POLICIES: tuple[dict[str, Any], ...] = (
    {
        "name": "hourly",
        "regions": [SOURCE],
        "targets": {"instance_ids": [HOURLY_ID]},
        # every hour on the UTC hour; hour buckets in Berlin time, where the fall-back
        # night has two 02:00 hours (told apart by their UTC offset)
        "schedules": [{"every": "1h"}],
        "timezone": "Europe/Berlin",
        "retention": {"keep_hourly": 3},
    },
    {
        "name": "daily-gfs",
        "regions": [DEST],
        "targets": {"instance_ids": [DAILY_ID]},
        # 02:30 does not exist on 29 March (fires at 03:00) and happens twice on 25 October
        "schedules": [{"cron": "30 2 * * *", "timezone": "Europe/Berlin"}],
        "retention": {"keep_daily": 3, "keep_weekly": 2, "keep_monthly": 2},
    },
    {
        "name": "weekly",
        "regions": [SOURCE],
        "targets": {"instance_ids": [WEEKLY_ID]},
        # Sundays 01:30 New York: twice on 1 November (fall back), once it fires
        "schedules": [{"cron": "30 1 * * 0", "timezone": "America/New_York"}],
        "retention": {"keep_weekly": 2},
        "copies": [{"region": DEST, "retention": {"keep_last": 2}}],
    },
)

#: Retries fit for virtual time: every wait advances the clock, never the wall.
VIRTUAL_RETRIES = RetryPolicy(
    max_attempts=8, base_seconds=0.2, cap_seconds=20, deadline_seconds=120, max_internal_errors=3
)

#: Which kinds of fault the year injects, sharing ``rate`` between them.
FAULT_SHARES = {
    "InternalError": 0.3,
    "RequestLimitExceeded": 0.3,
    "reset": 0.2,
    "lost_response": 0.2,
}


HOURLY_DISK = {"id": "disk-hourly01", "type": "CLOUD_PREMIUM", "size": 100}


def fleet(
    *, seed: int, fault_rate: float, switches: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Two regions with quota 10, three instances, unmanaged images; faults on every action
    at ``fault_rate`` in all (shared by kind) and ``CREATEFAILED`` at ``fault_rate``;
    ``switches``: top-level fleet switches (``fleet.OpenPoints``) to add."""

    def gold(image_id: str) -> dict[str, Any]:
        return {"id": image_id, "name": f"golden-{image_id[-2:]}", "description": "by hand"}

    spec: dict[str, Any] = {
        "seed": seed,
        # images are ready by the executor's first poll (0.25 s): one poll per run
        "timing": {
            "create_seconds": 0.2,
            "stop_seconds": 0.2,
            "start_seconds": 0.2,
            "sync_seconds": 0.2,
            "create_failed_probability": fault_rate,
        },
        "regions": {
            # the hourly instance has a data disk: its images (and their copies) hold both
            SOURCE: {
                "quota": 10,
                "instances": [{"id": HOURLY_ID, "data_disks": [HOURLY_DISK]}, {"id": WEEKLY_ID}],
                "images": [gold(i) for i in UNMANAGED[SOURCE]],
            },
            DEST: {
                "quota": 10,
                "instances": [{"id": DAILY_ID}],
                "images": [gold(i) for i in UNMANAGED[DEST]],
            },
        },
    }
    if fault_rate:
        spec["faults"] = {
            "*": {kind: round(fault_rate * share, 4) for kind, share in FAULT_SHARES.items()}
        }
    spec.update(switches or {})
    return with_env_profile(spec)


def write_config(root: Path) -> Path:
    """The daemon config and the three policy files under ``root``; the config's path."""
    (root / "policies").mkdir(parents=True, exist_ok=True)
    key_file = root / "secret_key"
    key_file.write_text("year-secret-key\n")
    key_file.chmod(0o600)
    config = {
        "policies_dir": "policies",
        "regions": [SOURCE, DEST],
        "image_quota": 10,
        "cloud": {"endpoint": "127.0.0.1:9", "scheme": "http", "timeout": "10s"},
        "credentials": {
            "secret_id": "AKIDYEAR",
            "secret_key_file": str(key_file),
            "cvm_role": False,
        },
        "api": {"wait_timeout": "10m", "poll_interval": "15s"},
        "state_dir": "state",  # the stop journal and record of created images: never /var/lib
    }
    path = root / "cvmkeeper.yaml"
    path.write_text(yaml.safe_dump(config))
    for document in POLICIES:
        (root / "policies" / f"{document['name']}.yaml").write_text(yaml.safe_dump(document))
    return path


@dataclass(frozen=True)
class Fire:
    """One scheduler fire: a policy's slot."""

    slot: datetime
    policy: str


@dataclass
class YearRun:
    """What one run of the year did."""

    fire: Fire
    report: RunReport
    alerter: RecordingAlerter


@dataclass
class YearWorld:
    """An emulator core on a manual clock, a client and the executor on that clock."""

    setup: Setup
    clock: ManualClock
    core: EmulatorCore
    client: CloudClient
    poll_time: PollTime
    runs: int = 0
    history: list[YearRun] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        root: Path,
        *,
        seed: int,
        fault_rate: float,
        start: datetime = YEAR_START,
        switches: Mapping[str, Any] | None = None,
    ) -> YearWorld:
        """Write the config under ``root`` and seed an emulator at ``start`` (with the fleet
        ``switches``, if any)."""
        setup = load_setup(write_config(root))
        clock = ManualClock(start)
        spec = fleet(seed=seed, fault_rate=fault_rate, switches=switches)
        core = EmulatorCore(FleetSpec.from_mapping(spec), clock)

        def monotonic() -> float:
            return clock.now().timestamp()

        def sleep(seconds: float) -> None:
            clock.advance(max(0.0, seconds))

        client = in_process_client(
            core,
            retry_policy=VIRTUAL_RETRIES,
            sleep=sleep,
            clock=monotonic,
            rng=random.Random(seed),
            limiter=RateLimiter(clock=monotonic, sleep=sleep),
        )
        return cls(setup, clock, core, client, PollTime(sleep=sleep, monotonic=monotonic))

    def fires(self, start: datetime, end: datetime) -> Iterator[Fire]:
        """Every slot of every policy in ``(start, end]``, in time order, then setup order."""

        def stream(index: int, policy: Policy) -> Iterator[tuple[datetime, int, str]]:
            for slot in iter_policy_slots(policy, start):
                yield slot, index, policy.name

        streams = [stream(index, policy) for index, policy in enumerate(self.setup.policies)]
        for slot, _index, name in heapq.merge(*streams):
            if slot > end:
                return
            yield Fire(slot, name)

    def run(self, fire: Fire) -> YearRun:
        """Run ``fire``'s policy for its slot now, as the daemon's job does."""
        if self.clock.now() < fire.slot:
            self.clock.set(fire.slot)
        alerter = RecordingAlerter()
        report = run_once(
            self.setup,
            self.client,
            alerter,
            now=self.clock.now(),
            policy_names=(fire.policy,),
            slot=fire.slot,
            poll_time=self.poll_time,
        )
        self.runs += 1
        return YearRun(fire, report, alerter)

    def run_year(self, start: datetime, end: datetime, after_run: Callable[[YearRun], None]) -> int:
        """Fire every slot in ``(start, end]``; ``after_run`` sees each run; the run count."""
        count = 0
        for fire in self.fires(start, end):
            after_run(self.run(fire))
            count += 1
        return count

    def images(self, region: str) -> list[Mapping[str, Any]]:
        """The region's images now (``DescribeImages`` entries)."""
        return list(self.core.state()["regions"][region]["images"])
