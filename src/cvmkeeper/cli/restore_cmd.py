"""``cvmkeeper restore``: bring an instance back from one of its backups.

The decisions are :mod:`cvmkeeper.core.restore`'s (which image, where, what in-place takes);
the cloud work is :mod:`cvmkeeper.restore.actions`'. This module parses options, asks for
the confirmation a destructive restore needs, and prints the plan and the outcome.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

import click

from cvmkeeper.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    AtTime,
    config_option,
    iso_utc,
    load_or_exit,
    print_json,
)
from cvmkeeper.cli.plan_cmd import client_or_exit
from cvmkeeper.cloud.errors import CapacityError, CloudError
from cvmkeeper.cloud.models import ResponseFormatError
from cvmkeeper.core.durations import parse_duration
from cvmkeeper.core.restore import (
    InPlacePlan,
    LaunchPlan,
    Placement,
    RestorePoint,
    RestoreRefused,
    choose_restore_point,
    plan_in_place,
    plan_launch,
)
from cvmkeeper.executor.runner import run_regions
from cvmkeeper.executor.stop_journal import StopJournal
from cvmkeeper.restore.actions import (
    InPlaceResult,
    Located,
    RestoreFailed,
    Waiting,
    launch,
    locate,
    restore_in_place,
)


class DurationType(click.ParamType[float]):
    """A duration such as ``15m`` or ``90s``, in seconds."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse ``value`` with the policy files' duration syntax."""
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value)).total_seconds()
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _refuse(message: str, as_json: bool) -> None:
    if as_json:
        print_json({"ok": False, "refused": message})
    click.echo(f"restore: refused: {message}", err=True)
    sys.exit(EXIT_CONFIG)


def _fail(message: str, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        print_json({"ok": False, "error": message, **(extra or {})})
    click.echo(f"restore: failed: {message}", err=True)
    sys.exit(EXIT_FAILED)


# Long on purpose (~85 lines of body): the command checks its options against each other
# (one refusal each, as --help lists them) before it hands over to _restore_new or
# _restore_in_place.
@click.command("restore")
@click.argument("instance_id", metavar="INSTANCE")
@config_option
@click.option(
    "--region",
    "region_name",
    default=None,
    metavar="REGION",
    help="The region of the instance and its images. Default: look in every region "
    "of the config and the policies, in order.",
)
@click.option(
    "--image",
    "image_id",
    default=None,
    metavar="IMAGE_ID",
    help="Restore this image (one of cvmkeeper's images of INSTANCE).",
)
@click.option(
    "--slot",
    "slot",
    type=AtTime(),
    default=None,
    metavar="TIME",
    help="Restore the image of this slot (UTC minute, e.g. 2026-11-27T18:00Z).",
)
@click.option(
    "--as-of",
    "as_of",
    type=AtTime(),
    default=None,
    metavar="TIME",
    help="Restore the newest NORMAL image made at or before TIME.",
)
@click.option(
    "--new/--in-place",
    "new",
    default=True,
    help="--new (default): launch a new instance from the image and leave INSTANCE "
    "alone. --in-place: put INSTANCE itself back (its system disk is reset; "
    "destructive, needs --yes or a confirmation).",
)
@click.option(
    "--zone",
    default="",
    metavar="ZONE",
    help="--new: the zone of the new instance. Default: the source instance's.",
)
@click.option(
    "--instance-type",
    default="",
    metavar="TYPE",
    help="--new: the instance type. Default: the source instance's.",
)
@click.option(
    "--vpc",
    "vpc_id",
    default="",
    metavar="VPC_ID",
    help="--new: the VPC. Default: the source instance's.",
)
@click.option(
    "--subnet",
    "subnet_id",
    default="",
    metavar="SUBNET_ID",
    help="--new: the subnet. Default: the source instance's.",
)
@click.option(
    "--security-group",
    "security_groups",
    multiple=True,
    metavar="SG_ID",
    help="--new: a security group (repeat for several). Default: the source instance's.",
)
@click.option(
    "--data-disk-type",
    default="",
    metavar="TYPE",
    help="--new: the type of the data disks made from the image's snapshots (e.g. "
    "CLOUD_SSD). Default: the source instance's, when its data disks share one type, "
    "else CLOUD_PREMIUM (the image does not say).",
)
@click.option(
    "--name",
    "instance_name",
    default="",
    metavar="NAME",
    help="--new: the new instance's name. Default: restored-INSTANCE.",
)
@click.option(
    "--system-disk-only",
    is_flag=True,
    help="--in-place with an image that holds data disks: restore the system disk "
    "and leave the data disks as they are (they are NOT rolled back).",
)
@click.option(
    "--yes",
    is_flag=True,
    help="--in-place: do not ask for confirmation (required without a terminal).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan and its reasons; --new also sends RunInstances with DryRun "
    "(checks parameters, quota and stock). Nothing is created or changed.",
)
@click.option(
    "--timeout",
    "timeout",
    type=DurationType(),
    default="15m",
    show_default=True,
    help="How long to wait for the new instance to be RUNNING, or for the reset.",
)
@click.option(
    "--no-wait", is_flag=True, help="--new: print the new instance id without waiting for RUNNING."
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan and outcome as JSON.")
def restore_command(
    *,
    instance_id: str,
    config_file: str | None,
    region_name: str | None,
    image_id: str | None,
    slot: datetime | None,
    as_of: datetime | None,
    new: bool,
    zone: str,
    instance_type: str,
    vpc_id: str,
    subnet_id: str,
    security_groups: tuple[str, ...],
    data_disk_type: str,
    instance_name: str,
    system_disk_only: bool,
    yes: bool,
    dry_run: bool,
    timeout: float,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Restore INSTANCE from one of its backups: as a new instance, or in place.

    The restore point is --image, --slot or --as-of (at most one); by default the newest
    NORMAL image of INSTANCE. Only cvmkeeper's own images of INSTANCE are used, and no image
    is ever deleted or changed.

    --new (the default, safe) launches a new instance (RunInstances) from the image in
    INSTANCE's zone, VPC, subnet and security groups with its instance type, unless
    overridden; the image's login settings are kept (KeepImageLogin), the data disks of a
    whole-machine image are made from its snapshots, and the instance is tagged
    cvmkeeper:restored-from=IMAGE. It prints the new instance id and its private IP.
    INSTANCE may no longer exist: then give --zone, --instance-type, --vpc and --subnet.

    --in-place resets INSTANCE's system disk to the image (ResetInstance). A running
    instance is stopped first and always started again, even when the reset fails
    (journaled in state_dir, like stop_start backups). ResetInstance does not touch data
    disks: an image holding data disks is refused unless --system-disk-only, and the output
    says how to roll data disks back by hand.

    \b
    Exit status:
      0  restored (or the dry run passed)
      1  the cloud failed: launch failed, timed out, reset failed, no capacity
      2  refused, nothing done: bad options or config, no such instance or image, no
         NORMAL image, wrong region or zone, in-place without confirmation
    """
    setup = load_or_exit(config_file)
    if sum(x is not None for x in (image_id, slot, as_of)) > 1:
        _refuse("give at most one of --image, --slot, --as-of", as_json)
    placing = (zone, instance_type, vpc_id, subnet_id, security_groups, data_disk_type)
    if not new and any((*placing, instance_name)):
        _refuse(
            "--zone, --instance-type, --vpc, --subnet, --security-group, --data-disk-type and "
            "--name are for --new",
            as_json,
        )
    if new and system_disk_only:
        _refuse("--system-disk-only is for --in-place", as_json)
    regions = [region_name] if region_name else run_regions(setup)
    if not regions:
        _refuse("no region to look in: give --region", as_json)
    client = client_or_exit(setup, "restore")
    fmt = setup.config.name_format
    try:
        located = locate(client, regions, instance_id, fmt)
        point = choose_restore_point(
            located.images,
            instance_id,
            located.region,
            image_id=image_id,
            slot=slot,
            as_of=as_of,
            fmt=fmt,
        )
    except RestoreRefused as refusal:
        _refuse(str(refusal), as_json)
        return
    except ResponseFormatError as error:
        _fail(f"cannot read {instance_id}: {error}", as_json)
        return
    except CloudError as error:
        if error.code == "UnsupportedRegion" or error.code.startswith("InvalidRegion"):
            _refuse(f"region {error.region}: {error.code}: {error.message}", as_json)
        _fail(f"cannot read {instance_id}: {error}", as_json)
        return
    waiting = Waiting(
        seconds=0 if no_wait else timeout,
        poll_seconds=min(5.0, setup.config.api.poll_interval.total_seconds()),
    )
    if new:
        overrides = Placement(
            zone, instance_type, vpc_id, subnet_id, tuple(security_groups), data_disk_type
        )
        _restore_new(
            client,
            located,
            point,
            overrides=overrides,
            name=instance_name or f"restored-{instance_id}",
            dry_run=dry_run,
            waiting=waiting,
            as_json=as_json,
        )
    else:
        _restore_in_place(
            client,
            located,
            point,
            system_disk_only=system_disk_only,
            yes=yes,
            dry_run=dry_run,
            waiting=waiting,
            journal=StopJournal(setup.config.state_dir),
            as_json=as_json,
        )


def _point_json(located: Located, point: RestorePoint) -> dict[str, Any]:
    return {
        "instance_id": located.instance_id,
        "region": located.region,
        "instance_exists": located.instance is not None,
        "image_id": point.image_id,
        "image_name": point.image.name,
        "slot": iso_utc(point.slot),
        "created": None if point.image.created_time is None else iso_utc(point.image.created_time),
        "chosen_because": point.reason,
        "data_disk_snapshots": [s for s, _ in point.data_snapshots],
    }


def _print_point(located: Located, point: RestorePoint) -> None:
    when = point.image.created_time
    made = "at an unreported time" if when is None else iso_utc(when)
    click.echo(
        f"restore point: {point.image_id} ({point.image.name}), slot "
        f"{iso_utc(point.slot)}, made {made} in "
        f"{located.region}: {point.reason}"
    )


def _restore_new(
    client: Any,
    located: Located,
    point: RestorePoint,
    *,
    overrides: Placement,
    name: str,
    dry_run: bool,
    waiting: Waiting,
    as_json: bool,
) -> None:
    try:
        plan = plan_launch(located.region, point, located.placement, overrides)
    except RestoreRefused as refusal:
        _refuse(str(refusal), as_json)
        return
    document: dict[str, Any] = {
        "mode": "new",
        "dry_run": dry_run,
        **_point_json(located, point),
        "plan": _plan_json(plan),
    }
    if not as_json:
        _print_point(located, point)
        click.echo(f"launch a new instance {name!r} from {plan.image_id}:")
        for reason in plan.reasons:
            click.echo(f"  {reason}")
        click.echo(f"  tags {', '.join(f'{k}={v}' for k, v in plan.tags.items())}")
        for warning in plan.warnings:
            click.echo(f"warning: {warning}")
    try:
        result = launch(client, plan, waiting, name=name, dry_run=dry_run)
    except RestoreFailed as failure:
        _fail(str(failure), as_json, document)
        return
    except CapacityError as error:
        _fail(
            f"no capacity: {error.code}: {error.message} (try another --zone or --instance-type)",
            as_json,
            document,
        )
        return
    except (CloudError, ResponseFormatError) as error:
        _fail(f"RunInstances failed: {error}", as_json, document)
        return
    document.update(
        {
            "ok": True,
            "instance_id": result.instance_id,
            "state": result.state,
            "private_ips": list(result.private_ips),
            "seconds_to_running": result.seconds_to_running,
        }
    )
    if as_json:
        print_json(document)
    elif dry_run:
        click.echo("dry run: RunInstances with DryRun passed; nothing was launched")
    else:
        click.echo(f"launched {result.instance_id} ({result.state})")
        if result.private_ips:
            click.echo(
                f"reach it at {', '.join(result.private_ips)} (private IP, in "
                f"{plan.placement.vpc_id}/{plan.placement.subnet_id}); log in as the "
                "image allowed (its login settings were kept)"
            )
    sys.exit(EXIT_OK)


def _plan_json(plan: LaunchPlan) -> dict[str, Any]:
    p = plan.placement
    return {
        "zone": p.zone,
        "instance_type": p.instance_type,
        "vpc_id": p.vpc_id,
        "subnet_id": p.subnet_id,
        "security_group_ids": list(p.security_group_ids),
        "data_disks": [
            {"snapshot_id": s, "size_gib": n, "disk_type": plan.data_disk_type}
            for s, n in plan.data_disks
        ],
        "tags": dict(plan.tags),
        "reasons": list(plan.reasons),
        "warnings": list(plan.warnings),
    }


def _print_in_place_plan(located: Located, point: RestorePoint, plan: InPlacePlan) -> None:
    """The restore point and the in-place plan's steps and warnings, for people."""
    _print_point(located, point)
    click.echo(f"in place (DESTRUCTIVE: the system disk of {plan.instance_id} is overwritten):")
    for step in plan.steps:
        click.echo(f"  {step}")
    for warning in plan.warnings:
        click.echo(f"warning: {warning}")


def _confirm_in_place(plan: InPlacePlan, as_json: bool) -> None:
    """Ask at a terminal before overwriting a system disk; refuse (exit) without one or
    without a yes."""
    if not sys.stdin.isatty():
        _refuse("--in-place overwrites the system disk; pass --yes (no terminal to ask)", as_json)
    if not click.confirm(
        f"Reset the system disk of {plan.instance_id} to {plan.image_id}?", default=False, err=True
    ):
        _refuse("not confirmed", as_json)


def _restore_in_place(
    client: Any,
    located: Located,
    point: RestorePoint,
    *,
    system_disk_only: bool,
    yes: bool,
    dry_run: bool,
    waiting: Waiting,
    journal: StopJournal,
    as_json: bool,
) -> None:
    if located.instance is None:
        _refuse(f"{located.instance_id} no longer exists; restore it with --new", as_json)
        return
    try:
        plan = plan_in_place(
            located.instance_id, located.instance.state, point, system_disk_only=system_disk_only
        )
    except RestoreRefused as refusal:
        _refuse(str(refusal), as_json)
        return
    document: dict[str, Any] = {
        "mode": "in-place",
        "dry_run": dry_run,
        **_point_json(located, point),
        "steps": list(plan.steps),
        "warnings": list(plan.warnings),
    }
    if not as_json:
        _print_in_place_plan(located, point, plan)
    if dry_run:
        document["ok"] = True
        if as_json:
            print_json(document)
        else:
            click.echo("dry run: nothing was changed (ResetInstance has no DryRun)")
        sys.exit(EXIT_OK)
    if not yes:
        _confirm_in_place(plan, as_json)
    progress = (lambda _m: None) if as_json else (lambda m: click.echo(m, err=True))
    started = time.monotonic()
    try:
        result = restore_in_place(
            client, located.region, plan, waiting, journal=journal, progress=progress
        )
    except RestoreFailed as failure:
        _fail(str(failure), as_json, document)
        return
    except (CloudError, ResponseFormatError) as error:
        _fail(f"{error}", as_json, document)
        return
    document.update(
        {
            "ok": not result.problems,
            "reset": result.reset,
            "restarted": result.restarted,
            "state": result.final_state,
            "problems": result.problems,
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    document["warnings"] = [*plan.warnings, *result.warnings]
    if as_json:
        print_json(document)
    else:
        _print_in_place_result(plan, result)
    sys.exit(EXIT_FAILED if result.problems else EXIT_OK)


def _print_in_place_result(plan: InPlacePlan, result: InPlaceResult) -> None:
    """What an in-place restore did, for people: the state, warnings, problems."""
    click.echo(
        f"restored {plan.instance_id} in place from {plan.image_id}; it is "
        f"{result.final_state or 'unknown'} now"
    )
    for warning in result.warnings:
        click.echo(f"warning: {warning}")
    for problem in result.problems:
        click.echo(f"problem: {problem}", err=True)
