"""``cvmkeeper plan``: what a run would do now (or at ``--at``), without changing anything.

It is exactly a dry run of ``cvmkeeper run``: the same inventory reads, due slots and
planner, with no write and no alert. The text output is for people; ``--json`` is for
scripts and tests.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from cvmkeeper.alerting import NullAlerter
from cvmkeeper.cli.broken_files import broken_files_json, load_partial_or_exit
from cvmkeeper.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    F,
    at_option,
    cloud_client,
    config_option,
    print_json,
    utc_now,
)
from cvmkeeper.cli.credentials_hint import credentials_hint
from cvmkeeper.cli.policy_states import PolicyState, policy_state_lines, policy_states
from cvmkeeper.cli.timeout_option import timeout_option
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.credentials import CredentialsError
from cvmkeeper.cloud.deadline import Deadline, bound_by_deadline
from cvmkeeper.config import Setup
from cvmkeeper.core.naming import slot_tag_value
from cvmkeeper.core.plan import Copy, Create, Delete, ImageDecision, Phase, Plan, Skip, Wait
from cvmkeeper.executor.broken import broken_file_message
from cvmkeeper.executor.copies import copy_destinations
from cvmkeeper.executor.report import RunReport, plan_to_json
from cvmkeeper.executor.runner import UnknownPolicyError, run_once, run_regions

_PHASE_TEXT = {
    Phase.BEFORE_CREATE: "before the creates",
    Phase.AFTER_CREATE: "after the new images are NORMAL",
}


def policy_option(command: F) -> F:
    """``--policy NAME`` (repeatable)."""
    return click.option(
        "--policy",
        "policy_names",
        multiple=True,
        metavar="NAME",
        help="Only this policy (repeat for several); its current slot is made even if it "
        "is not due.",
    )(command)


def region_option(command: F) -> F:
    """``--region R`` (repeatable)."""
    return click.option(
        "--region",
        "region_names",
        multiple=True,
        metavar="REGION",
        help="Only this region (repeat for several). Default: every region of the config "
        "and the policies.",
    )(command)


def client_or_exit(setup: Setup, command: str) -> CloudClient:
    """The cloud client of the config, or exit 2 when no credentials are found."""
    try:
        return cloud_client(setup.config)
    except CredentialsError as error:
        click.echo(f"{command}: {error}", err=True)
        for line in credentials_hint(error, command):
            click.echo(line, err=True)
        sys.exit(EXIT_CONFIG)


def check_choices(
    setup: Setup, command: str, policy_names: Sequence[str], region_names: Sequence[str]
) -> None:
    """Exit 2 for a ``--policy`` or ``--region`` the config does not know."""
    unknown = [name for name in policy_names if setup.policy(name) is None]
    for broken in setup.broken:  # a partial load (run): say why, not only "no policy"
        if broken.name in unknown:
            click.echo(
                f"{command}: policy {broken.name!r} cannot be used: {broken.summary()}", err=True
            )
    if unknown:
        known = ", ".join(p.name for p in setup.policies)
        click.echo(f"{command}: no policy named {', '.join(unknown)} (known: {known})", err=True)
        sys.exit(EXIT_CONFIG)
    regions = list(dict.fromkeys(run_regions(setup) + copy_destinations(setup.policies)))
    wrong = [region for region in region_names if region not in regions]
    if wrong:
        click.echo(
            f"{command}: region {', '.join(wrong)} is not in the config or any policy "
            f"(known: {', '.join(regions)})",
            err=True,
        )
        sys.exit(EXIT_CONFIG)


def _delete_lines(step: Delete) -> list[str]:
    head = f"delete {step.kind.value} ({_PHASE_TEXT[step.phase]}):"
    return [head] + [
        f"    {t.image_name} {t.image_id} of {t.instance_id}: {t.reason}" for t in step.targets
    ]


#: image names a wait step lists before "and N more"
WAIT_NAMES_SHOWN = 5


def step_lines(step: Create | Copy | Delete | Wait | Skip) -> list[str]:
    """A plan step as text lines (the first is the step, the others its details)."""
    if isinstance(step, Create):
        return [
            f"create {step.image_name} of {step.instance_id} ({step.consistency.value}): "
            f"{step.reason}"
        ]
    if isinstance(step, Copy):
        return [
            f"copy {step.image_name} of {step.instance_id} from {step.source_region} "
            f"({step.source_image_id}): {step.reason}"
        ]
    if isinstance(step, Delete):
        return _delete_lines(step)
    if isinstance(step, Wait):
        # at fleet scale the names are the create steps' above: a 100-name line is noise
        shown = step.image_names[:WAIT_NAMES_SHOWN]
        more = len(step.image_names) - len(shown)
        names = ", ".join(shown) + (f", and {more} more (the creates above)" if more else "")
        return [f"wait for {len(step.image_names)} image(s) ({names}): {step.reason}"]
    return [f"skip {step.image_name or '-'} of {step.instance_id}: ERROR {step.error}"]


def decision_text(decision: ImageDecision) -> str:
    """Why an image is kept, or when it goes."""
    reasons = ", ".join(decision.reasons)
    if decision.delete_kind is not None:
        phase = _PHASE_TEXT[decision.delete_phase] if decision.delete_phase else ""
        return f"DELETE ({decision.delete_kind.value}, {phase}): {reasons}"
    flags = " [pinned]" if decision.pinned else ""
    return f"keep{flags}: {reasons or 'kept'}"


def first_copy_plans(report: RunReport) -> list[Plan]:
    """The copy phase's first plan of each destination region (the one with the copies)."""
    return [plans[0] for plans in report.copy_plans.values() if plans]


def plan_lines(plan: Plan, *, copies: bool = False) -> list[str]:
    """A region's plan for people: numbers, steps with reasons, each image's fate.

    ``copies``: the plan of the copy phase (titled as the copies into that region).
    """
    title = f"{plan.region} (copies into it)" if copies else plan.region
    lines = [
        f"{title}: quota {plan.quota}, used {plan.used} ({plan.unmanaged} unmanaged), "
        f"free {plan.free}"
    ]
    if plan.steps:
        lines.append("  steps:")
        for number, step in enumerate(plan.steps, 1):
            first, *rest = step_lines(step)
            lines.append(f"    {number}. {first}")
            lines.extend(f"    {line}" for line in rest)
    else:
        lines.append("  steps: none (nothing is due and nothing expired)")
    if plan.decisions:
        lines.append("  managed images:")
        for decision in plan.decisions:
            orphan = " (orphan)" if decision.orphan else ""
            lines.append(
                f"    {decision.image_name} {decision.image_id} {decision.state.value} "
                f"{decision.instance_id}{orphan}: {decision_text(decision)}"
            )
    lines.extend(f"  WARNING {w}" for w in plan.warnings)
    lines.extend(f"  ERROR {e}" for e in plan.errors)
    return lines


@click.command("plan")
@config_option
@policy_option
@region_option
@at_option
@click.option("--json", "as_json", is_flag=True, help="Print the plans as JSON.")
@timeout_option
def plan_command(
    *,
    config_file: str | None,
    policy_names: tuple[str, ...],
    region_names: tuple[str, ...],
    at: datetime | None,
    as_json: bool,
    timeout_seconds: float,
) -> None:
    """Show what a run would do now, step by step, without changing anything.

    For each region: the image quota, how many images it holds (unmanaged ones
    included) and how many are free; every step in order with its reason (deletes
    before the creates when the quota needs the room, the creates, creates skipped for
    lack of quota, the wait, deletes after the new images are NORMAL); and every managed
    image with the retention rule that keeps it, or why it goes.

    Then, for each region that policies copy images to (copies:), the copy phase: which
    source images are copied there (SyncImages, after the sources' own run), and which
    copies the copy retention deletes.

    Without --policy, the slots due now by the catch-up rules are planned (each policy's
    latest slot, if younger than its catch_up window); a slot whose image exists needs
    no step. With --policy, that policy's latest slot is planned even if not due. Every
    policy then appears with its state: due (and why), not due (its latest slot is older
    than its catch_up window; the next slot), or planned because --policy named it.
    Only reads the cloud (DescribeImageQuota, DescribeImages, DescribeInstances).
    Regions are read in parallel, all within --timeout (default 60 s): a region that
    has not answered by then is named (ERROR ... no answer within ...), exit 1.

    \b
    Examples:
      cvmkeeper plan
      cvmkeeper plan --policy web-daily --at 2026-11-28T02:00+08:00 --json

    \b
    Exit status:
      0  planned (even when a plan reports skips: see `run` for acting on them)
      1  a region could not be read (or not within --timeout) or planned, or a policy
         file cannot be used
      2  the config is invalid, or --policy / --region names something unknown

    A policy file that cannot be used does not stop the plan: the other policies are
    planned, the file is named on stderr with every problem (and in --json as
    broken_policy_files), and the images it holds (kept, never rotated, while its policy
    is not loaded) are in the plan's warnings and decisions; exit 1.
    """
    setup = load_partial_or_exit(config_file, "plan")
    check_choices(setup, "plan", policy_names, region_names)
    client = bound_by_deadline(client_or_exit(setup, "plan"), Deadline(timeout_seconds))
    now = at or utc_now()
    report = _dry_run_or_exit(setup, client, now, policy_names, region_names)
    states = policy_states(setup, now, policy_names, region_names)
    if as_json:
        print_json(plan_json(setup, report, now, states))
    else:
        _print_plans(setup, report, now, states)
    sys.exit(plan_exit_code(setup, report))


def _dry_run_or_exit(
    setup: Setup,
    client: CloudClient,
    now: datetime,
    policy_names: tuple[str, ...],
    region_names: tuple[str, ...],
) -> RunReport:
    """The report of a dry run at ``now`` (no write, no alert); exit 2 for a policy the
    runner does not know (``check_choices`` has said so already; kept for safety)."""
    try:
        return run_once(
            setup,
            client,
            NullAlerter(),
            now=now,
            policy_names=list(policy_names) or None,
            regions=list(region_names) or None,
            dry_run=True,
        )
    except UnknownPolicyError as error:
        click.echo(f"plan: {error}", err=True)
        sys.exit(EXIT_CONFIG)


def first_plans(report: RunReport) -> list[Plan]:
    """The first plan of each region a dry run read (the one with the creates)."""
    return [plan for plans in report.plans.values() for plan in plans[:1]]


def plan_json(
    setup: Setup, report: RunReport, now: datetime, states: list[PolicyState]
) -> dict[str, Any]:
    """``plan --json``: the policies' states, each region's plan and its copy phase."""
    return {
        "now": now,
        "policies": [state.to_json() for state in states],
        "regions": [plan_to_json(plan) for plan in first_plans(report)],
        "copies": [plan_to_json(plan) for plan in first_copy_plans(report)],
        "errors": list(report.errors),
        "broken_policy_files": broken_files_json(setup.broken),
    }


def _print_plans(setup: Setup, report: RunReport, now: datetime, states: list[PolicyState]) -> None:
    """The plans for people on stdout; on stderr the errors no plan shows (those of
    regions not planned), except the broken policy files already named at load."""
    plans, copy_plans = first_plans(report), first_copy_plans(report)
    click.echo(f"plan at {slot_tag_value(now.replace(second=0, microsecond=0))}")
    for plan in plans:
        for line in plan_lines(plan):
            click.echo(line)
    for plan in copy_plans:
        for line in plan_lines(plan, copies=True):
            click.echo(line)
    for line in policy_state_lines(states):
        click.echo(line)
    planned = {plan.region for plan in plans} | {plan.region for plan in copy_plans}
    named = {broken_file_message(broken) for broken in setup.broken}  # said at load
    for message in report.errors:
        if message.split(":", 1)[0] not in planned and message not in named:
            click.echo(f"ERROR {message}", err=True)


def plan_exit_code(setup: Setup, report: RunReport) -> int:
    """1 when a region could not be read or planned, or a policy file cannot be used."""
    unplanned = [region for region, region_plans in report.plans.items() if not region_plans]
    return EXIT_FAILED if unplanned or setup.broken else EXIT_OK
