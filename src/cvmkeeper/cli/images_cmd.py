"""``cvmkeeper images``: the managed images of each instance, and why each is still there.

Read-only. Each region is read and planned with nothing due (the retention a run would
apply now), so every managed image shows the rule that keeps it or "expires at next run".
Regions that policies copy images to are listed too, their copies grouped by instance with
the region the instance lives in, retained by the copy retention.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import click

from cvmkeeper.cli.broken_files import broken_files_json, load_partial_or_exit
from cvmkeeper.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    config_option,
    iso_utc,
    print_json,
    utc_now,
)
from cvmkeeper.cli.plan_cmd import check_choices, client_or_exit, region_option
from cvmkeeper.cli.region_reads import read_regions
from cvmkeeper.cli.timeout_option import timeout_option
from cvmkeeper.config import Setup
from cvmkeeper.core.disks import (
    asked_disk_count,
    asked_disk_ids,
    describe_snapshots,
    shortfall,
    snapshots_json,
)
from cvmkeeper.core.durations import format_duration
from cvmkeeper.core.health import assess_region
from cvmkeeper.core.inventory import Image, Inventory
from cvmkeeper.core.naming import is_managed
from cvmkeeper.core.plan import ImageDecision, Plan
from cvmkeeper.core.planner import PlannerSettings, plan_region
from cvmkeeper.core.targets import resolve_targets
from cvmkeeper.executor.copies import copy_destinations, copy_source_regions
from cvmkeeper.executor.region import read_inventory
from cvmkeeper.executor.run_health import health_settings
from cvmkeeper.executor.runner import run_regions

EXPIRES = "expires at next run"


def image_fate(decision: ImageDecision) -> str:
    """The rule that keeps the image, or when it goes."""
    if decision.delete_kind is not None:
        return f"{EXPIRES} ({', '.join(decision.reasons) or decision.delete_kind.value})"
    return ", ".join(decision.reasons) or "kept"


def age_text(age: timedelta | None) -> str:
    """``3h5m`` for people (minutes are enough for images); ``?`` when the cloud did not say
    when the image was made (``CreatedTime`` may be null, per the SDK's model)."""
    if age is None:
        return "?"
    return format_duration(timedelta(minutes=max(0, int(age.total_seconds() // 60))))


def _age_of(age_seconds: int | None) -> str:
    return age_text(None if age_seconds is None else timedelta(seconds=age_seconds))


def holds_text(image: Image) -> str:
    """``system 50G + data 200G (disk-db1data0)``: the ``SnapshotSet``, and the data disks
    cvmkeeper asked for when it made the image (the ``SnapshotSet`` does not name disks)."""
    ids = asked_disk_ids(image.tags)
    text = describe_snapshots(image.snapshots)
    return f"{text} ({', '.join(ids)})" if ids else text


def image_disks_json(image: Image | None) -> dict[str, Any]:
    """What an image holds (rule 10), for the JSON outputs: ``disks`` (its ``SnapshotSet``),
    ``holds`` (``system 50G + data 100G``), ``data_disks_asked`` (the ``cvmkeeper:disks``
    tag; null for images made without it) and ``fewer_disks_than_asked``."""
    if image is None:
        return {
            "disks": [],
            "holds": "?",
            "data_disks_asked": None,
            "fewer_disks_than_asked": False,
        }
    return {
        "disks": snapshots_json(image.snapshots),
        "holds": holds_text(image),
        "data_disks_asked": asked_disk_count(image.tags),
        "fewer_disks_than_asked": shortfall(image.tags, image.snapshots) is not None,
    }


def _region_json(
    plan: Plan,
    inventory: Inventory,
    instance_ids: set[str] | None,
    now: datetime,
    home: dict[str, str],
    *,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    created = {image.image_id: image.created_time for image in inventory.images}
    by_id = {image.image_id: image for image in inventory.images}
    instances: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for decision in plan.decisions:
        if instance_ids is not None and decision.instance_id not in instance_ids:
            continue
        # a null CreatedTime (issue #18) shows as null, not as the slot
        made = created.get(decision.image_id, decision.slot)
        instances[decision.instance_id].append(
            {
                "image_id": decision.image_id,
                "image_name": decision.image_name,
                "slot": decision.slot,
                "state": decision.state.value,
                "created": made,
                "age_seconds": None if made is None else int((now - made).total_seconds()),
                "pinned": decision.pinned,
                "orphan": decision.orphan,
                "expires_at_next_run": decision.delete_kind is not None,
                "kept_by": image_fate(decision),
                **image_disks_json(by_id.get(decision.image_id)),
            }
        )
    if instance_ids is not None:
        # A filtered listing names the selected instances of this region that hold no
        # managed image at all: an instance never backed up is the stalest of all, and
        # leaving it out would make `images --stale` (or --instance, --policy) hide it.
        for instance_id in instance_ids:
            if home.get(instance_id) == plan.region and instance_id not in instances:
                instances[instance_id] = []
    return {
        "region": plan.region,
        "quota": plan.quota,
        "used": plan.used,
        "unmanaged": plan.unmanaged,
        "free": plan.free,
        "instances": dict(sorted(instances.items())),
        "instance_names": {i: (names or {}).get(i) for i in sorted(instances)},
        "copies_from": {
            instance_id: home[instance_id]
            for instance_id in sorted(instances)
            if home.get(instance_id, plan.region) != plan.region
        },
    }


@click.command("images")
@config_option
@region_option
@click.option(
    "--policy",
    "policy_name",
    default=None,
    metavar="NAME",
    help="Only the instances this policy targets.",
)
@click.option(
    "--instance",
    "instance_filters",
    multiple=True,
    metavar="ID|NAME",
    help="Only this instance, by id (ins-...) or by its name in the console; repeat for more.",
)
@click.option(
    "--stale",
    is_flag=True,
    help="Only instances whose newest NORMAL backup (or copy) is stale: older than the "
    "policy's period times sentry.freshness_factor, or missing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the images as JSON.")
@timeout_option
def images_command(
    *,
    config_file: str | None,
    region_names: tuple[str, ...],
    policy_name: str | None,
    instance_filters: tuple[str, ...],
    stale: bool,
    as_json: bool,
    timeout_seconds: float,
) -> None:
    """List cvmkeeper's images per instance, and the rule that keeps each.

    For every region: its quota, how many images it holds and how many of them cvmkeeper
    does not manage (they are counted, never touched). Then, per instance, newest first,
    each managed image with its slot (UTC), state, age, and the retention rule that keeps
    it (e.g. "keep_daily #3 (2026-11-25)", "newest NORMAL image", "pinned"), or
    "expires at next run" with the reason, and what it holds: one snapshot per disk
    ("holds system 50G + data 200G"; "?" while the cloud does not report it). Images of
    instances no policy targets any more are marked as orphans. Copies in other regions
    (copies:) are listed under their destination region, with the region their instance
    lives in.

    Each instance shows its name (from DescribeInstances) beside its id. The filters
    --region, --policy, --instance and --stale combine (an instance must pass all).

    Only reads the cloud (DescribeImageQuota, DescribeImages, DescribeInstances).

    \b
    Exit status:
      0  listed
      1  a region could not be read, or a policy file cannot be used
      2  the config is invalid, or --policy / --region / --instance names something unknown

    A policy file that cannot be used is named on stderr with every problem (and in
    --json as broken_policy_files); the images of the other policies are listed, and
    those its policy may keep are shown held, as the run holds them (exit 1).
    """
    setup = load_partial_or_exit(config_file, "images")
    check_choices(setup, "images", (policy_name,) if policy_name else (), region_names)
    client = client_or_exit(setup, "images")
    now = utc_now()
    regions = listed_regions(setup, policy_name, region_names)
    inventories, read_failed = _read_inventories(client, setup, regions, timeout_seconds)
    names = {i.instance_id: i.name for inv in inventories.values() for i in inv.instances}
    wanted = _wanted_or_exit(instance_filters, names, inventories, setup)
    stale_ids = stale_instances(setup, inventories, now) if stale else None
    selection = InstanceSelection(policy_name=policy_name, wanted=wanted, stale_ids=stale_ids)
    results, plan_failed = _list_regions(
        setup, regions, inventories, selection, now=now, names=names
    )
    filtered = selection != InstanceSelection(None, None, None)
    _print_listing(results, now, setup, as_json=as_json, filtered=filtered)
    sys.exit(EXIT_FAILED if read_failed or plan_failed or setup.broken else EXIT_OK)


def _print_listing(
    results: list[dict[str, Any]],
    now: datetime,
    setup: Setup,
    *,
    as_json: bool,
    filtered: bool = False,
) -> None:
    """The listed regions on stdout: the JSON document, or the text for people."""
    if as_json:
        print_json(
            {
                "now": now,
                "regions": results,
                "broken_policy_files": broken_files_json(setup.broken),
            }
        )
    else:
        for region_json in results:
            _print_region(region_json, filtered=filtered)


def listed_regions(
    setup: Setup, policy_name: str | None, region_names: tuple[str, ...]
) -> list[str]:
    """The regions listed: those a run of the policies (all, or ``--policy``) plans and the
    regions they copy to, narrowed to ``--region`` when given."""
    chosen = [policy_name] if policy_name else None
    copying = [p for p in setup.policies if not policy_name or p.name == policy_name]
    regions = list(dict.fromkeys(run_regions(setup, chosen) + copy_destinations(copying)))
    if region_names:
        regions = [r for r in regions if r in region_names]
    return regions


def _wanted_or_exit(
    instance_filters: tuple[str, ...],
    names: dict[str, str],
    inventories: dict[str, Inventory],
    setup: Setup,
) -> set[str] | None:
    """The instances ``--instance`` selects (``None``: no filter); exit 2 when the filters
    name no instance of the regions read."""
    wanted = match_instances(instance_filters, names, inventories.values(), setup)
    if wanted is not None and not wanted:
        click.echo(
            f"images: --instance {', '.join(instance_filters)}: no such instance "
            "(by id or name) in the regions read",
            err=True,
        )
        sys.exit(EXIT_CONFIG)
    return wanted


@dataclass(frozen=True)
class InstanceSelection:
    """What the filters keep of a region's instances; they combine (an instance must pass
    all). ``None`` in a field: that filter is not given."""

    #: ``--policy``: the instances it targets in the region or copies into it.
    policy_name: str | None
    #: ``--instance``: the instance ids named (by id or name).
    wanted: set[str] | None
    #: ``--stale``: per region, the instances whose newest backup or copy is stale.
    stale_ids: dict[str, set[str]] | None

    def instances(
        self, setup: Setup, inventories: dict[str, Inventory], region: str
    ) -> set[str] | None:
        """The instance ids listed in ``region``; ``None``: every instance."""
        selected = (
            _policy_instances(setup, inventories, region, self.policy_name)
            if self.policy_name
            else None
        )
        stale = None if self.stale_ids is None else self.stale_ids.get(region, set())
        for narrower in (self.wanted, stale):
            if narrower is not None:
                selected = set(narrower) if selected is None else selected & narrower
        return selected


def _list_regions(
    setup: Setup,
    regions: list[str],
    inventories: dict[str, Inventory],
    selection: InstanceSelection,
    *,
    now: datetime,
    names: dict[str, str],
) -> tuple[list[dict[str, Any]], bool]:
    """Each region read, planned with nothing due and listed as JSON (``_region_json``);
    True as well when a region could not be planned (said on stderr; the others are
    listed)."""
    settings = PlannerSettings(
        orphan_retention=setup.config.orphans.retention,
        name_format=setup.config.name_format,
        hold_unknown=setup.hold_reason,  # what a run holds while a policy file is bad
    )
    home = {i.instance_id: r for r, inv in inventories.items() for i in inv.instances}
    results: list[dict[str, Any]] = []
    failed = False
    for region in regions:
        inventory = inventories.get(region)
        if inventory is None:
            continue
        others = {r: inv for r, inv in inventories.items() if r != region}
        try:
            plan = plan_region(
                inventory, setup.policies, (), now, settings, sources=others, make_copies=False
            )
        except Exception as error:  # a planner bug: report it, list the other regions
            click.echo(f"images: {region}: planning failed: {error}", err=True)
            failed = True
            continue
        selected = selection.instances(setup, inventories, region)
        results.append(_region_json(plan, inventory, selected, now, home, names=names))
    return results, failed


def _read_inventories(
    client: Any, setup: Setup, regions: list[str], timeout_seconds: float
) -> tuple[dict[str, Inventory], bool]:
    """The inventories of ``regions`` and of the source regions of their copies (read for
    copy retention, not listed); True as well when a region could not be read (said on
    stderr). The regions are read in parallel within ``timeout_seconds`` all together:
    one after another, each call waiting out its timeout and retries, a silent endpoint
    kept an operator waiting six minutes for three regions."""
    sources = [r for region in regions for r in copy_source_regions(setup.policies, region)]
    reads = read_regions(
        list(dict.fromkeys([*regions, *sources])),
        lambda region: read_inventory(client, region, setup.config.image_quota),
        timeout_seconds,
    )
    for region, problem in reads.unreadable.items():
        click.echo(f"images: {region}: {problem}", err=True)
    return reads.read, bool(reads.unreadable)


def _policy_instances(
    setup: Setup, inventories: dict[str, Inventory], region: str, policy_name: str
) -> set[str]:
    """The instances ``--policy`` selects in ``region``: its targets there, and the
    instances whose images it copies there from other regions."""
    selected: set[str] = set()
    for source_region, source in inventories.items():
        if source_region == region or any(
            p.name == policy_name and p.copy_to(region) for p in setup.policies
        ):
            resolution = resolve_targets(source_region, setup.policies, source.instances)
            selected |= set(resolution.instances_of(policy_name))
    return selected


def match_instances(
    filters: tuple[str, ...],
    names: dict[str, str],
    inventories: Iterable[Inventory],
    setup: Setup,
) -> set[str] | None:
    """The instance ids ``--instance`` selects (by id or by name); ``None``: no filter.

    An id also matches when the instance is gone but its images remain (orphans).
    """
    if not filters:
        return None
    fmt = setup.config.name_format
    image_owners = {
        owner.instance_id
        for inventory in inventories
        for image in inventory.images
        if (owner := is_managed(image, fmt)) is not None
    }
    known = set(names) | image_owners
    return {
        instance_id
        for instance_id in known
        if instance_id in filters or names.get(instance_id) in filters
    }


def stale_instances(
    setup: Setup, inventories: dict[str, Inventory], now: datetime
) -> dict[str, set[str]]:
    """Per region, the instances whose newest backup or copy is stale (``core.health``,
    the rule ``status`` and the run's alerts use)."""
    settings = health_settings(setup)
    found: dict[str, set[str]] = {}
    for region, inventory in inventories.items():
        health = assess_region(
            inventory, setup.policies, now, settings, setup.config.name_format, sources=inventories
        )
        found[region] = {item.instance_id for item in health.stale} | {
            item.instance_id for item in health.stale_copies
        }
    return found


def _print_region(region: dict[str, Any], *, filtered: bool = False) -> None:
    click.echo(
        f"{region['region']}: quota {region['quota']}, used {region['used']} "
        f"({region['unmanaged']} unmanaged, never touched), free {region['free']}"
    )
    if not region["instances"]:
        click.echo("  no managed images" + (" match the filters" if filtered else ""))
    for instance_id, images in region["instances"].items():
        orphan = " (orphan: no policy targets it)" if images and images[0]["orphan"] else ""
        source = region["copies_from"].get(instance_id)
        copies = f" (copies; the instance is in {source})" if source else ""
        name = region.get("instance_names", {}).get(instance_id)
        named = f" ({name})" if name and name != instance_id else ""
        click.echo(f"  {instance_id}{named}{copies}{orphan}")
        if not images:
            click.echo("    NO BACKUP: no managed image of this instance in this region")
        for image in images:
            short = "  FEWER DISKS THAN ASKED" if image["fewer_disks_than_asked"] else ""
            click.echo(
                f"    {image['image_name']}  {image['image_id']}  slot {iso_utc(image['slot'])}  "
                f"{image['state']:8} age {_age_of(image['age_seconds'])}  "
                f"{image['kept_by']}\n      holds {image['holds']}{short}"
            )
