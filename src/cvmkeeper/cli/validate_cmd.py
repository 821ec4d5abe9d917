"""``cvmkeeper validate``: check the config and every policy before trusting them.

Offline it checks every file (all problems at once, with file, line and column), then
adds up the worst case of each region against its quota. ``--online`` also asks the
cloud: the real quota, the unmanaged images, and which instances the tags select.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

import click

from cvmkeeper.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    cloud_client,
    config_option,
    load_or_exit,
    report_config_error,
    utc_now,
)
from cvmkeeper.cli.copy_pairs import refused_pair_warnings
from cvmkeeper.cli.timeout_option import timeout_option
from cvmkeeper.cli.validate_online import read_online
from cvmkeeper.cloud.deadline import Deadline, bound_by_deadline
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.config import ConfigError, Problem, Setup, config_path, load_config
from cvmkeeper.config.loader import ignored_policy_files
from cvmkeeper.config.model import DEFAULT_IMAGE_QUOTA
from cvmkeeper.config.paths import display_path
from cvmkeeper.config.regions import region_problems, unknown_regions
from cvmkeeper.core.capacity import (
    QuotaCheck,
    check_region_quota,
    explain_max_images,
    needs_rotation_headroom,
    policy_max_images,
)
from cvmkeeper.core.disk_report import region_disk_warnings
from cvmkeeper.core.disks import SNAPSHOTS_PER_DISK
from cvmkeeper.core.holds import removed_policy_images
from cvmkeeper.core.inventory import Image, Inventory
from cvmkeeper.core.naming import NameFormat, policy_tag_value, read_policy_tag
from cvmkeeper.core.ownership import classify_image, renamed_out, split_images
from cvmkeeper.core.policy import Policy, Retention
from cvmkeeper.core.schedule import next_policy_slots, zone


def holds_at_most(policy: Policy, retention: Retention) -> str:
    """``keep_last 1 + min_keep 1 - 1 (...) = 1``, and the image rotation needs when the
    next slot's image can expire the newest (``core.capacity.needs_rotation_headroom``)."""
    text = explain_max_images(retention, policy.schedules)
    if needs_rotation_headroom(retention, policy.schedules, policy.timezone):
        text += (
            " (+1 to rotate: the next image can expire the newest, which is deleted "
            "only once its successor is NORMAL)"
        )
    return text


def policy_summary(policy: Policy, now: datetime) -> str:
    """One line: name, file, targets, regions, next slot (UTC and local), capacity."""
    upcoming = next_policy_slots(policy, now, 1)
    if upcoming:
        local = upcoming[0].astimezone(zone(policy.timezone))
        next_text = f"{upcoming[0]:%Y-%m-%d %H:%M}Z ({local:%H:%M} {policy.timezone})"
    else:
        next_text = "never"
    copies = "".join(
        f"; copies to {rule.region} hold at most "
        f"{holds_at_most(policy, rule.retention)} per instance"
        for rule in policy.copies
    )
    return (
        f"{policy.name} ({policy.source}): {policy.targets.describe()} in "
        f"{', '.join(policy.regions)}; next {next_text}; holds at most "
        f"{holds_at_most(policy, policy.retention)} images per instance"
        f"{copies}"
    )


def regions_of(setup: Setup) -> list[str]:
    """Every region the config or a policy names (copy destinations included), in order
    of first mention."""
    names = list(setup.config.regions)
    for policy in setup.policies:
        names.extend(policy.regions)
    for policy in setup.policies:
        names.extend(rule.region for rule in policy.copies)
    return list(dict.fromkeys(names))


def offline_checks(setup: Setup) -> list[QuotaCheck]:
    """The quota check of every region, with tag targets counted as at least one instance.

    Without the cloud the account's quota is unknown: the cap ``image_quota`` if the config
    sets one, else Tencent Cloud's documented default (``DEFAULT_IMAGE_QUOTA``) is assumed.
    """
    return [
        check_region_quota(region, setup.policies, setup.config.offline_quota)
        for region in regions_of(setup)
    ]


def offline_quota_note(setup: Setup) -> str:
    """Where the quota of an offline check came from, for the region lines."""
    if setup.config.image_quota is not None:
        return "offline: the cap image_quota"
    return (
        f"offline: the documented default {DEFAULT_IMAGE_QUOTA}; "
        "validate --online reads the account's quota"
    )


def quota_source(account: int, cap: int | None) -> str:
    """``account quota 12 from DescribeImageQuota, cap image_quota 10``: both, always."""
    return f"account quota {account} from DescribeImageQuota, " + (
        "no cap (image_quota unset)" if cap is None else f"cap image_quota {cap}"
    )


def online_checks(
    setup: Setup,
    inventories: Mapping[str, Inventory],
    notes: dict[str, str] | None = None,
    capped: set[str] | None = None,
) -> list[QuotaCheck]:
    """The quota check of every region against what the cloud reported (``inventories``,
    read by ``validate_online.read_online``: ``quota`` is the account's quota there).

    ``notes`` (if given) receives, per region, the account's quota and the configured cap;
    ``capped`` the regions where the cap ``image_quota`` is below the account's quota.
    """
    fmt = setup.config.name_format

    def tagged_in(policy: Policy, region: str) -> int:
        return sum(
            1
            for instance in inventories[region].instances
            if instance.instance_id not in policy.targets.instance_ids
            and policy.targets.selects(instance.instance_id, instance.tags)
        )

    checks: list[QuotaCheck] = []
    for region in regions_of(setup):
        account = inventories[region].quota
        cap = setup.config.image_quota
        quota = account if cap is None else min(cap, account)
        if notes is not None:
            notes[region] = quota_source(account, cap)
        if capped is not None and cap is not None and cap < account:
            capped.add(region)
        unmanaged = sum(
            1 for image in inventories[region].images if classify_image(image, fmt) is None
        )
        tagged = {p.name: tagged_in(p, region) for p in setup.policies if region in p.regions}
        tagged_copies = {
            p.name: sum(tagged_in(p, r) for r in p.regions if r != region)
            for p in setup.policies
            if p.copy_to(region) is not None
        }
        checks.append(
            check_region_quota(
                region,
                setup.policies,
                quota,
                tagged_instances=tagged,
                unmanaged=unmanaged,
                tagged_copy_instances=tagged_copies,
            )
        )
    return checks


def snapshot_warnings(setup: Setup) -> list[str]:
    """Policies whose instances can hold more images than CBS documents snapshots per disk
    (every image holds one snapshot of each of its disks; ``core.disks``), and a config that
    deletes images without their snapshots."""
    warnings: list[str] = []
    if not setup.config.api.delete_binded_snapshots:
        warnings.append(
            "api.delete_binded_snapshots is false: every deleted image leaves its "
            "snapshots (one per disk it holds) behind, billed"
        )
    for policy in setup.policies:
        most = policy_max_images(policy) + (
            1 if needs_rotation_headroom(policy.retention, policy.schedules, policy.timezone) else 0
        )
        if most > SNAPSHOTS_PER_DISK:
            warnings.append(
                f"policy '{policy.name}' can keep {most} images per instance; each holds a "
                f"snapshot of every disk and CBS documents at most {SNAPSHOTS_PER_DISK} "
                "snapshots per disk"
            )
    return warnings


def policy_tag_warnings(setup: Setup) -> list[str]:
    """Instances named by id in policies whose names join to more than a tag value holds
    (255 characters): their images' ``cvmkeeper:policy`` lists only the names that fit
    (``core.naming.policy_tag_value``), and the holds read it as partial. Offline, so only
    ``instance_ids`` are known (tag targets add their policies at run time)."""
    by_instance: dict[str, list[str]] = {}
    for policy in setup.policies:
        targets = policy.targets
        for instance_id in targets.instance_ids:
            if instance_id not in targets.exclude_instance_ids:
                by_instance.setdefault(instance_id, []).append(policy.name)
    warnings: list[str] = []
    for instance_id, names in sorted(by_instance.items()):
        tag = read_policy_tag(policy_tag_value(tuple(names)))
        if tag.omitted:
            warnings.append(
                f"instance {instance_id} is targeted by {len(names)} policies whose names join "
                "to more than the 255 characters a tag value holds: the cvmkeeper:policy tag "
                f"of its images names {len(tag.names)} and counts {tag.omitted} (+{tag.omitted}); "
                "shorter policy names keep the whole list"
            )
    return warnings


def online_disk_warnings(setup: Setup, inventories: Mapping[str, Inventory]) -> list[str]:
    """Rule 10 against the cloud: every disk the policies want that cannot be imaged (local
    disks, listed disks not attached), and images holding fewer disks than asked."""
    warnings: list[str] = []
    for region in regions_of(setup):
        inventory = inventories[region]
        warnings += [
            f"{region}: {message}"
            for message in region_disk_warnings(inventory, setup.policies, setup.config.name_format)
        ]
        warnings += renamed_warnings(region, inventory.images, setup.config.name_format)
        warnings += removed_policy_warnings(region, inventory, setup)
    return warnings


def confirm_regions(setup: Setup, regions: Sequence[str], deadline: Deadline) -> list[str]:
    """The ``regions`` the cloud answers for (``DescribeImageQuota`` succeeds there): a
    region Tencent Cloud opened after this release's list. A typo gets an error (or no
    client at all) and stays a problem. Every call ends by ``deadline`` (``--timeout``)."""
    if not regions:
        return []
    try:
        client = bound_by_deadline(cloud_client(setup.config), deadline)
    except Exception:  # no credentials: --online reports that itself, later
        return []
    confirmed = []
    for region in regions:
        try:
            client.image_quota(region)
        except Exception:  # noqa: S112 - an unknown region is expected to fail here
            continue
        confirmed.append(region)
    return confirmed


def removed_policy_warnings(region: str, inventory: Inventory, setup: Setup) -> list[str]:
    """Images kept by a policy that is no longer configured (its file removed, or renamed
    to an extension that is not read): held by every run, or rotated under ``orphans:``
    rules (``core.holds``). Said before the daemon runs with such a config."""
    managed, _unmanaged = split_images(inventory.images, setup.config.name_format)
    fate = (
        "rotated by the rules that remain (orphans: is set)"
        if setup.config.orphans.retention is not None
        else "held: kept, never rotated"
    )
    return [
        f"{region}: {len(images)} image(s) of policy {names!r}, which no longer exists, are "
        f"{fate}: {', '.join(o.image_id for o in images[:10])}"
        + (f" and {len(images) - 10} more" if len(images) > 10 else "")
        for names, images in sorted(removed_policy_images(managed, setup.policies).items())
    ]


def renamed_warnings(region: str, images: Sequence[Image], fmt: NameFormat) -> list[str]:
    """Images cvmkeeper made under another ``name_template`` (``core.ownership.renamed_out``),
    said in plain words: they are no longer ours, use quota and are never rotated."""
    lost = renamed_out(images, fmt)
    if not lost:
        return []
    shown = ", ".join(f"{image.name} ({image.image_id})" for image in lost[:10])
    more = f" and {len(lost) - 10} more" if len(lost) > 10 else ""
    return [
        f"{region}: {len(lost)} images made by cvmkeeper under another name format are now "
        f"treated as not ours; they count against the quota and will never be rotated: "
        f"{shown}{more} (name_template changed: restore it, or delete them by hand)"
    ]


def quota_problems(
    setup: Setup,
    checks: Sequence[QuotaCheck],
    notes: Mapping[str, str] | None = None,
    capped: Collection[str] = (),
) -> list[Problem]:
    """One problem per region whose worst case does not fit its quota, with where the
    quota came from (``notes``) and the remedy that applies: where the cap ``image_quota``
    is below the account's quota (``capped``) it is the cap to raise, not the account's."""
    source = display_path(setup.config.source)
    problems = []
    for check in checks:
        if check.fits:
            continue
        note = (notes or {}).get(check.region)
        remedy = (
            "raise or remove image_quota, the cap below the account's quota"
            if check.region in capped
            else "raise the quota"
        )
        problems.append(
            Problem(
                source,
                0,
                0,
                "image_quota",
                f"{check.explain()}"
                + (f" ({note})" if note else "")
                + ": retention wants more images than the region can hold; "
                f"lower keep_* counts, target fewer instances, or {remedy}",
            )
        )
    return problems


def report_ignored_files(config_file: str | None) -> None:
    """Print every entry of the policies directory that is not read, and why.

    A policy renamed to ``web.yaml.bak`` or ``web.YAML`` stops protecting its images; the
    user must see that it is no longer read, even when everything else is valid. Printed
    first, to stderr, so it is there whether or not the rest of the config loads.
    """
    try:
        directory = load_config(config_path(config_file)).policies_dir
    except ConfigError:
        return  # its problems are reported by the full load that follows
    for name, why in ignored_policy_files(directory):
        click.echo(f"{name}: ignored, not read as a policy: {why}", err=True)


def check_region_names(setup: Setup, online: bool, deadline: Deadline) -> None:
    """Every region named is a known Tencent Cloud region, or (``online``) one the cloud
    answers for; a typo is a config problem at its file, line and key (exit 2)."""
    confirmed = confirm_regions(setup, unknown_regions(setup), deadline) if online else []
    region_typos = region_problems(setup, confirmed)
    if region_typos:
        report_config_error(ConfigError(region_typos))
        sys.exit(EXIT_CONFIG)
    for region in confirmed:
        click.echo(
            f"note: region {region} is not in cvmkeeper's list of Tencent Cloud regions, "
            "but the cloud answers for it"
        )


@click.command()
@config_option
@click.option(
    "--online",
    is_flag=True,
    help="Also ask the cloud: the real image quota of each region, its unmanaged images, "
    "and the instances that tag targets select. Needs credentials.",
)
@timeout_option
def validate(config_file: str | None, online: bool, timeout_seconds: float) -> None:
    """Check the daemon config and every policy file, and that retention fits the quota.

    Every problem in every file is reported at once, as FILE:LINE:COLUMN: KEY: MESSAGE,
    with what the key allows. Then, per region, the most images the policies can make
    their instances hold is added up (instances listed by id are counted one by one; a
    tag target counts as at least one instance, or as the instances it selects with
    --online) and compared with the region's quota: offline, the cap image_quota if set,
    else the documented default of 10; --online, the account's quota from
    DescribeImageQuota, capped by image_quota if set (both are shown). An instance
    whose next image can expire its
    newest one (keep_last 1, hourly images under keep_daily alone, ...) counts one image
    more ("+1 to rotate"): the newest is deleted only once its successor exists.

    Files of the policies directory that are not read as policies (hidden, another
    extension, a directory) are listed first, each with the reason.

    Every region the config and the policies name is checked against Tencent Cloud's
    known regions (a typo is reported at its file, line and key, with the closest name);
    with --online a region missing from that list passes when the cloud answers for it.

    On success prints one line per policy (targets, regions, next slot, the most images
    one instance can hold, with the arithmetic) and one line per region, then warnings:
    a policy that can keep more images per instance than CBS documents snapshots per disk
    (64), and with --online every disk a backup cannot hold (local disks, listed disks that
    are not attached), every image holding fewer disks than cvmkeeper asked for, and every
    region pair a policy copies across that the cloud refuses (a SyncImages DryRun).
    --online reads the regions in parallel, all within --timeout (default 60 s); a
    region that has not answered by then is named on stderr, exit 1.

    \b
    Exit status:
      0  everything is valid and fits
      1  --online could not reach the cloud (or a region did not answer within --timeout)
      2  a file is invalid or a region's quota cannot hold the worst case
    """
    report_ignored_files(config_file)
    setup = load_or_exit(config_file)
    now = utc_now()
    deadline = Deadline(timeout_seconds)  # --online: every cloud call ends by it
    check_region_names(setup, online, deadline)
    warnings = snapshot_warnings(setup) + policy_tag_warnings(setup)
    notes: dict[str, str] = {}
    capped: set[str] = set()
    if online:
        try:
            client = bound_by_deadline(cloud_client(setup.config), deadline)
            reads = read_online(client, regions_of(setup), deadline)
            if reads.unreadable:
                sys.exit(EXIT_FAILED)  # each region named by read_online
            checks = online_checks(setup, reads.read, notes, capped)
            warnings += online_disk_warnings(setup, reads.read)
            warnings += refused_pair_warnings(setup, client)
        except CloudError as exc:  # a sentence from Tencent's answer; never a secret
            click.echo(f"validate: --online failed: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        except Exception as exc:  # the cloud layer's errors carry no secrets
            click.echo(f"validate: --online failed: {type(exc).__name__}: {exc}", err=True)
            sys.exit(EXIT_FAILED)
    else:
        checks = offline_checks(setup)
    problems = quota_problems(setup, checks, notes, capped)
    if problems:
        report_config_error(ConfigError(problems))
        sys.exit(EXIT_CONFIG)
    for policy in setup.policies:
        click.echo(policy_summary(policy, now))
    for check in checks:
        note = notes.get(check.region) if online else offline_quota_note(setup)
        click.echo(f"quota {check.explain()}" + (f" ({note})" if note else ""))
    for warning in warnings:
        click.echo(f"warning: {warning}")
    click.echo(f"ok: {len(setup.policies)} policies valid")
