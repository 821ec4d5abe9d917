"""What ``cvmkeeper report`` shows, gathered once from the cloud and the state file.

Read-only, like ``images`` and ``status``: every region (and copy destination) is read in
parallel under one deadline (``region_reads``), planned with nothing due so that each
managed image carries the retention rule that keeps it (or why it goes), and the daemon's
state file gives each policy's last result. The values here are plain, so the HTML
renderer (``report_html``) is a pure function of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cvmkeeper.cli.images_cmd import image_fate
from cvmkeeper.cli.region_reads import read_regions
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.config import Setup
from cvmkeeper.core.disk_report import region_disk_warnings
from cvmkeeper.core.disks import describe_snapshots
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.plan import Plan
from cvmkeeper.core.planner import PlannerSettings, plan_region
from cvmkeeper.core.schedule import iter_policy_slots, next_policy_slots
from cvmkeeper.core.targets import resolve_targets
from cvmkeeper.executor.copies import copy_destinations
from cvmkeeper.executor.executor import read_inventory
from cvmkeeper.executor.runner import run_regions
from cvmkeeper.scheduler.state import STATE_FILE_NAME, DaemonState, read_state

#: at most this many missed slots are listed per instance (a long outage is summarised)
MAX_MISSED = 24
NEXT_SLOTS = 3


@dataclass(frozen=True)
class ImageRow:
    """One managed image: when, in what state, and the rule that keeps it."""

    image_id: str
    name: str
    slot: datetime
    state: str
    kept_by: str
    expires: bool
    pinned: bool
    #: the disks it holds (``system 50G + data 200G``; ``?`` while the cloud does not say)
    holds: str = "?"


@dataclass
class InstanceRow:
    """The images of one instance in one region (its own, or copies held there)."""

    region: str
    instance_id: str
    name: str | None
    policies: list[str]
    images: list[ImageRow] = field(default_factory=list)
    copies_from: str | None = None
    orphan: bool = False
    #: slots after the newest image that have none (the run was missed or failed)
    missed: list[datetime] = field(default_factory=list)
    missed_more: int = 0


@dataclass(frozen=True)
class RegionRow:
    """The quota of one region: cvmkeeper's images, others', free; or why it is unknown."""

    region: str
    quota: int | None = None
    account_quota: int | None = None
    cap: int | None = None
    managed: int = 0
    unmanaged: int = 0
    error: str | None = None
    #: rule 10: disks a backup leaves out, images holding fewer disks than asked
    disk_warnings: tuple[str, ...] = ()

    @property
    def free(self) -> int:
        """Images that can still be made."""
        return max(0, (self.quota or 0) - self.managed - self.unmanaged)


@dataclass(frozen=True)
class PolicyRow:
    """One policy: schedules, next slots, and how its last run ended."""

    name: str
    schedules: str
    regions: list[str]
    next_slots: list[datetime]
    last_result: str | None
    last_finished: datetime | None
    last_errors: list[str]


@dataclass
class Report:
    """Everything the report shows."""

    now: datetime
    config_file: Path
    regions: list[RegionRow]
    instances: list[InstanceRow]
    policies: list[PolicyRow]
    state_problem: str | None = None
    #: ``file:line:col: key: message`` of each policy file that cannot be used (issue #19)
    broken: dict[str, list[str]] = field(default_factory=dict)


def _missed_slots(
    setup: Setup,
    policy_names: list[str],
    newest: datetime | None,
    now: datetime,
    lookback: timedelta,
) -> tuple[list[datetime], int]:
    """Slots of ``policy_names`` after the newest image (or within ``lookback``) up to
    ``now`` minus a minute of grace: each should have an image and has none."""
    start = newest if newest is not None else now - lookback
    slots: set[datetime] = set()
    for name in policy_names:
        policy = setup.policy(name)
        if policy is None:
            continue
        for slot in iter_policy_slots(policy, start):
            if slot > now - timedelta(minutes=1) or len(slots) > 10_000:
                break
            slots.add(slot)
    ordered = sorted(slots, reverse=True)
    return ordered[:MAX_MISSED], max(0, len(ordered) - MAX_MISSED)


def gather_report(
    setup: Setup,
    client: CloudClient,
    now: datetime,
    timeout: float,
    lookback: timedelta = timedelta(days=7),
) -> Report:
    """Read the cloud and the state file into a ``Report``."""
    regions = list(dict.fromkeys(run_regions(setup) + copy_destinations(setup.policies)))
    reads = read_regions(
        regions, lambda r: read_inventory(client, r, setup.config.image_quota), timeout
    )
    inventories: dict[str, Inventory] = reads.read
    settings = PlannerSettings(
        orphan_retention=setup.config.orphans.retention,
        name_format=setup.config.name_format,
        hold_unknown=setup.hold_reason,  # images a run holds while a policy file is bad
    )
    names = {i.instance_id: i.name for inv in inventories.values() for i in inv.instances}
    home = {i.instance_id: r for r, inv in inventories.items() for i in inv.instances}
    region_rows: list[RegionRow] = []
    instance_rows: list[InstanceRow] = []
    for region in regions:
        inventory = inventories.get(region)
        if inventory is None:
            region_rows.append(
                RegionRow(
                    region,
                    cap=setup.config.image_quota,
                    error=reads.unreadable.get(region, "not read"),
                )
            )
            continue
        others = {r: inv for r, inv in inventories.items() if r != region}
        plan = plan_region(
            inventory, setup.policies, (), now, settings, sources=others, make_copies=False
        )
        region_rows.append(
            RegionRow(
                region,
                quota=plan.quota,
                account_quota=inventory.account_quota,
                cap=inventory.quota_cap,
                managed=plan.used - plan.unmanaged,
                unmanaged=plan.unmanaged,
                disk_warnings=tuple(
                    region_disk_warnings(inventory, setup.policies, setup.config.name_format)
                ),
            )
        )
        instance_rows += _instance_rows(
            setup, inventory, plan, names=names, home=home, now=now, lookback=lookback
        )
    policy_rows, problem = _policy_rows(setup, now)
    broken = {b.file: [str(p) for p in b.problems] for b in setup.broken}
    return Report(
        now, setup.config.source, region_rows, instance_rows, policy_rows, problem, broken
    )


def _instance_rows(
    setup: Setup,
    inventory: Inventory,
    plan: Plan,
    *,
    names: dict[str, str],
    home: dict[str, str],
    now: datetime,
    lookback: timedelta,
) -> list[InstanceRow]:
    """One row per instance of ``inventory``'s region (targeted ones, and those whose images
    or copies the plan decides about), with its images newest first and its missed slots."""
    region = inventory.region
    resolution = resolve_targets(region, setup.policies, inventory.instances)
    rows: dict[str, InstanceRow] = {}
    for instance_id, policies in sorted(resolution.policies_by_instance.items()):
        rows[instance_id] = InstanceRow(
            region, instance_id, names.get(instance_id), [p.name for p in policies]
        )
    snapshots = {image.image_id: image.snapshots for image in inventory.images}
    for decision in plan.decisions:
        row = rows.get(decision.instance_id)
        if row is None:
            source = home.get(decision.instance_id)
            row = rows[decision.instance_id] = InstanceRow(
                region,
                decision.instance_id,
                names.get(decision.instance_id),
                [],
                copies_from=source if source and source != region else None,
                orphan=decision.orphan,
            )
        row.images.append(
            ImageRow(
                decision.image_id,
                decision.image_name,
                decision.slot,
                decision.state.value,
                image_fate(decision),
                decision.delete_kind is not None,
                decision.pinned,
                describe_snapshots(snapshots.get(decision.image_id, ())),
            )
        )
    for row in rows.values():
        row.images.sort(key=lambda image: image.slot, reverse=True)
        if row.policies:
            normal = [i.slot for i in row.images if i.state == "NORMAL"]
            row.missed, row.missed_more = _missed_slots(
                setup, row.policies, max(normal, default=None), now, lookback
            )
    return list(rows.values())


def _policy_rows(setup: Setup, now: datetime) -> tuple[list[PolicyRow], str | None]:
    """One row per policy (next slots, last result from the state file), and the state
    file's problem if it could not be read."""
    state = DaemonState()
    problem = None
    try:
        state = read_state(setup.config.state_dir / STATE_FILE_NAME)
    except (ValueError, OSError) as error:
        problem = str(error)
    policy_rows = []
    for policy in setup.policies:
        run = state.policies.get(policy.name)
        policy_rows.append(
            PolicyRow(
                policy.name,
                ", ".join(s.describe() for s in policy.schedules),
                list(policy.regions),
                next_policy_slots(policy, now, NEXT_SLOTS),
                run.result if run else None,
                run.finished if run else None,
                list(run.errors) if run else [],
            )
        )
    return policy_rows, problem
