"""``cvmkeeper run``: one run now, as the daemon would make it, with progress as it happens.

Progress goes to stderr (``run_progress``): on a terminal one live status line with the
counts per region and the time elapsed (warnings and errors stay on screen above it),
otherwise the run-level lines and a heartbeat every minute; ``--verbose`` adds a line per
image. The summary goes to stdout, as text or (``--json``) as the run report.

A manual run sends the same Sentry events and Crons check-ins as a scheduled one (the
policies it runs get ``in_progress`` then ``ok`` or ``error``); ``--no-alerts`` turns
both off, ``--dry-run`` never alerts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import click

from cvmkeeper.alerting import Alerter, AlertingConfigError, build_alerter
from cvmkeeper.alerting.channels import with_notifications
from cvmkeeper.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    at_option,
    config_option,
    iso_utc,
    load_or_exit,
    print_json,
    utc_now,
)
from cvmkeeper.cli.output import raw_stream
from cvmkeeper.cli.plan_cmd import (
    check_choices,
    client_or_exit,
    first_copy_plans,
    plan_lines,
    policy_option,
    region_option,
)
from cvmkeeper.cli.run_progress import RunProgress
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.config import Setup
from cvmkeeper.core.due import due_slots
from cvmkeeper.core.plan import DeleteKind
from cvmkeeper.core.policy import Policy
from cvmkeeper.executor.checkins import policy_checkins
from cvmkeeper.executor.report import (
    DeleteOutcome,
    RunReport,
    delete_reason_text,
    report_to_json,
)
from cvmkeeper.executor.runner import run_once
from cvmkeeper.logs import stream_is_journal

#: How long the command waits for alerts and check-ins to be delivered before exiting.
ALERT_FLUSH_SECONDS = 5.0


def policies_run(
    setup: Setup, policy_names: tuple[str, ...], region_names: tuple[str, ...], now: datetime
) -> list[Policy]:
    """The policies a run covers (for their check-ins): the named ones, else those due."""
    if policy_names:
        chosen = [p for p in setup.policies if p.name in policy_names]
    else:
        due = {slot.policy for slot in due_slots(setup.policies, None, now)}
        chosen = [p for p in setup.policies if p.name in due]
    if region_names:
        chosen = [p for p in chosen if any(r in region_names for r in p.regions)]
    return chosen


def deleted_text(deleted: Sequence[DeleteOutcome]) -> str:
    """``4 deleted``, or ``4 deleted (3 of them failed images cleaned up)``: a failed
    image's cleanup is not a backup rotated away, and a bare "3 deleted" after a first run
    that made the first backups read as if backups had been removed."""
    gone = [d for d in deleted if d.status in ("deleted", "already_gone")]
    cleaned = sum(1 for d in gone if d.kind == DeleteKind.CLEANUP)
    text = f"{len(gone)} deleted"
    return text + (f" ({cleaned} of them failed images cleaned up)" if cleaned else "")


def short_summary_lines(report: RunReport, health_warnings: int = 0) -> list[str]:
    """The summary without ``--verbose``: a line for every outcome that needs a person
    (failed, skipped, or with an error), one line of counts per region, and the totals.
    At 300 instances this is a screen, not 600 lines; ``--verbose`` and ``--json`` list
    every image."""
    if report.dry_run:
        return summary_lines(report)
    full = summary_lines(report, health_warnings)
    attention = [
        line
        for outcome, line in zip(report.outcomes, full, strict=False)
        if not outcome.ok or outcome.status in ("failed", "skipped")
    ]
    offset = len(report.outcomes)
    attention += [
        line
        for copy, line in zip(report.copies, full[offset:], strict=False)
        if not copy.ok or copy.status in ("failed", "skipped")
    ]
    offset += len(report.copies)
    attention += [
        line for deleted, line in zip(report.deleted, full[offset:], strict=False) if deleted.error
    ]
    regions = dict.fromkeys(
        [o.region for o in report.outcomes]
        + [c.region for c in report.copies]
        + [d.region for d in report.deleted]
    )
    counts = []
    for region in regions:
        outcomes = [o for o in report.outcomes if o.region == region]
        made = sum(1 for o in outcomes if o.status in ("created", "adopted"))
        there = sum(1 for o in outcomes if o.status == "exists")
        failed = sum(1 for o in outcomes if not o.ok)
        copied = sum(
            1 for c in report.copies if c.region == region and c.status in ("copied", "adopted")
        )
        copies = f", {copied} copied here" if copied else ""
        gone = deleted_text([d for d in report.deleted if d.region == region])
        counts.append(
            f"{region}: {made} made, {there} already there, {failed} failed{copies}, {gone}"
        )
    return [*attention, *counts, full[-1], "(--verbose or --json lists every image)"]


def summary_lines(report: RunReport, health_warnings: int = 0) -> list[str]:
    """The end-of-run summary for people, every image (``--verbose``). The warnings count
    those of the steps and ``health_warnings``, the stale backups and low quota the run's
    health check printed."""
    lines: list[str] = []
    if report.dry_run:
        for plans in report.plans.values():
            for plan in plans[:1]:
                lines.extend(plan_lines(plan))
        for plan in first_copy_plans(report):
            lines.extend(plan_lines(plan, copies=True))
        lines.append("dry run: nothing was changed")
        return lines
    for outcome in report.outcomes:
        image = (
            f"{outcome.image_name} ({outcome.image_id})"
            if outcome.image_id
            else outcome.image_name or "-"
        )
        state = f" {outcome.image_state}" if outcome.image_state else ""
        error = f": {outcome.error}" if outcome.error else ""
        lines.append(
            f"{outcome.status:8} {outcome.policy} {outcome.region} {outcome.instance_id} "
            f"slot {iso_utc(outcome.slot)} {image}{state}{error}"
        )
    for copy in report.copies:
        image = f"{copy.image_name} ({copy.image_id})" if copy.image_id else copy.image_name
        state = f" {copy.image_state}" if copy.image_state else ""
        error = f": {copy.error}" if copy.error else ""
        lines.append(
            f"{copy.status:8} copy {','.join(copy.policies)} {copy.source_region} -> "
            f"{copy.region} {copy.instance_id} slot {iso_utc(copy.slot)} {image}{state}{error}"
        )
    for deleted in report.deleted:
        error = f": {deleted.error}" if deleted.error else ""
        lines.append(
            f"{'deleted' if deleted.status == 'deleted' else deleted.status:8} "
            f"{deleted.region} {deleted.image_name} ({deleted.image_id}): "
            f"{delete_reason_text(deleted.kind, deleted.reason)}{error}"
        )
    made = sum(1 for o in report.outcomes if o.status in ("created", "adopted"))
    gone = deleted_text(report.deleted)
    failed = sum(1 for o in report.outcomes if not o.ok)
    copied = sum(1 for c in report.copies if c.status in ("copied", "adopted"))
    copies = f", {copied} copied to other regions" if report.copies else ""
    lines.append(
        f"{'ok' if report.ok else 'FAILED'}: {made} image(s) made{copies}, {gone}, "
        f"{failed} slot(s) without a NORMAL image, "
        f"{len(report.warnings) + health_warnings} warning(s), "
        f"{len(report.errors)} error(s)"
    )
    return lines


@click.command("run")
@config_option
@policy_option
@region_option
@at_option
@click.option("--dry-run", is_flag=True, help="Plan and print, change nothing, alert nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Do not wait for new images to become NORMAL; expired images are then deleted by "
    "the next run. (Instances stopped for stop_start are still started again once their "
    "image no longer needs them.)",
)
@click.option("--no-alerts", is_flag=True, help="Send no Sentry events and no Crons check-ins.")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Show a progress line for every image (created, each state change, deleted) and "
    "list every image in the summary; without it a terminal shows one live status line, "
    "other output the run-level lines and a heartbeat every minute, and the summary only "
    "what needs a person and the counts per region.",
)
def run_command(
    *,
    config_file: str | None,
    policy_names: tuple[str, ...],
    region_names: tuple[str, ...],
    at: datetime | None,
    dry_run: bool,
    as_json: bool,
    no_wait: bool,
    no_alerts: bool,
    verbose: bool,
) -> None:
    """Run once now: create the due images, wait for them, rotate old ones.

    Without --policy, makes what is due at this moment by the catch-up rules: each
    policy's latest slot, if its image is missing and the slot is younger than the
    policy's catch_up window (once, never a backlog). With --policy, makes that policy's
    current slot even if it is not due. A slot whose image exists is never made twice
    (running twice for the same slot writes nothing the second time).

    Every region runs at once. In each: expired images are deleted first only when the
    quota needs the room, the images are created (tagged, with the cvmkeeper marker),
    the run waits until they are NORMAL, then reads the region again and deletes what
    retention no longer keeps. Images cvmkeeper did not make are never touched.

    Then each region that policies copy to (copies:) gets the NORMAL source images it
    lacks (SyncImages, one image per call, within its quota), waits for the copies, and
    deletes the copies their copy retention no longer keeps.

    --at TIME runs as if it were TIME (the slot and retention use it; for previews,
    tests and replaying a missed slot).

    Progress goes to stderr: on a terminal one status line (per region: images made,
    waiting, failed; time elapsed), otherwise the run-level lines and a heartbeat line
    every minute; --verbose adds a line per image. The summary goes to stdout: what
    needs a person (failed or skipped slots, failed deletes), the counts per region and
    the totals; --verbose lists every image, --json gives the whole report.

    \b
    Exit status:
      0  every slot has its NORMAL image (or is being made, with --no-wait)
      1  some step failed; each failure was printed and alerted
      2  the config is invalid, or --policy / --region names something unknown

    A policy file that cannot be used does not stop the others: they run, the bad file
    is printed and alerted as an error (exit 1), and images of policies that are not
    loaded are held, never rotated, until it is fixed (docs/operations.md).
    """
    setup = load_or_exit(config_file, partial=True)
    check_choices(setup, "run", policy_names, region_names)
    client = client_or_exit(setup, "run")
    alerter = alerter_or_exit(setup, enabled=not (no_alerts or dry_run))
    request = RunRequest(
        policy_names=policy_names,
        region_names=region_names,
        now=at or utc_now(),
        dry_run=dry_run,
        wait=not no_wait,
    )
    display = progress_display(as_json=as_json, verbose=verbose)
    report = _run_with_checkins(setup, client, alerter, display, request)
    _print_report(report, display, as_json=as_json, verbose=verbose)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


@dataclass(frozen=True)
class RunRequest:
    """What ``cvmkeeper run`` was asked to do, from its options."""

    #: ``--policy``: only these policies, their current slot made even if not due.
    policy_names: tuple[str, ...]
    #: ``--region``: only these regions.
    region_names: tuple[str, ...]
    #: the run's instant (``--at``, else the clock).
    now: datetime
    #: ``--dry-run``: plan and print, change nothing, alert nothing.
    dry_run: bool
    #: not ``--no-wait``: wait for the new images to become NORMAL.
    wait: bool


def alerter_or_exit(setup: Setup, *, enabled: bool) -> Alerter:
    """Sentry and the notification channels of the config (sending nothing unless
    ``enabled``); exit 2 when their config is invalid."""
    try:
        alerter = build_alerter(setup.config.sentry, enabled=enabled)
        return with_notifications(alerter, setup.config.notify, enabled=enabled)
    except AlertingConfigError as error:
        click.echo(f"run: {error}", err=True)
        sys.exit(EXIT_CONFIG)


def progress_display(*, as_json: bool, verbose: bool) -> RunProgress:
    """The progress on stderr: a live line on a terminal (not with ``--json``), nothing
    but the run-level lines when stderr is the journal."""
    stderr = sys.stderr
    return RunProgress(
        stderr,
        live=stderr.isatty() and not as_json,
        verbose=verbose,
        quiet=stream_is_journal(raw_stream(stderr)),
    )


def _run_with_checkins(
    setup: Setup, client: CloudClient, alerter: Alerter, display: RunProgress, request: RunRequest
) -> RunReport:
    """Run once, inside the Crons check-ins of the policies it covers (none for a dry run):
    ``in_progress``, then ``error`` for each policy the run failed, else ``ok``. The alerts
    and check-ins are flushed before returning, whatever happens."""
    policies = (
        []
        if request.dry_run
        else policies_run(setup, request.policy_names, request.region_names, request.now)
    )
    # The flush stays inside the display: a notification that fails while it is delivered
    # is logged then, and must be seen and counted like the run's other warnings.
    with display.running():
        try:
            with policy_checkins(alerter, policies, setup.config.sentry) as fail:
                report = run_once(
                    setup,
                    client,
                    alerter,
                    now=request.now,
                    policy_names=list(request.policy_names) or None,
                    regions=list(request.region_names) or None,
                    dry_run=request.dry_run,
                    wait=request.wait,
                    progress=display,
                    progress_alerts=display.alert,
                )
                for policy in policies:
                    if not report.policy_ok(policy.name):
                        fail(policy.name)
        finally:
            alerter.flush(ALERT_FLUSH_SECONDS)
            alerter.close(ALERT_FLUSH_SECONDS)
    return report


def _print_report(report: RunReport, display: RunProgress, *, as_json: bool, verbose: bool) -> None:
    """The summary on stdout: the run report as JSON (with the health warnings the
    progress printed), every image (``--verbose``), or what needs a person."""
    if as_json:
        document = report_to_json(report)
        document["health_warnings"] = list(display.health_warnings)
        document["notification_warnings"] = list(display.delivery_warnings)
        print_json(document)
    else:
        summary = summary_lines if verbose else short_summary_lines
        for line in summary(report, display.printed_warnings):
            click.echo(line)
        if display.delivery_warnings:
            click.echo(
                f"NOTIFICATIONS: {len(display.delivery_warnings)} could not be delivered "
                "(see the warnings on stderr); what this run reported may have reached no one"
            )
