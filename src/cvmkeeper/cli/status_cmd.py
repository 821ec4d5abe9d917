"""``cvmkeeper status``: the one screen an operator reads in the morning.

Per policy: its last run, how it ended and when the next one is (the daemon's state file
and the schedule). Per region: the custom-image quota, used and free (read from the cloud,
the source of truth), and in a copy destination the copies it holds per policy and
instance. Instances whose newest backup is stale, and copy sets whose newest copy is
(``core.health``, the same rule the run alerts with). The errors of the last runs (state
file). ``--json`` gives the same as one JSON document.

Exit status: 0 when nothing needs attention; 1 when something does (a last run failed, a
backup is stale, a region is short of quota or cannot be read, the state file is broken,
a policy file cannot be used); 2 when the config is invalid or there are no credentials.

A policy file that cannot be used (issue #19) does not hide the others: status loads
partially, like the daemon, and names every bad file, those of the config on disk and
those the daemon recorded in its state file at its last start or reload (which may
differ until the next reload).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from cvmkeeper.cli.broken_files import broken_files_json, fate, load_partial_or_exit
from cvmkeeper.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    at_option,
    cloud_client,
    config_option,
    iso_utc,
    print_json,
    utc_now,
)
from cvmkeeper.cli.plan_cmd import client_or_exit
from cvmkeeper.cli.region_reads import read_regions
from cvmkeeper.cli.status_monitor import UNKNOWN, monitor_result, unknown_lines
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.credentials import CredentialsError
from cvmkeeper.config import BrokenPolicy, ConfigError, Setup, config_path, load_setup
from cvmkeeper.core.disk_report import region_disk_warnings
from cvmkeeper.core.disks import describe_snapshots
from cvmkeeper.core.durations import format_duration
from cvmkeeper.core.health import Freshness, QuotaHeadroom, RegionHealth, assess_region
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.schedule import next_policy_slots
from cvmkeeper.executor.copies import copy_destinations
from cvmkeeper.executor.region import read_inventory
from cvmkeeper.executor.run_health import health_settings
from cvmkeeper.executor.runner import run_regions
from cvmkeeper.restore.drill import failed_drills, last_drill, last_drill_text
from cvmkeeper.scheduler.state import (
    STATE_FILE_NAME,
    BrokenFileRecord,
    DaemonState,
    PolicyRun,
    read_state,
)

__all__ = ["Status", "gather", "status_command", "status_lines", "status_to_json"]

#: seconds ``status`` waits for all regions together (``--timeout``)
DEFAULT_TIMEOUT = 60.0


@dataclass
class Status:
    """Everything ``status`` shows, gathered once and printed as text or JSON."""

    now: datetime
    config_file: Path
    state_file: Path
    state: DaemonState
    state_problem: str | None = None
    regions: list[RegionHealth] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    #: rule 10: disks left out of backups, images holding fewer disks than asked
    disk_warnings: list[str] = field(default_factory=list)
    #: image id -> what it holds (``system 50G + data 100G``), for the newest images
    holds: dict[str, str] = field(default_factory=dict)
    #: the policy files of the config on disk that cannot be used (issue #19)
    broken: tuple[BrokenPolicy, ...] = ()

    @property
    def broken_files(self) -> list[BrokenFileRecord]:
        """Every broken policy file, of the config on disk or of the daemon's state file
        (its last start or reload), by file. The old version of a policy stands in only
        where the daemon says so; status's own load has no old version."""
        found = {b.file: BrokenFileRecord.of(b) for b in self.broken}
        for record in self.state.broken_files:
            own = found.get(record.file)
            found[record.file] = (
                record if own is None else replace(own, old_version_kept=record.old_version_kept)
            )
        return list(found.values())

    @property
    def daemon_only_broken(self) -> list[str]:
        """Files the daemon runs without that are fine on disk now (a reload is due)."""
        own = {b.file for b in self.broken}
        return [r.file for r in self.state.broken_files if r.file not in own]

    @property
    def stale(self) -> list[Freshness]:
        """Every stale instance of every region read."""
        return [item for health in self.regions for item in health.stale]

    @property
    def stale_copies(self) -> list[Freshness]:
        """Every copy set whose newest copy is stale, in every destination read."""
        return [item for health in self.regions for item in health.stale_copies]

    def failed_policies(self, setup: Setup) -> list[str]:
        """Policies whose last recorded run did not end ``ok``."""
        runs = self.state.policies
        return [p.name for p in setup.policies if p.name in runs and runs[p.name].result != "ok"]

    def needs_attention(self, setup: Setup) -> bool:
        """True when an operator should look (the exit status is then 1)."""
        return bool(
            self.state_problem
            or self.unreadable
            or self.stale
            or self.stale_copies
            or any(h.quota.low for h in self.regions)
            or self.failed_policies(setup)
            or self.broken_files  # a policy file that cannot be used (issue #19)
            or self.state.notification_failures  # a dead notify: channel (issue #17)
            or self.disk_warnings  # a backup that leaves a disk out (rule 10)
            or failed_drills(setup)  # a backup that did not come back (issue #16)
        )


def gather(
    setup: Setup, client: CloudClient, now: datetime, timeout_seconds: float = DEFAULT_TIMEOUT
) -> Status:
    """Read the state file and every region of the config, its policies and their copy
    destinations (a destination's copies are assessed against the source regions read).

    The regions are read in parallel; what has not answered within ``timeout_seconds``
    (all regions together) is reported unreadable.
    """
    state_file = setup.config.state_dir / STATE_FILE_NAME
    status = Status(now, setup.config.source, state_file, DaemonState(), broken=setup.broken)
    try:
        status.state = read_state(state_file)
    except (ValueError, OSError) as error:
        status.state_problem = str(error)
    settings = health_settings(setup)
    regions = list(dict.fromkeys([*run_regions(setup), *copy_destinations(setup.policies)]))
    reads = read_regions(
        regions,
        lambda region: read_inventory(client, region, setup.config.image_quota),
        timeout_seconds,
    )
    read: dict[str, Inventory] = reads.read
    status.unreadable.update(reads.unreadable)
    for inventory in read.values():
        status.regions.append(
            assess_region(
                inventory, setup.policies, now, settings, setup.config.name_format, sources=read
            )
        )
        status.disk_warnings += [
            f"{inventory.region}: {message}"
            for message in region_disk_warnings(inventory, setup.policies, setup.config.name_format)
        ]
        status.holds.update({i.image_id: describe_snapshots(i.snapshots) for i in inventory.images})
    return status


def _monitor_setup(config_file: str | None) -> tuple[Setup, CloudClient]:
    """Config and client for ``--monitor``; anything unusable is UNKNOWN (exit 3)."""
    try:
        setup = load_setup(config_path(config_file), partial=True)  # broken files: CRITICAL
        return setup, cloud_client(setup.config)
    except ConfigError as error:
        first = str(error.problems[0]) if error.problems else "invalid"
        count = len(error.problems)
        lines = unknown_lines(
            f"config invalid ({count} problem{'s' if count != 1 else ''}): {first}"
        )
    except CredentialsError as error:
        lines = unknown_lines(f"no credentials: {error}")
    for line in lines:
        click.echo(line)
    sys.exit(UNKNOWN)


def _next_run(setup: Setup, name: str, now: datetime) -> datetime | None:
    policy = setup.policy(name)
    if policy is None:
        return None
    upcoming = next_policy_slots(policy, now, 1)
    return upcoming[0] if upcoming else None


def _ago(now: datetime, then: datetime) -> str:
    delta = now - then
    if delta.total_seconds() < 0:
        return f"in {format_duration(-delta)}"
    return f"{format_duration(timedelta(seconds=int(delta.total_seconds())))} ago"


def _run_text(run: PolicyRun | None, now: datetime) -> str:
    if run is None:
        return "never run (no record in the state file)"
    slot = f" slot {iso_utc(run.slot)}" if run.slot else ""
    return (
        f"{run.result.upper()} {run.kind}{slot}, finished {iso_utc(run.finished)} "
        f"({_ago(now, run.finished)})"
    )


def status_lines(setup: Setup, status: Status) -> list[str]:
    """The text screen."""
    now = status.now
    lines = [f"cvmkeeper status at {iso_utc(now)} ({status.config_file})", _state_line(status)]
    if status.unreadable:
        total = len(status.unreadable) + len(status.regions)
        lines += [
            "",
            f"CLOUD NOT READ: {len(status.unreadable)} of {total} regions could not be read "
            f"({', '.join(status.unreadable)}); their backups are UNKNOWN, and what follows "
            "covers only the regions read",
        ]
    lines += _broken_lines(status)
    lines += _notification_lines(status)
    lines += ["", "POLICIES", *_policy_lines(setup, status)]
    lines += ["", "REGIONS", *_region_lines(status)]
    lines += _stale_lines(status)
    if status.disk_warnings:  # rule 10: a disk left out of a backup is never silent
        lines += ["", f"DISK WARNINGS ({len(status.disk_warnings)})"]
        lines += [f"  {message}" for message in status.disk_warnings]
    errors = _recent_errors(setup, status)
    lines += ["", f"RECENT ERRORS ({len(errors)})"]
    lines += [f"  {e['policy']} {e['finished']}: {e['message']}" for e in errors] or ["  none"]
    verdict = "needs attention" if status.needs_attention(setup) else "all good"
    if status.unreadable:
        verdict += ": the cloud could not be read in " + ", ".join(status.unreadable)
    lines += ["", verdict]
    return lines


def _notification_lines(status: Status) -> list[str]:
    """NOTIFICATIONS: each notify: channel whose last delivery failed (the daemon's state
    file; cleared by its next success). By channel name and the redacted reason: a URL
    holds the channel's secret and is never shown."""
    failures = status.state.notification_failures
    if not failures:
        return []
    lines = ["", f"NOTIFICATIONS: {len(failures)} channel(s) cannot deliver"]
    for channel, failure in sorted(failures.items()):
        lines.append(
            f"  {channel}: last delivery failed {iso_utc(failure.time)} "
            f"({_ago(status.now, failure.time)}): {failure.reason}"
        )
    return lines


def _state_line(status: Status) -> str:
    """What the daemon's state file says about itself."""
    if status.state_problem:
        return f"state file: PROBLEM: {status.state_problem}"
    if status.state.updated is None:
        return f"state file: {status.state_file}: none yet (the daemon has not run)"
    return (
        f"state file: {status.state_file}, written {iso_utc(status.state.updated)} "
        f"by pid {status.state.pid}"
    )


def _broken_lines(status: Status) -> list[str]:
    """BROKEN POLICY FILES: each file, what it means, and every problem (file:line:key)."""
    records = status.broken_files
    if not records:
        return []
    lines = ["", f"BROKEN POLICY FILES ({len(records)}): run `cvmkeeper validate`, fix, reload"]
    stale = status.daemon_only_broken
    for record in records:
        named = f" (policy {record.policy!r})" if record.policy else ""
        what = (
            "the daemon keeps running the version it loaded before"
            if record.old_version_kept
            else fate(_as_broken(record))
        )
        if record.file in stale:
            what += "; the daemon still runs without it: fine on disk now, reload"
        lines.append(f"  {record.file}{named}: {what}")
        lines += [f"    {problem}" for problem in record.problems]
    return lines


def _as_broken(record: BrokenFileRecord) -> BrokenPolicy:
    return BrokenPolicy(record.file, (), record.policy, record.old_version_kept)


def _policy_lines(setup: Setup, status: Status) -> list[str]:
    """Each policy's schedules, last run, next slot and (with a drill key) last drill."""
    now = status.now
    lines: list[str] = []
    for policy in setup.policies:
        upcoming = _next_run(setup, policy.name, now)
        next_text = f"{iso_utc(upcoming)} ({_ago(now, upcoming)})" if upcoming else "none"
        lines.append(f"  {policy.name}: {', '.join(s.describe() for s in policy.schedules)}")
        lines.append(f"    last: {_run_text(status.state.policies.get(policy.name), now)}")
        lines.append(f"    next: {next_text}")
        if policy.drill is not None:  # restore drills (issue #16)
            lines.append(f"    drill: {last_drill_text(setup.config.state_dir, policy.name)}")
    return lines


def _region_lines(status: Status) -> list[str]:
    """Each region's quota use and origin, its copies, and the regions not read."""
    lines: list[str] = []
    for health in status.regions:
        quota = health.quota
        flag = "  LOW" if quota.low else ""
        lines.append(
            f"  {health.region}: {quota.used}/{quota.quota} images used, {quota.free} free "
            f"({quota.managed} by cvmkeeper, {quota.unmanaged} others){flag}"
        )
        lines.append(f"    quota: {quota_origin(quota)}")
        lines += [f"    {_copies_text(copy, status.now)}" for copy in health.copies]
    for region, problem in status.unreadable.items():
        lines.append(f"  {region}: ERROR {problem}")
    return lines


def _stale_lines(status: Status) -> list[str]:
    """STALE BACKUPS (UNKNOWN where a region could not be read) and STALE COPIES."""
    stale = status.stale
    if status.unreadable and not status.regions:
        lines = ["", "STALE BACKUPS: UNKNOWN (no region could be read)"]
    else:
        unknown = f"; UNKNOWN in {', '.join(status.unreadable)}" if status.unreadable else ""
        lines = ["", f"STALE BACKUPS ({len(stale)}{unknown})"]
        lines += [f"  {item.describe()}" for item in stale] or ["  none"]
    stale_copies = status.stale_copies
    if any(health.copies for health in status.regions):
        lines += ["", f"STALE COPIES ({len(stale_copies)})"]
        lines += [f"  {item.describe()}" for item in stale_copies] or ["  none"]
    return lines


def quota_origin(quota: QuotaHeadroom) -> str:
    """``account 12 (DescribeImageQuota), cap image_quota 10``: where the quota came from."""
    account = "unknown" if quota.account_quota is None else str(quota.account_quota)
    cap = "no cap (image_quota unset)" if quota.cap is None else f"cap image_quota {quota.cap}"
    return f"account {account} (DescribeImageQuota), {cap}"


def _copies_text(copy: Freshness, now: datetime) -> str:
    """``copies web-daily ins-x from ap-guangzhou: 2 held, newest NAME (5h ago)``."""
    head = f"copies {', '.join(copy.policies)} {copy.instance_id} from {copy.source_region}"
    if copy.newest_slot is None:
        return f"{head}: none held  STALE"
    flag = "  STALE" if copy.stale else ""
    return (
        f"{head}: {copy.held} held, newest {copy.newest_image_name} "
        f"({_ago(now, copy.newest_slot)}){flag}"
    )


def _recent_errors(setup: Setup, status: Status) -> list[dict[str, str]]:
    """The errors of each policy's last run, newest run first."""
    runs = sorted(status.state.policies.items(), key=lambda item: item[1].finished, reverse=True)
    return [
        {"policy": name, "finished": iso_utc(run.finished), "message": message}
        for name, run in runs
        for message in run.errors
    ]


def _freshness_json(item: Freshness) -> dict[str, Any]:
    return {
        "region": item.region,
        "instance_id": item.instance_id,
        "policy": item.policy,
        "policies": list(item.policies),
        "newest_image_id": item.newest_image_id,
        "newest_image_name": item.newest_image_name,
        "newest_slot": item.newest_slot,
        "age_seconds": int(item.age.total_seconds()) if item.age is not None else None,
        "allowed_seconds": int(item.allowed.total_seconds()),
        "stale": item.stale,
    }


def _with_holds(status: Status, entry: dict[str, Any]) -> dict[str, Any]:
    """``newest_image_holds``: what the newest image holds (rule 10), ``null`` if none."""
    newest = entry.get("newest_image_id")
    entry["newest_image_holds"] = status.holds.get(newest) if newest else None
    return entry


def _copy_json(item: Freshness) -> dict[str, Any]:
    return {
        "region": item.region,
        "source_region": item.source_region,
        "instance_id": item.instance_id,
        "policy": item.policy,
        "policies": list(item.policies),
        "held": item.held,
        "newest_image_id": item.newest_image_id,
        "newest_image_name": item.newest_image_name,
        "newest_slot": item.newest_slot,
        "age_seconds": int(item.age.total_seconds()) if item.age is not None else None,
        "allowed_seconds": int(item.allowed.total_seconds()),
        "stale": item.stale,
    }


def _run_json(run: PolicyRun | None) -> dict[str, Any] | None:
    return None if run is None else run.to_json()


def status_to_json(setup: Setup, status: Status) -> dict[str, Any]:
    """The JSON document of ``status --json`` (times as UTC ``...Z``)."""
    return {
        "ok": not status.needs_attention(setup),
        "now": status.now,
        "config_file": str(status.config_file),
        "state_file": {
            "path": str(status.state_file),
            "updated": status.state.updated,
            "pid": status.state.pid,
            "problem": status.state_problem,
            "notification_failures": {
                channel: {"time": failure.time, "reason": failure.reason}
                for channel, failure in sorted(status.state.notification_failures.items())
            },
        },
        "policies": [
            {
                "name": policy.name,
                "regions": list(policy.regions),
                "schedules": [s.describe() for s in policy.schedules],
                "last_run": _run_json(status.state.policies.get(policy.name)),
                "next_run": _next_run(setup, policy.name, status.now),
                "last_drill": last_drill(setup.config.state_dir, policy.name)
                if policy.drill is not None
                else None,
            }
            for policy in setup.policies
        ],
        "regions": [
            {
                "region": h.region,
                "quota": h.quota.quota,
                "account_quota": h.quota.account_quota,
                "quota_cap": h.quota.cap,
                "used": h.quota.used,
                "free": h.quota.free,
                "managed": h.quota.managed,
                "unmanaged": h.quota.unmanaged,
                "low": h.quota.low,
                "error": None,
            }
            for h in status.regions
        ]
        + [
            {
                "region": region,
                "quota": None,
                "account_quota": None,
                "quota_cap": setup.config.image_quota,
                "used": None,
                "free": None,
                "managed": None,
                "unmanaged": None,
                "low": None,
                "error": problem,
            }
            for region, problem in status.unreadable.items()
        ],
        "instances": [
            _with_holds(status, _freshness_json(i)) for h in status.regions for i in h.instances
        ],
        # null, not []: with a region unread the lists are not the fleet's (issue #17),
        # and a script must not read "nothing stale"; "instances" keeps the regions read
        "stale": None if status.unreadable else [_freshness_json(i) for i in status.stale],
        "copies": [_copy_json(c) for h in status.regions for c in h.copies],
        "stale_copies": None if status.unreadable else [_copy_json(c) for c in status.stale_copies],
        "recent_errors": _recent_errors(setup, status),
        "disk_warnings": list(status.disk_warnings),
        "broken_policy_files": _broken_json(status),
    }


def _broken_json(status: Status) -> list[dict[str, Any]]:
    """``broken_policy_files``: the bad files of the config on disk (as ``plan --json``
    gives them), then those only the daemon's state file names; ``old_version_kept`` and
    ``daemon_runs_without`` from the state file."""
    daemon = {record.file: record for record in status.state.broken_files}
    entries = broken_files_json(status.broken)
    for entry in entries:
        record = daemon.get(entry["file"])
        entry["old_version_kept"] = bool(record and record.old_version_kept)
        entry["daemon_runs_without"] = record is not None
    for file in status.daemon_only_broken:
        record = daemon[file]
        entries.append(
            {
                "file": file,
                "policy": record.policy,
                "old_version_kept": record.old_version_kept,
                "problems": [{"text": text} for text in record.problems],
                "daemon_runs_without": True,
            }
        )
    return entries


@click.command("status")
@config_option
@at_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON document.")
@click.option(
    "--timeout",
    "timeout_seconds",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Wait at most this long for all regions together (they are read in parallel); "
    "a region that has not answered by then is reported unreadable.",
)
@click.option(
    "--monitor",
    "--nagios",
    "monitor",
    is_flag=True,
    help="Act as a Nagios/Icinga monitoring plugin: one summary line with perfdata, and "
    "exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
)
def status_command(
    *,
    config_file: str | None,
    at: datetime | None,
    as_json: bool,
    timeout_seconds: float,
    monitor: bool,
) -> None:
    """Show, on one screen, whether the backups are fine.

    Per policy: its last run (from the daemon's state file in state_dir), how it ended
    and when the next one is due, and the last restore drill of a policy with a drill key
    (drills.json in state_dir). Per region: custom images used and free (read from the
    cloud), and the quota's origin (the account's DescribeImageQuota and the cap
    image_quota, if set), and in each copy destination the copies held per policy and
    instance. Every
    instance whose newest NORMAL backup (or copy set whose newest copy) is older than its
    policy's period times sentry.freshness_factor, or that has none. The errors of the
    last runs.

    Regions are read in parallel, all within --timeout. A region that cannot be read is
    reported loudly (CLOUD NOT READ, its backups UNKNOWN), never as "no stale backups";
    in --json, "stale" and "stale_copies" are then null (undetermined), not [] (the
    regions' entries carry "error"; "instances" lists those of the regions read).

    \b
    Exit status:
      0  nothing needs attention
      1  something does: a failed last run or restore drill, a stale backup or copy, a
         notification channel whose last delivery failed (NOTIFICATIONS), a
         region short of quota (fewer free than sentry.quota_free_warning) or
         unreadable, a broken state file, a policy file that cannot be used
      2  the config is invalid, or no credentials were found

    \b
    With --monitor (a Nagios/Icinga plugin, like sanoid's --monitor-*):
      0  OK
      1  WARNING   a region is short of quota, or a backup leaves a disk out, or a
                   policy file cannot be used but the daemon runs its old version
      2  CRITICAL  a stale backup or copy, a failed last run, a broken state file, a
                   policy file that cannot be used (its policy does not run)
      3  UNKNOWN   a region cannot be read, or the config or credentials cannot be used
    The first line is "CVMKEEPER <STATE> - <summary> | <perfdata>" (stale_backups,
    stale_copies, failed_policies, unreadable_regions, broken_policy_files, and per region
    free and used).
    """
    if monitor:
        setup, client = _monitor_setup(config_file)
    else:
        setup = load_partial_or_exit(config_file, "status")
        client = client_or_exit(setup, "status")
    status = gather(setup, client, at or utc_now(), timeout_seconds)
    if monitor:
        code, lines = monitor_result(setup, status)
        for line in lines:
            click.echo(line)
        sys.exit(code)
    if as_json:
        print_json(status_to_json(setup, status))
    else:
        for line in status_lines(setup, status):
            click.echo(line)
    sys.exit(EXIT_FAILED if status.needs_attention(setup) else EXIT_OK)
