"""``cvmkeeper schedule``: the next slots of every policy, in UTC and local time.

The same schedule maths the daemon uses, so what this prints is when images will be made
(plus any jitter, which delays the run but never moves the slot).
"""

from __future__ import annotations

import sys
from datetime import datetime

import click

from cvmkeeper.cli.broken_files import broken_files_json
from cvmkeeper.cli.common import at_option, config_option, iso_utc, print_json, utc_now
from cvmkeeper.cli.partial_load import done_status, load_for_choice
from cvmkeeper.config import Setup
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.schedule import next_policy_slots, zone


def schedule_rows(
    policies: tuple[Policy, ...], after: datetime, count: int
) -> list[dict[str, object]]:
    """``[{"policy": NAME, "next": ["2026-11-27T18:00:00Z", ...]}]``, in config order."""
    return [
        {"policy": p.name, "next": [iso_utc(s) for s in next_policy_slots(p, after, count)]}
        for p in policies
    ]


@click.command()
@config_option
@click.option(
    "--count",
    "-n",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="How many upcoming slots to show per policy.",
)
@at_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--policy",
    "policy_names",
    multiple=True,
    metavar="NAME",
    help="Only this policy (repeatable). Default: every policy.",
)
def schedule(
    config_file: str | None,
    count: int,
    at: datetime | None,
    as_json: bool,
    policy_names: tuple[str, ...],
) -> None:
    """Show the next slots of each policy, strictly after --at (default: now).

    A slot is one scheduled moment of a policy, in UTC to the minute; it names the image
    made for it. All schedules of a policy are merged. Text output shows each slot in UTC
    and in the policy's timezone; --json prints a list of
    {"policy": NAME, "next": ["2026-11-27T18:00:00Z", ...]}.

    Cron schedules follow crontab: day of week 0 and 7 are Sunday. Across a DST change a
    wall time that does not exist fires once at the end of the gap, and a wall time that
    occurs twice fires once, the first time.

    A policy file that cannot be used does not hide the others: their slots are shown, the
    file is named on stderr with every problem, and --json (without --policy) adds one row
    per such file, {"policy": NAME or null, "next": [], "broken_policy_file": {...}}: its
    policy makes no image until the file is fixed. A --policy that only such a file
    defines is refused.

    \b
    Exit status:
      0  ok
      1  shown, but a policy file cannot be used
      2  invalid config, unknown --policy, or --policy names a policy whose file cannot
         be used (nothing shown)
    """
    setup = load_for_choice(config_file, "schedule", policy_names)
    after = at or utc_now()
    policies = setup.policies
    if policy_names:
        unknown = [n for n in policy_names if setup.policy(n) is None]
        if unknown:
            known = ", ".join(p.name for p in setup.policies)
            raise click.UsageError(f"unknown policy {', '.join(unknown)} (known: {known})")
        policies = tuple(p for p in setup.policies if p.name in policy_names)
    if as_json:
        rows = schedule_rows(policies, after, count)
        print_json(rows if policy_names else rows + broken_rows(setup))
    else:
        for policy in policies:
            tz = zone(policy.timezone)
            schedules = "; ".join(s.describe() for s in policy.schedules)
            click.echo(f"{policy.name}: {schedules}")
            for slot in next_policy_slots(policy, after, count):
                local = slot.astimezone(tz)
                click.echo(f"  {iso_utc(slot)}  {local:%Y-%m-%d %H:%M %a} {policy.timezone}")
    sys.exit(done_status(True, setup))


def broken_rows(setup: Setup) -> list[dict[str, object]]:
    """One ``--json`` row per policy file that cannot be used: no next slot (its policy
    makes no image meanwhile) and the file with its problems."""
    return [
        {"policy": broken.name, "next": [], "broken_policy_file": entry}
        for broken, entry in zip(setup.broken, broken_files_json(setup.broken), strict=True)
    ]
