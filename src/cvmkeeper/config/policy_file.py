"""One policy file (``policies/*.yaml``) → one ``Policy``, with every problem reported.

The file format, key by key::

    name: web-daily                  # required; lowercase letters, digits and '-'
    description: Web tier, nightly   # optional, for people
    regions: [ap-guangzhou]          # default: the daemon config's regions
    targets:                         # at least instance_ids or tags
      instance_ids: [ins-6pb6lrmy]
      tags: {backup: daily}          # instances carrying all of these tags
      exclude_instance_ids: []
    timezone: Asia/Shanghai          # buckets of retention; default: first schedule's
    schedules:                       # 1 to 4
      - cron: "0 2 * * *"            # or  every: 6h
        timezone: Asia/Shanghai      # default: the policy timezone, else UTC
        jitter: 5m                   # optional random delay of the run (not the slot)
    retention: {keep_last: 3, keep_daily: 7, keep_weekly: 4, keep_monthly: 6, min_keep: 1}
    consistency: live                # live | force_poweroff | stop_start
    disks: all                       # all | system | {include: [...]} | {exclude: [...]}
    catch_up: 1d                     # or off; default: one schedule period
    on_quota_full: evict             # evict | skip; default: the daemon config's
    copies:                          # disaster-recovery copies in other regions (SyncImages)
      - region: ap-shanghai          # a region other than the policy's only region
        retention: {keep_daily: 7}   # same keys as retention; default: the main retention
    drill:                           # optional restore drill (config/drill_key.py); off
      zone: ap-guangzhou-3
      vpc_id: vpc-1a2b3c4d
      subnet_id: subnet-1a2b3c4d
      security_group_ids: [sg-1a2b3c4d]
      instance_type: S5.SMALL2
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import yaml

from cvmkeeper.config.disks_key import read_disks
from cvmkeeper.config.drill_key import read_drill
from cvmkeeper.config.reader import Node, Reader
from cvmkeeper.core.naming import INSTANCE_ID_PATTERN, MAX_NAME_LENGTH
from cvmkeeper.core.policy import (
    MAX_SCHEDULES,
    MIN_INTERVAL,
    ON_QUOTA_FULL_CHOICES,
    RETENTION_COUNT_RULES,
    Consistency,
    CopyRule,
    OnQuotaFull,
    Policy,
    Retention,
    Schedule,
    Targets,
)
from cvmkeeper.core.schedule import CronError, check_schedule, parse_cron, policy_period, zone

POLICY_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
POLICY_NAME_HELP = "1-63 lowercase letters, digits and '-' (not at either end)"
REGION = re.compile(r"[a-z]{2,}(?:-[a-z0-9]+)+")
REGION_HELP = "a region id such as ap-guangzhou"
TAG_KEY = re.compile(r"[^\s].{0,126}")

POLICY_KEYS = (
    "name",
    "description",
    "regions",
    "targets",
    "timezone",
    "schedules",
    "retention",
    "consistency",
    "catch_up",
    "copies",
    "on_quota_full",
    "disks",
    "drill",
)
TARGET_KEYS = ("instance_ids", "tags", "exclude_instance_ids")
COPY_KEYS = ("region", "retention")
SCHEDULE_KEYS = ("cron", "every", "timezone", "jitter")
RETENTION_KEYS = (*RETENTION_COUNT_RULES, "keep_within", "min_keep")
MAX_KEEP = 10_000
_OFF = ("off", "false", "no")


def read_retention(
    reader: Reader, node: Node, path: str, *, require_rule: bool = True
) -> Retention | None:
    """The ``retention:`` mapping (also used for ``orphans:``); refuses one keeping nothing."""
    keys = reader.mapping(node, path, RETENTION_KEYS)
    if keys is None:
        return None
    values: dict[str, int] = {}
    ok = True
    for rule in RETENTION_COUNT_RULES:
        if rule in keys:
            count = reader.integer(keys[rule], f"{path}.{rule}", 0, MAX_KEEP)
            ok = ok and count is not None
            values[rule] = count or 0
    within: timedelta | None = None
    if "keep_within" in keys:
        within = reader.duration(keys["keep_within"], f"{path}.keep_within", MIN_INTERVAL)
        ok = ok and within is not None
    min_keep = 1
    if "min_keep" in keys:
        value = reader.integer(keys["min_keep"], f"{path}.min_keep", 1, MAX_KEEP)
        ok = ok and value is not None
        min_keep = value or 1
    if not ok:
        return None
    retention = Retention(keep_within=within, min_keep=min_keep, **values)
    if require_rule and not retention.keeps_something:
        reader.problem(
            node,
            path,
            "keeps nothing: set at least one of "
            + ", ".join(RETENTION_COUNT_RULES)
            + " (above 0) or keep_within",
        )
        return None
    return retention


def _read_targets(reader: Reader, node: Node) -> Targets | None:
    keys = reader.mapping(node, "targets", TARGET_KEYS)
    if keys is None:
        return None
    ok = True
    id_help = (
        f"a CVM instance id: 'ins-' and 8 lowercase letters or digits (longer ids "
        f"cannot get a unique image name within {MAX_NAME_LENGTH} characters)"
    )
    ids: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    if "instance_ids" in keys:
        got = reader.string_list(
            keys["instance_ids"], "targets.instance_ids", INSTANCE_ID_PATTERN, id_help
        )
        ok = ok and got is not None
        ids = got or ()
    if "exclude_instance_ids" in keys:
        got = reader.string_list(
            keys["exclude_instance_ids"],
            "targets.exclude_instance_ids",
            INSTANCE_ID_PATTERN,
            id_help,
        )
        ok = ok and got is not None
        excluded = got or ()
    tags: dict[str, str] = {}
    if "tags" in keys:
        tag_keys = reader.mapping(keys["tags"], "targets.tags", None)
        if tag_keys is None:
            ok = False
        else:
            for key, value_node in tag_keys.items():
                value = reader.string(value_node, f"targets.tags.{key}", raw=True)
                ok = ok and value is not None
                tags[key] = value or ""
    if ok and not ids and not tags:
        reader.problem(node, "targets", "selects nothing: give instance_ids or tags (or both)")
        return None
    both = sorted(set(ids) & set(excluded))
    if ok and both:
        reader.problem(node, "targets", f"{', '.join(both)} both listed and excluded")
        return None
    return Targets(instance_ids=ids, tags=tags, exclude_instance_ids=excluded) if ok else None


def _read_copies(
    reader: Reader, node: Node, regions: tuple[str, ...], main: Retention | None
) -> tuple[CopyRule, ...] | None:
    """The ``copies:`` list: one ``{region, retention}`` per destination region.

    ``retention`` defaults to the main retention (a copy keeps at most what the source
    keeps unless its own retention says more). A destination must differ from the source:
    copying to the policy's only region is refused, and so is a region listed twice.
    """
    rules: list[CopyRule] = []
    ok = True
    for item_path, item in reader.items(node, "copies"):
        keys = reader.mapping(item, item_path, COPY_KEYS, required=("region",))
        if keys is None:
            ok = False
            continue
        if "region" not in keys:
            ok = False
            continue
        region = reader.string(keys["region"], f"{item_path}.region", REGION, REGION_HELP)
        retention: Retention | None = main
        if "retention" in keys:
            retention = read_retention(reader, keys["retention"], f"{item_path}.retention")
            ok = ok and retention is not None
        if region is None:
            ok = False
            continue
        if regions and set(regions) == {region}:
            reader.problem(
                keys["region"],
                f"{item_path}.region",
                f"{region} is the policy's only region: a copy must go to another region",
            )
            ok = False
            continue
        if any(rule.region == region for rule in rules):
            reader.problem(keys["region"], f"{item_path}.region", f"{region} is listed twice")
            ok = False
            continue
        if retention is not None:
            rules.append(CopyRule(region=region, retention=retention))
    return tuple(rules) if ok else None


def _read_timezone(reader: Reader, node: Node, path: str) -> str | None:
    name = reader.string(node, path)
    return None if name is None else reader.checked(node, path, name, zone)


def _read_schedule(reader: Reader, node: Node, path: str, default_timezone: str) -> Schedule | None:
    keys = reader.mapping(node, path, SCHEDULE_KEYS)
    if keys is None:
        return None
    if ("cron" in keys) == ("every" in keys):
        reader.problem(node, path, "give exactly one of cron (a crontab line) or every (6h)")
        return None
    ok = True
    timezone = default_timezone
    if "timezone" in keys:
        got = _read_timezone(reader, keys["timezone"], f"{path}.timezone")
        ok = ok and got is not None
        timezone = got or timezone
    jitter = timedelta()
    if "jitter" in keys:
        got_jitter = reader.duration(keys["jitter"], f"{path}.jitter")
        ok = ok and got_jitter is not None
        jitter = got_jitter or jitter
    cron: str | None = None
    every: timedelta | None = None
    if "cron" in keys:
        cron = reader.string(keys["cron"], f"{path}.cron")
        if cron is not None:
            try:
                parse_cron(cron)
            except CronError as exc:
                reader.problem(keys["cron"], f"{path}.cron", str(exc))
                cron = None
        ok = ok and cron is not None
    else:
        every = reader.duration(keys["every"], f"{path}.every", MIN_INTERVAL)
        if every is not None and every % MIN_INTERVAL:
            reader.problem(keys["every"], f"{path}.every", "must be a whole number of minutes")
            every = None
        ok = ok and every is not None
    if not ok:
        return None
    schedule = Schedule(cron=cron, every=every, timezone=timezone, jitter=jitter)
    where = keys.get("jitter", node)
    return reader.checked(
        where, f"{path}.jitter" if "jitter" in keys else path, schedule, check_schedule
    )


def _schedule_timezone(reader: Reader, node: Node) -> str | None:
    """The first schedule's explicit timezone, read quietly (for the policy default)."""
    quiet = Reader(reader.source)
    for item_path, item in quiet.items(node, "schedules"):
        keys = quiet.mapping(item, item_path, None)
        if keys and "timezone" in keys:
            return _read_timezone(quiet, keys["timezone"], item_path)
        return None
    return None


def _read_regions(
    reader: Reader, keys: dict[str, Node], root: Node, default_regions: tuple[str, ...]
) -> tuple[tuple[str, ...], bool]:
    """``regions`` (default: the daemon config's), and whether it read cleanly."""
    if "regions" in keys:
        got = reader.string_list(keys["regions"], "regions", REGION, REGION_HELP)
        if got == ():
            reader.problem(keys["regions"], "regions", "is empty: name at least one region")
            return (), False
        return got or (), got is not None
    if not default_regions:
        reader.problem(root, "regions", "required here, or set regions in the daemon config")
        return default_regions, False
    return default_regions, True


def _read_policy_timezone(reader: Reader, keys: dict[str, Node]) -> tuple[str, bool]:
    """``timezone`` (default: the first schedule's, else UTC), and whether it read cleanly."""
    if "timezone" in keys:
        got = _read_timezone(reader, keys["timezone"], "timezone")
        return got or "UTC", got is not None
    if "schedules" in keys:
        return _schedule_timezone(reader, keys["schedules"]) or "UTC", True
    return "UTC", True


def _read_schedules(reader: Reader, node: Node, timezone: str) -> tuple[list[Schedule], bool]:
    """``schedules``: 1 to ``MAX_SCHEDULES`` distinct entries, and whether all read cleanly."""
    ok = True
    entries = list(reader.items(node, "schedules"))
    if not entries and reader.problems and reader.problems[-1].path == "schedules":
        ok = False
    elif not entries:
        reader.problem(node, "schedules", "is empty: give at least one schedule")
        ok = False
    elif len(entries) > MAX_SCHEDULES:
        reader.problem(node, "schedules", f"has {len(entries)} entries; at most {MAX_SCHEDULES}")
        ok = False
    schedules: list[Schedule] = []
    for item_path, item in entries[:MAX_SCHEDULES]:
        schedule = _read_schedule(reader, item, item_path, timezone)
        if schedule is None:
            ok = False
        elif schedule in schedules:
            reader.problem(item, item_path, "repeats an earlier schedule")
            ok = False
        else:
            schedules.append(schedule)
    return schedules, ok


def _read_consistency(reader: Reader, keys: dict[str, Node]) -> tuple[Consistency, bool]:
    """``consistency`` (default ``live``), and whether it read cleanly."""
    if "consistency" not in keys:
        return Consistency.LIVE, True
    got = reader.choice(keys["consistency"], "consistency", [c.value for c in Consistency])
    return (Consistency(got) if got else Consistency.LIVE), got is not None


def _read_on_quota_full(
    reader: Reader, keys: dict[str, Node], default: OnQuotaFull
) -> tuple[OnQuotaFull, bool]:
    """``on_quota_full`` (default: the daemon config's), and whether it read cleanly."""
    if "on_quota_full" not in keys:
        return default, True
    got = reader.choice(keys["on_quota_full"], "on_quota_full", ON_QUOTA_FULL_CHOICES)
    return ("skip" if got == "skip" else "evict"), got is not None


def _read_catch_up(reader: Reader, keys: dict[str, Node]) -> tuple[timedelta | None, bool]:
    """``catch_up``: a duration, or ``off`` (zero); ``None`` when absent (one period)."""
    if "catch_up" not in keys:
        return None, True
    node = keys["catch_up"]
    if isinstance(node, yaml.ScalarNode) and str(node.value).lower() in _OFF:
        return timedelta(), True
    catch_up = reader.duration(node, "catch_up", MIN_INTERVAL)
    return catch_up, catch_up is not None


def read_policy(
    reader: Reader,
    root: Node,
    *,
    default_regions: tuple[str, ...] = (),
    default_on_quota_full: OnQuotaFull = "evict",
) -> Policy | None:
    """Build the ``Policy`` of one composed file; ``None`` after recording its problems.

    Keys are read in the order the policy reference (docs/policies.md, "Policy reference")
    documents them, so problems are reported in that order; each ``ok_*`` says whether one
    key read cleanly.
    """
    keys = reader.mapping(
        root, "", POLICY_KEYS, required=("name", "targets", "schedules", "retention")
    )
    if keys is None:
        return None
    name = (
        reader.string(keys["name"], "name", POLICY_NAME, POLICY_NAME_HELP)
        if "name" in keys
        else None
    )
    description = ""
    if "description" in keys:
        description = reader.string(keys["description"], "description", raw=True) or ""
    regions, ok_regions = _read_regions(reader, keys, root, default_regions)
    targets = _read_targets(reader, keys["targets"]) if "targets" in keys else None
    timezone, ok_timezone = _read_policy_timezone(reader, keys)
    schedules, ok_schedules = (
        _read_schedules(reader, keys["schedules"], timezone) if "schedules" in keys else ([], True)
    )
    retention = (
        read_retention(reader, keys["retention"], "retention") if "retention" in keys else None
    )
    consistency, ok_consistency = _read_consistency(reader, keys)
    on_quota_full, ok_quota = _read_on_quota_full(reader, keys, default_on_quota_full)
    disks = read_disks(reader, keys["disks"]) if "disks" in keys else Policy.disks_default()
    drill = read_drill(reader, keys["drill"], regions) if "drill" in keys else None
    catch_up, ok_catch_up = _read_catch_up(reader, keys)
    copies = _read_copies(reader, keys["copies"], regions, retention) if "copies" in keys else ()
    ok = (
        ok_regions
        and ok_timezone
        and ok_schedules
        and ok_consistency
        and ok_quota
        and disks is not None
        and ("drill" not in keys or drill is not None)
        and ok_catch_up
        and copies is not None
    )
    if not (ok and name and targets and retention and schedules):
        return None
    policy = Policy(
        name=name,
        regions=regions,
        targets=targets,
        schedules=tuple(schedules),
        retention=retention,
        timezone=timezone,
        consistency=consistency,
        copies=copies or (),
        on_quota_full=on_quota_full,
        description=description,
        source=reader.source,
        disks=disks or Policy.disks_default(),
        drill=drill,
    )
    return dataclasses.replace(
        policy, catch_up=catch_up if catch_up is not None else policy_period(policy)
    )
