"""``cvmkeeper restore``: bring an instance back from one of its backups.

The decisions are :mod:`cvmkeeper.core.restore`'s (which image, where, what in-place takes);
the cloud work is :mod:`cvmkeeper.restore.actions`'. This module parses options, asks for
the confirmation a destructive restore needs, and prints the plan and the outcome.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from cvmkeeper.cli.common import AtTime, config_option, iso_utc
from cvmkeeper.cli.interrupts import Interruption, signals_noted
from cvmkeeper.cli.partial_load import load_for_restore
from cvmkeeper.cli.plan_cmd import client_or_exit
from cvmkeeper.cli.restore_request import Reply, RestoreRequest
from cvmkeeper.cloud.errors import CapacityError, CloudError
from cvmkeeper.cloud.models import ResponseFormatError
from cvmkeeper.config import Setup
from cvmkeeper.core.durations import parse_duration
from cvmkeeper.core.naming import NameFormat
from cvmkeeper.core.restore import (
    InPlacePlan,
    LaunchPlan,
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
    LaunchResult,
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
def restore_command(**options: Any) -> None:
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

    Only the daemon config is needed, never a policy: a policy file that cannot be used
    (even INSTANCE's own) does not stop a restore. It is named on stderr with every problem
    (and in --json as broken_policy_files), and the restore's exit status stands: a restore
    is whole without any policy. The regions only such a file names are not searched, so
    give --region then.

    \b
    Exit status:
      0  restored (or the dry run passed)
      1  the cloud failed: launch failed, timed out, reset failed, no capacity
      2  refused, nothing done: bad options or config, no such instance or image, no
         NORMAL image, wrong region or zone, in-place without confirmation
    """
    request = RestoreRequest.from_options(options)
    setup = load_for_restore(options["config_file"])
    reply = Reply(request.as_json, setup.broken)
    if request.refusal():
        reply.refuse(request.refusal())
    regions = [request.region_name] if request.region_name else run_regions(setup)
    if not regions:
        reply.refuse("no region to look in: give --region" + _unsearched(setup, request))
    client = client_or_exit(setup, "restore")
    located, point = _find_point(
        client,
        regions,
        request,
        fmt=setup.config.name_format,
        reply=reply,
        hint=_unsearched(setup, request),
    )
    waiting = Waiting(
        seconds=0 if request.no_wait else request.timeout,
        poll_seconds=min(5.0, setup.config.api.poll_interval.total_seconds()),
    )
    if request.new:
        _restore_new(client, located, point, request=request, waiting=waiting, reply=reply)
    else:
        _restore_in_place(
            client,
            located,
            point,
            request=request,
            waiting=waiting,
            journal=StopJournal(setup.config.state_dir),
            reply=reply,
        )


def _unsearched(setup: Setup, request: RestoreRequest) -> str:
    """The hint when a bad policy file may name the region looked for."""
    if request.region_name or not setup.broken:
        return ""
    files = ", ".join(b.file for b in setup.broken)
    return f" (policy file(s) {files} cannot be used: regions only they name are not searched)"


def _find_point(
    client: Any,
    regions: list[str],
    request: RestoreRequest,
    *,
    fmt: NameFormat,
    reply: Reply,
    hint: str,
) -> tuple[Located, RestorePoint]:
    """Where INSTANCE is and the image to restore, or refuse / fail (exit); ``hint`` is
    added to a refusal to find it (regions a bad policy file may name)."""
    try:
        located = locate(client, regions, request.instance_id, fmt)
        point = choose_restore_point(
            located.images,
            request.instance_id,
            located.region,
            image_id=request.image_id,
            slot=request.slot,
            as_of=request.as_of,
            fmt=fmt,
        )
    except RestoreRefused as refusal:
        reply.refuse(f"{refusal}{hint}")
    except ResponseFormatError as error:
        reply.fail(f"cannot read {request.instance_id}: {error}")
    except CloudError as error:
        if error.code == "UnsupportedRegion" or error.code.startswith("InvalidRegion"):
            reply.refuse(f"region {error.region}: {error.code}: {error.message}")
        reply.fail(f"cannot read {request.instance_id}: {error}")
    return located, point


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
    request: RestoreRequest,
    waiting: Waiting,
    reply: Reply,
) -> None:
    """Launch a new instance from ``point`` (or only check it, --dry-run); exits."""
    try:
        plan = plan_launch(located.region, point, located.placement, request.overrides)
    except RestoreRefused as refusal:
        reply.refuse(str(refusal))
    document: dict[str, Any] = {
        "mode": "new",
        "dry_run": request.dry_run,
        **_point_json(located, point),
        "plan": _plan_json(plan),
    }
    if not request.as_json:
        _print_launch_plan(located, point, plan, request.name)
    try:
        result = launch(client, plan, waiting, name=request.name, dry_run=request.dry_run)
    except RestoreFailed as failure:
        reply.fail(str(failure), document)
    except CapacityError as error:
        reply.fail(
            f"no capacity: {error.code}: {error.message} (try another --zone or --instance-type)",
            document,
        )
    except (CloudError, ResponseFormatError) as error:
        reply.fail(f"RunInstances failed: {error}", document)
    document.update(
        {
            "ok": True,
            "instance_id": result.instance_id,
            "state": result.state,
            "private_ips": list(result.private_ips),
            "seconds_to_running": result.seconds_to_running,
        }
    )
    if not request.as_json:
        _print_launched(plan, result, request.dry_run)
    reply.done(document)


def _print_launch_plan(located: Located, point: RestorePoint, plan: LaunchPlan, name: str) -> None:
    """The restore point and what the new instance gets, with why, for people."""
    _print_point(located, point)
    click.echo(f"launch a new instance {name!r} from {plan.image_id}:")
    for reason in plan.reasons:
        click.echo(f"  {reason}")
    click.echo(f"  tags {', '.join(f'{k}={v}' for k, v in plan.tags.items())}")
    for warning in plan.warnings:
        click.echo(f"warning: {warning}")


def _print_launched(plan: LaunchPlan, result: LaunchResult, dry_run: bool) -> None:
    """The new instance and how to reach it, for people."""
    if dry_run:
        click.echo("dry run: RunInstances with DryRun passed; nothing was launched")
        return
    click.echo(f"launched {result.instance_id} ({result.state})")
    if result.private_ips:
        click.echo(
            f"reach it at {', '.join(result.private_ips)} (private IP, in "
            f"{plan.placement.vpc_id}/{plan.placement.subnet_id}); log in as the "
            "image allowed (its login settings were kept)"
        )


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


def _confirm_in_place(plan: InPlacePlan, reply: Reply) -> None:
    """Ask at a terminal before overwriting a system disk; refuse (exit) without one or
    without a yes."""
    if not sys.stdin.isatty():
        reply.refuse("--in-place overwrites the system disk; pass --yes (no terminal to ask)")
    if not click.confirm(
        f"Reset the system disk of {plan.instance_id} to {plan.image_id}?", default=False, err=True
    ):
        reply.refuse("not confirmed")


def _restore_in_place(
    client: Any,
    located: Located,
    point: RestorePoint,
    *,
    request: RestoreRequest,
    waiting: Waiting,
    journal: StopJournal,
    reply: Reply,
) -> None:
    """Reset INSTANCE's system disk to ``point`` (or only plan it, --dry-run); exits."""
    if located.instance is None:
        reply.refuse(f"{located.instance_id} no longer exists; restore it with --new")
    try:
        plan = plan_in_place(
            located.instance_id,
            located.instance.state,
            point,
            system_disk_only=request.system_disk_only,
        )
    except RestoreRefused as refusal:
        reply.refuse(str(refusal))
    document: dict[str, Any] = {
        "mode": "in-place",
        "dry_run": request.dry_run,
        **_point_json(located, point),
        "steps": list(plan.steps),
        "warnings": list(plan.warnings),
    }
    if not request.as_json:
        _print_in_place_plan(located, point, plan)
    if request.dry_run:
        if not request.as_json:
            click.echo("dry run: nothing was changed (ResetInstance has no DryRun)")
        reply.done({**document, "ok": True})
    if not request.yes:
        _confirm_in_place(plan, reply)
    progress = (lambda _m: None) if request.as_json else (lambda m: click.echo(m, err=True))
    started = time.monotonic()
    # a SIGTERM/SIGHUP (timeout, a closed terminal, kill) is noted, not raised: the reset
    # is waited for and the instance started again before the command ends (rule 9)
    with signals_noted() as interruption:
        try:
            result = restore_in_place(
                client,
                located.region,
                plan,
                waiting,
                journal=journal,
                progress=progress,
                interrupted=interruption,
            )
        except RestoreFailed as failure:
            reply.fail(_interrupted(interruption) + str(failure), document)
        except (CloudError, ResponseFormatError) as error:
            reply.fail(_interrupted(interruption) + f"{error}", document)
    if interruption():
        document["interrupted"] = interruption.name
        reply.fail(
            f"interrupted by {interruption.name}; the reset ended "
            f"{'successfully' if result.reset else 'unfinished'} and {plan.instance_id} is "
            f"{result.final_state or 'unknown'}",
            document,
        )
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
    if not request.as_json:
        _print_in_place_result(plan, result)
    reply.done(document, ok=not result.problems)


def _interrupted(interruption: Interruption) -> str:
    """The prefix of a failure message when a signal came during the restore."""
    return f"interrupted by {interruption.name}: " if interruption() else ""


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
