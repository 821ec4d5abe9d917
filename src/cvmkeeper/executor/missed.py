"""Due slots that get no image for want of something to make it from (docs/design.md rule 7).

The planner names a slot it cannot make (a ``Skip``); two causes leave no plan to name it:

- the region's inventory could not be read (its reads failed after retries). Every due
  (policy, instance, slot) of the region is then a failed slot, reported one by one, so
  the report says what was missed, not only that a read failed; they share one cause, so
  they are ONE error alert (fingerprint: region and cause) that names them all. The
  instances of a tag selector cannot be listed: the selector itself (``tag env=prod``)
  stands for them.
- the region was busy with another run of this process (a daemon's slot job, whose
  policies are named): its due slots are named the same way, in one alert.
- an instance a policy names by id exists in none of the policy's regions (deleted, or a
  typo): nothing targets it, so no plan mentions it. Each such (policy, instance, slot) is a
  failed slot and an error with the policy, instance and region tags. A tag selector that
  matches nothing stays the planner's warning: it may rightly match nothing today.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from cvmkeeper.alerting import Failure
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.naming import image_name, slot_tag_value
from cvmkeeper.core.policy import Policy
from cvmkeeper.executor.region import NO_POLICY, RegionResult, RegionRun, RunOptions
from cvmkeeper.executor.report import Outcome


def policy_units(policy: Policy) -> tuple[str, ...]:
    """What a policy targets, as far as can be told without the region: its listed ids
    (less the excluded ones), and its tag selector as ``tag k=v,...``."""
    targets = policy.targets
    units = [i for i in targets.instance_ids if i not in targets.exclude_instance_ids]
    if targets.tags:
        units.append("tag " + ",".join(f"{k}={v}" for k, v in sorted(targets.tags.items())))
    return tuple(units)


def _name(options: RunOptions, instance_id: str, slot: datetime) -> str:
    if not instance_id.startswith("ins-"):
        return ""
    try:
        return image_name(instance_id, slot, options.setup.config.name_format)
    except ValueError:
        return ""


#: Missed slots listed in the body of a region's one alert; the ``missed_slots`` extra
#: lists them all.
LISTED = 20


def report_unread_region(
    run: RegionRun,
    due: Sequence[tuple[str, datetime]],
    why: str = "",
    *,
    cause: CloudError | None = None,
    cause_key: str = "unreadable",
    action: str = "DescribeImages",
) -> None:
    """Every due (policy, instance-or-selector, slot) of a region that could not be read
    (or, ``why``, was not run for another reason): a failed outcome and an error line
    each, and ONE error alert for the cause (none in a dry run).

    The alert is fingerprinted by (region, action, code, ``cause_key``), so an unreadable
    region is one Sentry issue, not a region event plus one per slot; its body, extras and
    tags name every missed slot, instance and policy. The run's report and the policies'
    check-ins still count each slot (its outcome, and its policy among the failed ones).
    """
    options = run.options
    why = why or f"the inventory of {run.region} could not be read"
    missed: list[tuple[str, str, datetime]] = []
    for policy_name, slot in due:
        policy = options.setup.policy(policy_name)
        if policy is None or slot > options.now:
            continue
        for unit in policy_units(policy):
            error = f"slot {slot_tag_value(slot)} of {unit} not made: {why}"
            run.result.outcomes.append(
                Outcome(
                    (policy_name,),
                    run.region,
                    unit,
                    slot,
                    _name(options, unit, slot),
                    None,
                    "failed",
                    error,
                )
            )
            run.error(
                [policy_name], "DescribeImages", error, None, instance=unit, slot=slot, alert=False
            )
            missed.append((policy_name, unit, slot))
    if not options.dry_run:
        options.alerter.error(_region_failure(run.region, why, missed, cause, (action, cause_key)))


def _region_failure(
    region: str,
    why: str,
    missed: Sequence[tuple[str, str, datetime]],
    cause: CloudError | None,
    kind: tuple[str, str],
) -> Failure:
    """The one alert of a region whose due slots were all missed for one cause; ``kind``
    is (action, cause key) when ``cause`` does not say."""
    action, cause_key = kind
    policies = sorted({policy for policy, _, _ in missed})
    instances = sorted({unit for _, unit, _ in missed})
    listed = "; ".join(
        f"{unit} ({policy}) {slot_tag_value(slot)}" for policy, unit, slot in missed[:LISTED]
    )
    if len(missed) > LISTED:
        listed += f"; and {len(missed) - LISTED} more"
    detail = f": {cause}" if cause is not None else ""
    message = f"{region}: {why}{detail}; {len(missed)} due slot(s) not made" + (
        f": {listed}" if missed else ""
    )
    return Failure(
        policy=NO_POLICY,
        action=(cause.action if cause is not None and cause.action else action),
        message=message,
        region=region,
        tencent_code=cause.code if cause is not None else None,
        request_id=cause.request_id if cause is not None else None,
        extra={
            "missed_slots": "\n".join(
                f"{policy}{SEPARATOR}{unit}{SEPARATOR}{slot_tag_value(slot)}"
                for policy, unit, slot in missed
            ),
            "policies": ",".join(policies),
            "instances": ",".join(instances),
        },
        group=(region, cause_key),
        tags={
            "policies": ",".join(policies),
            "missed_slots": str(len(missed)),
            "cause": cause_key,
        },
    )


#: Between the policy, the instance (or selector) and the slot of a ``missed_slots`` line.
SEPARATOR = " | "


def missed_slots(extra: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """The (policy, instance-or-selector, slot) lines of a region alert's extras."""
    lines = extra.get("missed_slots", "")
    return [
        (parts[0], parts[1], parts[2])
        for line in lines.splitlines()
        if len(parts := line.split(SEPARATOR)) == 3
    ]


def report_missing_instances(
    options: RunOptions, results: Sequence[RegionResult], read: Mapping[str, Inventory]
) -> RegionResult:
    """The (policy, instance, slot) of every due slot whose policy names an instance by id
    that none of the policy's regions has; only when every one of its regions was read
    (a region not read already reported its slots). Their outcomes, errors and failed
    policies, as a result of their own (region: the policy's first region)."""
    found = RegionResult("")
    present = {i.instance_id for inventory in read.values() for i in inventory.instances}
    seen: set[tuple[str, datetime]] = set()
    for result in results:
        for policy_name, slot in result.due:
            policy = options.setup.policy(policy_name)
            if policy is None or (policy_name, slot) in seen or slot > options.now:
                continue
            seen.add((policy_name, slot))
            if any(region not in read for region in policy.regions):
                continue
            targets = policy.targets
            for instance_id in targets.instance_ids:
                if instance_id in present or instance_id in targets.exclude_instance_ids:
                    continue
                _missing(options, found, policy, instance_id, slot)
    return found


def _missing(
    options: RunOptions, found: RegionResult, policy: Policy, instance_id: str, slot: datetime
) -> None:
    regions = ", ".join(policy.regions)
    error = (
        f"slot {slot_tag_value(slot)} of {instance_id} not made: policy {policy.name!r} "
        f"names {instance_id}, which is in none of its regions ({regions}): deleted, or "
        "a wrong id"
    )
    region = policy.regions[0]
    found.outcomes.append(
        Outcome(
            (policy.name,),
            region,
            instance_id,
            slot,
            _name(options, instance_id, slot),
            None,
            "failed",
            error,
        )
    )
    found.errors.append(f"{region}: {error}")
    found.failed_policies.add(policy.name)
    options.say(f"{region}: ERROR {error}", level=logging.ERROR, region=region)
    if options.dry_run:
        return
    options.alerter.error(
        Failure(
            policy=policy.name,
            action="targets",
            message=error,
            instance=instance_id,
            region=region,
            extra={"slot": slot_tag_value(slot), "regions": regions},
        )
    )
