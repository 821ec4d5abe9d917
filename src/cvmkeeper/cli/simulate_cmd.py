"""``cvmkeeper simulate``: replay a policy over days or years before trusting it.

Uses the pure core only (schedule maths and retention, no cloud): one image per slot,
retention applied after each, and at the end the images kept, with why.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import click

from cvmkeeper.cli.broken_files import broken_files_json
from cvmkeeper.cli.common import EXIT_CONFIG, at_option, config_option, iso_utc, print_json, utc_now
from cvmkeeper.cli.partial_load import done_status, load_for_choice
from cvmkeeper.cli.simulate_html import render_simulation_html
from cvmkeeper.core.capacity import explain_max_images
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.schedule import zone
from cvmkeeper.core.simulation import KeptImage, SimulationResult, SimulationTooLongError, simulate


@click.command(name="simulate")
@config_option
@click.option(
    "--policy", "policy_name", required=True, metavar="NAME", help="The policy to replay."
)
@click.option(
    "--days",
    type=click.IntRange(1, 3660),
    default=400,
    show_default=True,
    help="How many days to replay.",
)
@at_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Also write the retention ladder (the images kept at the end on a timeline, with "
    "the rules keeping each) to FILE as one self-contained HTML page.",
)
def simulate_command(
    config_file: str | None,
    policy_name: str,
    days: int,
    at: datetime | None,
    as_json: bool,
    *,
    html_file: Path | None = None,
) -> None:
    """Replay one policy's schedule for --days days and show what it would keep.

    Starting at --at (default: now), every slot of the policy makes one image of one
    instance (every create succeeds), and retention runs after each. At the end it prints
    the images kept with their slot dates and the rules keeping them, how many were
    created and deleted, and the most images ever held at once: right after a create
    (what the quota must hold, since cvmkeeper creates before it deletes) and after
    rotation. Each copy region of the policy (copies:) gets the same, by its copy
    retention. Nothing is read from or sent to the cloud.

    A policy file that cannot be used (another policy's) does not stop the replay: it is
    named on stderr with every problem (and in --json as broken_policy_files), exit 1.
    When --policy names the policy of such a file, nothing is replayed: the file and its
    problems are said, exit 2.

    \b
    Exit status:
      0  ok
      1  replayed, but a policy file cannot be used
      2  invalid config, unknown policy, the policy's file cannot be used, too many slots,
         or FILE cannot be written
    """
    setup = load_for_choice(config_file, "simulate", [policy_name])
    policy = setup.policy(policy_name)
    if policy is None:
        known = ", ".join(p.name for p in setup.policies)
        raise click.UsageError(f"unknown policy {policy_name!r} (known: {known})")
    start = at or utc_now()
    try:
        result = simulate(policy, start, start + timedelta(days=days))
    except SimulationTooLongError as exc:
        click.echo(f"simulate: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    if html_file is not None:
        _write_html(html_file, result, policy, days)
    if as_json:
        document = _simulation_json(result, policy)
        print_json({**document, "broken_policy_files": broken_files_json(setup.broken)})
    else:
        _print_simulation(result, policy, days)
    sys.exit(done_status(True, setup))


def _write_html(html_file: Path, result: SimulationResult, policy: Policy, days: int) -> None:
    """The retention ladder page, or exit 2 when it cannot be written."""
    bound = explain_max_images(policy.retention, policy.schedules)
    copy_bounds = [explain_max_images(r.retention, policy.schedules) for r in policy.copies]
    try:
        html_file.write_text(
            render_simulation_html(result, days, bound, copy_bounds), encoding="utf-8"
        )
    except OSError as error:
        click.echo(f"simulate: {html_file}: cannot write: {error.strerror or error}", err=True)
        sys.exit(EXIT_CONFIG)


def _kept_json(kept_images: tuple[KeptImage, ...]) -> list[dict[str, object]]:
    return [
        {"name": k.name, "slot": iso_utc(k.slot), "reasons": list(k.reasons)} for k in kept_images
    ]


def _simulation_json(result: SimulationResult, policy: Policy) -> dict[str, object]:
    """The ``--json`` document of a replay."""
    return {
        "policy": result.policy,
        "start": iso_utc(result.start),
        "end": iso_utc(result.end),
        "slots": result.slots,
        "created": result.created,
        "deleted": result.deleted,
        "peak": result.peak,
        "peak_after_rotation": result.peak_after_rotation,
        "max_images": explain_max_images(policy.retention, policy.schedules),
        "kept": _kept_json(result.kept),
        "copies": [
            {
                "region": c.region,
                "created": c.created,
                "deleted": c.deleted,
                "peak": c.peak,
                "peak_after_rotation": c.peak_after_rotation,
                "max_images": explain_max_images(rule.retention, policy.schedules),
                "kept": _kept_json(c.kept),
            }
            for c, rule in zip(result.copies, policy.copies, strict=True)
        ],
    }


def _print_simulation(result: SimulationResult, policy: Policy, days: int) -> None:
    """The replay for people: totals, peaks, and the images kept with their rules."""
    tz = zone(policy.timezone)
    bound = explain_max_images(policy.retention, policy.schedules)
    click.echo(
        f"{policy.name}: {days} days from {iso_utc(result.start)}: {result.slots} slots, "
        f"{result.created} images created, {result.deleted} deleted"
    )
    click.echo(
        f"most images held at once: {result.peak} right after a create, "
        f"{result.peak_after_rotation} after rotation (bound: {bound})"
    )
    click.echo(f"kept at the end ({len(result.kept)}), newest first:")
    _print_kept(result.kept, tz, policy.timezone)
    for copy, rule in zip(result.copies, policy.copies, strict=True):
        copy_bound = explain_max_images(rule.retention, policy.schedules)
        click.echo(
            f"copies in {copy.region}: {copy.created} copied, {copy.deleted} deleted; most "
            f"held at once: {copy.peak} right after a copy, {copy.peak_after_rotation} after "
            f"rotation (bound: {copy_bound})"
        )
        click.echo(f"copies kept in {copy.region} at the end ({len(copy.kept)}), newest first:")
        _print_kept(copy.kept, tz, policy.timezone)


def _print_kept(kept_images: tuple[KeptImage, ...], tz: tzinfo, timezone: str) -> None:
    for kept in kept_images:
        local = kept.slot.astimezone(tz)
        click.echo(
            f"  {iso_utc(kept.slot)}  {local:%Y-%m-%d %H:%M %a} {timezone}  "
            f"{'; '.join(kept.reasons)}"
        )
