"""``cvmkeeper images``: the managed images of each instance, and why each is still there.

Read-only. Each region is read and planned with nothing due (the retention a run would
apply now), so every managed image shows the rule that keeps it or "expires at next run".
"""

from __future__ import annotations

import sys
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import click

from cvmkeeper.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    config_option,
    iso_utc,
    load_or_exit,
    print_json,
    utc_now,
)
from cvmkeeper.cli.plan_cmd import check_choices, client_or_exit, region_option
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.core.durations import format_duration
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.plan import ImageDecision, Plan
from cvmkeeper.core.planner import PlannerSettings, plan_region
from cvmkeeper.core.targets import resolve_targets
from cvmkeeper.executor.executor import read_inventory
from cvmkeeper.executor.runner import run_regions

EXPIRES = "expires at next run"


def image_fate(decision: ImageDecision) -> str:
    """The rule that keeps the image, or when it goes."""
    if decision.delete_kind is not None:
        return f"{EXPIRES} ({', '.join(decision.reasons) or decision.delete_kind.value})"
    return ", ".join(decision.reasons) or "kept"


def age_text(age: timedelta) -> str:
    """``3h5m`` for people (minutes are enough for images)."""
    return format_duration(timedelta(minutes=max(0, int(age.total_seconds() // 60))))


def _region_json(
    plan: Plan, inventory: Inventory, instance_ids: set[str] | None, now: datetime
) -> dict[str, Any]:
    created = {image.image_id: image.created_time for image in inventory.images}
    instances: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for decision in plan.decisions:
        if instance_ids is not None and decision.instance_id not in instance_ids:
            continue
        made = created.get(decision.image_id, decision.slot)
        instances[decision.instance_id].append(
            {
                "image_id": decision.image_id,
                "image_name": decision.image_name,
                "slot": decision.slot,
                "state": decision.state.value,
                "created": made,
                "age_seconds": int((now - made).total_seconds()),
                "pinned": decision.pinned,
                "orphan": decision.orphan,
                "expires_at_next_run": decision.delete_kind is not None,
                "kept_by": image_fate(decision),
            }
        )
    return {
        "region": plan.region,
        "quota": plan.quota,
        "used": plan.used,
        "unmanaged": plan.unmanaged,
        "free": plan.free,
        "instances": dict(sorted(instances.items())),
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
@click.option("--json", "as_json", is_flag=True, help="Print the images as JSON.")
def images_command(
    *,
    config_file: str | None,
    region_names: tuple[str, ...],
    policy_name: str | None,
    as_json: bool,
) -> None:
    """List cvmkeeper's images per instance, and the rule that keeps each.

    For every region: its quota, how many images it holds and how many of them cvmkeeper
    does not manage (they are counted, never touched). Then, per instance, newest first,
    each managed image with its slot (UTC), state, age, and the retention rule that keeps
    it (e.g. "keep_daily #3 (2026-11-25)", "newest NORMAL image", "pinned"), or
    "expires at next run" with the reason. Images of instances no policy targets any more
    are marked as orphans.

    Only reads the cloud (DescribeImageQuota, DescribeImages, DescribeInstances).

    \b
    Exit status:
      0  listed
      1  a region could not be read
      2  the config is invalid, or --policy / --region names something unknown
    """
    setup = load_or_exit(config_file)
    check_choices(setup, "images", (policy_name,) if policy_name else (), region_names)
    client = client_or_exit(setup, "images")
    now = utc_now()
    regions = run_regions(setup, [policy_name] if policy_name else None)
    if region_names:
        regions = [r for r in regions if r in region_names]
    settings = PlannerSettings(
        orphan_retention=setup.config.orphans.retention, name_format=setup.config.name_format
    )
    results: list[dict[str, Any]] = []
    failed = False
    for region in regions:
        try:
            inventory = read_inventory(client, region, setup.config.image_quota)
        except CloudError as error:
            click.echo(f"images: {region}: cannot read the inventory: {error}", err=True)
            failed = True
            continue
        try:
            plan = plan_region(inventory, setup.policies, (), now, settings)
        except Exception as error:  # a planner bug: report it, list the other regions
            click.echo(f"images: {region}: planning failed: {error}", err=True)
            failed = True
            continue
        selected: set[str] | None = None
        if policy_name:
            resolution = resolve_targets(region, setup.policies, inventory.instances)
            selected = set(resolution.instances_of(policy_name))
        results.append(_region_json(plan, inventory, selected, now))
    if as_json:
        print_json({"now": now, "regions": results})
    else:
        for region_json in results:
            _print_region(region_json)
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


def _print_region(region: dict[str, Any]) -> None:
    click.echo(
        f"{region['region']}: quota {region['quota']}, used {region['used']} "
        f"({region['unmanaged']} unmanaged, never touched), free {region['free']}"
    )
    if not region["instances"]:
        click.echo("  no managed images")
    for instance_id, images in region["instances"].items():
        orphan = " (orphan: no policy targets it)" if images and images[0]["orphan"] else ""
        click.echo(f"  {instance_id}{orphan}")
        for image in images:
            click.echo(
                f"    {image['image_name']}  {image['image_id']}  slot {iso_utc(image['slot'])}  "
                f"{image['state']:8} age {age_text(timedelta(seconds=image['age_seconds']))}  "
                f"{image['kept_by']}"
            )
