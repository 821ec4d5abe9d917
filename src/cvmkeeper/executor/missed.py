"""Due slots that get no image for want of something to make it from (docs/design.md rule 7).

The planner names a slot it cannot make (a ``Skip``); two causes leave no plan to name it:

- the region's inventory could not be read (its reads failed after retries). Every due
  (policy, instance, slot) of the region is then a failed slot, reported and alerted one
  by one, so the report says what was missed, not only that a read failed. The instances
  of a tag selector cannot be listed: the selector itself (``tag env=prod``) stands for them.
- the region was busy with another run of this process (a daemon's slot job, whose
  policies are named): its due slots are named the same way.
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
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.naming import image_name, slot_tag_value
from cvmkeeper.core.policy import Policy
from cvmkeeper.executor.region import RegionResult, RegionRun, RunOptions
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


def report_unread_region(
    run: RegionRun, due: Sequence[tuple[str, datetime]], why: str = ""
) -> None:
    """Every due (policy, instance-or-selector, slot) of a region that could not be read
    (or, ``why``, was not run for another reason): a failed outcome and an error alert
    each (a dry run alerts nothing)."""
    options = run.options
    why = why or f"the inventory of {run.region} could not be read"
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
            run.error([policy_name], "DescribeImages", error, None, instance=unit, slot=slot)


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
    options.say(f"{region}: ERROR {error}", level=logging.ERROR)
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
