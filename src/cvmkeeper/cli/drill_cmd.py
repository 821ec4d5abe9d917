"""``cvmkeeper drill``: run the restore drills of the policies by hand (the daemon runs them
on each policy's ``drill.every``). The work is :mod:`cvmkeeper.restore.drill`'s."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from cvmkeeper.alerting import Alerter, AlertingConfigError, build_alerter
from cvmkeeper.cli.broken_files import broken_files_json
from cvmkeeper.cli.common import EXIT_CONFIG, at_option, config_option, print_json, utc_now
from cvmkeeper.cli.interrupts import signals_interrupt
from cvmkeeper.cli.partial_load import done_status, load_for_choice
from cvmkeeper.cli.plan_cmd import client_or_exit
from cvmkeeper.cli.restore_cmd import DurationType
from cvmkeeper.config import Setup
from cvmkeeper.restore.actions import Waiting
from cvmkeeper.restore.drill import DrillReport, run_drills

ALERT_FLUSH_SECONDS = 5.0


@click.command("drill")
@config_option
@click.option(
    "--policy",
    "policy_names",
    multiple=True,
    metavar="NAME",
    help="Only this policy's drill (repeat for several). Default: every policy with a drill key.",
)
@click.option(
    "--due-only",
    is_flag=True,
    help="Drill only the policies whose drill is due (as the daemon does). Default: drill now.",
)
@click.option(
    "--timeout",
    "timeout",
    type=DurationType(),
    default=None,
    help="Override each policy's drill timeout (e.g. 5m).",
)
@click.option("--no-alerts", is_flag=True, help="Do not send failures to Sentry.")
@at_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
def drill_command(
    *,
    config_file: str | None,
    policy_names: tuple[str, ...],
    due_only: bool,
    timeout: float | None,
    no_alerts: bool,
    at: datetime | None,
    as_json: bool,
) -> None:
    """Prove that backups come back: launch, check and terminate a throwaway instance.

    For each policy with a drill key (off by default), the newest NORMAL image of up to
    drill.max_per_run targeted instances (those drilled longest ago first) is launched in
    the drill's zone, VPC, subnet and security groups with its small instance type, tagged
    cvmkeeper:drill and cvmkeeper:drill-lease-until. The drill waits until the instance is
    RUNNING and, with drill.check.tcp_port, until that port of its private IP answers from
    this host; it records the time to ready and always terminates the instance. A failed
    drill is alerted to Sentry.

    First, every drill instance whose lease has expired (left behind by a daemon that died
    mid-drill, on any host) is terminated. Instances without the drill tags, and drills
    still within their lease, are never touched.

    Cost: each drill runs one pay-as-you-go instance of drill.instance_type (with the
    image's data disks) for a few minutes, billed by the second.

    A policy file that cannot be used does not stop the other policies' drills: it is
    named on stderr with every problem (and in --json as broken_policy_files), exit 1.
    --policy naming the policy of such a file drills nothing: the file is said, exit 2.

    \b
    Exit status:
      0  every drill passed (or none was due)
      1  a drill failed (printed and alerted), or a policy file cannot be used
      2  the config is invalid, or --policy names no policy with a drill or a policy
         whose file cannot be used (nothing drilled)
    """
    setup = load_for_choice(config_file, "drill", policy_names)
    _check_names(setup, policy_names)
    client = client_or_exit(setup, "drill")
    alerter = _alerter_or_exit(setup, no_alerts)
    poll = min(5.0, setup.config.api.poll_interval.total_seconds())
    progress = (lambda _m: None) if as_json else (lambda m: click.echo(m, err=True))
    try:
        with signals_interrupt():  # a SIGTERM terminates the drill instance, as Ctrl-C does
            report = run_drills(
                setup,
                client,
                alerter,
                at or utc_now(),
                policy_names=policy_names,
                force=not due_only,
                waiting=Waiting(seconds=timeout, poll_seconds=poll) if timeout else None,
                progress=progress,
                poll_seconds=poll,
            )
    finally:
        alerter.flush(ALERT_FLUSH_SECONDS)
        alerter.close(ALERT_FLUSH_SECONDS)
    if as_json:
        print_json(_report_json(report, setup))
    else:
        _print_report(report, due_only)
    sys.exit(done_status(report.ok, setup))


def _check_names(setup: Setup, policy_names: tuple[str, ...]) -> None:
    """Exit 2 when --policy names no (loaded) policy with a drill key."""
    drilled = [p.name for p in setup.policies if p.drill is not None]
    unknown = [n for n in policy_names if n not in drilled]
    if unknown:
        click.echo(
            f"drill: no policy with a drill key named {', '.join(unknown)} (with one: "
            f"{', '.join(drilled) or 'none'})",
            err=True,
        )
        sys.exit(EXIT_CONFIG)


def _alerter_or_exit(setup: Setup, no_alerts: bool) -> Alerter:
    """The Sentry alerter of the config (a null one with --no-alerts), or exit 2."""
    try:
        return build_alerter(setup.config.sentry, enabled=not no_alerts)
    except AlertingConfigError as error:
        click.echo(f"drill: {error}", err=True)
        sys.exit(EXIT_CONFIG)


def _report_json(report: DrillReport, setup: Setup) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "swept": report.swept,
        "drills": [_json(o) for o in report.outcomes],
        "broken_policy_files": broken_files_json(setup.broken),
    }


def _print_report(report: DrillReport, due_only: bool) -> None:
    """One line per drill, for people."""
    if not report.outcomes:
        click.echo("no drill was due" if due_only else "no policy has a drill")
    for outcome in report.outcomes:
        if outcome.ok:
            click.echo(
                f"drill {outcome.policy}: {outcome.instance_id} OK: "
                f"{outcome.image_id} ready in {outcome.seconds_to_ready:.1f}s "
                f"(RUNNING in {outcome.seconds_to_running:.1f}s); "
                f"{outcome.drill_instance_id} terminated"
            )
        else:
            click.echo(f"drill {outcome.policy}: {outcome.instance_id} FAILED: {outcome.error}")


def _json(outcome: Any) -> dict[str, Any]:
    return {
        key: getattr(outcome, key)
        for key in (
            "policy",
            "region",
            "instance_id",
            "image_id",
            "drill_instance_id",
            "ok",
            "seconds_to_running",
            "seconds_to_ready",
            "error",
            "terminated",
            "started",
        )
    }
