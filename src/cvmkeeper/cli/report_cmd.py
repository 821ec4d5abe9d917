"""``cvmkeeper report --html FILE``: the backups at a glance, as one self-contained page.

The page a person would rather look at than read: per region a quota bar, per instance a
timeline of its images with the rule keeping each and the slots missed, per policy the next
slots and the last result (``report_data`` gathers, ``report_html`` renders).
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import click

from cvmkeeper.cli.broken_files import load_partial_or_exit
from cvmkeeper.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    at_option,
    config_option,
    utc_now,
)
from cvmkeeper.cli.plan_cmd import client_or_exit
from cvmkeeper.cli.report_data import gather_report
from cvmkeeper.cli.report_html import render_html


@click.command("report")
@config_option
@at_option
@click.option(
    "--html",
    "html_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the report to FILE: one HTML page with no external assets (open it in a "
    "browser, mail it, archive it).",
)
@click.option(
    "--days",
    type=click.IntRange(min=1, max=366),
    default=7,
    show_default=True,
    help="How far back to look for missed slots of an instance that has no image yet.",
)
@click.option(
    "--timeout",
    "timeout_seconds",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Wait at most this long for all regions together (read in parallel).",
)
def report_command(
    *,
    config_file: str | None,
    at: datetime | None,
    html_file: Path,
    days: int,
    timeout_seconds: float,
) -> None:
    """Write an HTML report of every region, instance and policy.

    Per region: a quota bar of cvmkeeper's images, other images and free room, with the
    account's quota and the image_quota cap. Per instance: a timeline of its images (each
    with the retention rule that keeps it, or "expires at next run"), the slots missed
    since its newest image, and copies held in other regions. Per policy: the next slots
    and how its last run ended (from the daemon's state file). Only reads the cloud.

    \b
    Exit status:
      0  written
      1  written, but a region could not be read or a policy file cannot be used (the
         page says which; a bad policy file is also named on stderr)
      2  the config is invalid, no credentials, or FILE cannot be written
    """
    setup = load_partial_or_exit(config_file, "report")
    client = client_or_exit(setup, "report")
    report = gather_report(
        setup, client, at or utc_now(), timeout_seconds, lookback=timedelta(days=days)
    )
    try:
        html_file.write_text(render_html(report), encoding="utf-8")
    except OSError as error:
        click.echo(f"report: {html_file}: cannot write: {error.strerror or error}", err=True)
        sys.exit(EXIT_CONFIG)
    unreadable = [r.region for r in report.regions if r.error is not None]
    click.echo(
        f"wrote {html_file}: {len(report.regions)} regions, {len(report.instances)} "
        f"instances, {len(report.policies)} policies"
    )
    if unreadable:
        click.echo(f"report: cannot read {', '.join(unreadable)}", err=True)
    sys.exit(EXIT_FAILED if unreadable or setup.broken else EXIT_OK)
