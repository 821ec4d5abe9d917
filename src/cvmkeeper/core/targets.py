"""Target resolution: which instances of a region each policy backs up.

Every policy that targets an instance adds its schedules and keep rules to that
instance's one *instance set* (docs/design.md "Words"), so the planner needs, per instance,
the policies that target it. Matching itself (ids, all-tags, exclusions) is
``policy.Targets.selects``; this module applies it to one region's inventory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cvmkeeper.core.inventory import Instance
from cvmkeeper.core.policy import Policy


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of resolving policies against one region's instances.

    ``policies_by_instance`` maps each targeted instance id to the policies that target it
    (in the order the policies were given, no duplicates). ``unmatched`` names every policy
    of this region that matches no instance (in order) and ``warnings`` says so for each.
    Policies that do not list the region are ignored.
    """

    policies_by_instance: dict[str, tuple[Policy, ...]]
    warnings: tuple[str, ...]
    unmatched: tuple[str, ...] = ()

    def instances_of(self, policy_name: str) -> tuple[str, ...]:
        """The instance ids ``policy_name`` targets in this region, sorted."""
        return tuple(
            sorted(
                instance_id
                for instance_id, policies in self.policies_by_instance.items()
                if any(policy.name == policy_name for policy in policies)
            )
        )


def policy_applies(policy: Policy, region: str) -> bool:
    """True when ``policy`` lists ``region``."""
    return region in policy.regions


def resolve_targets(
    region: str, policies: Iterable[Policy], instances: Iterable[Instance]
) -> Resolution:
    """Resolve which policies target which instances of ``region``.

    An instance is targeted by a policy when the policy lists ``region`` and its targets
    select the instance (listed id, or all of the policy's tags; never when excluded).
    Only instances present in the region's inventory can be targeted: a listed id that is
    not there belongs to another region or no longer exists.
    """
    regional = [policy for policy in policies if policy_applies(policy, region)]
    instance_list = list(instances)
    by_instance: dict[str, list[Policy]] = {}
    matched: set[str] = set()
    for policy in regional:
        for instance in instance_list:
            if policy.targets.selects(instance.instance_id, instance.tags):
                chosen = by_instance.setdefault(instance.instance_id, [])
                if all(existing.name != policy.name for existing in chosen):
                    chosen.append(policy)
                matched.add(policy.name)
    unmatched = tuple(policy.name for policy in regional if policy.name not in matched)
    return Resolution(
        policies_by_instance={key: tuple(value) for key, value in by_instance.items()},
        warnings=tuple(f"policy {name!r} matches no instance in {region}" for name in unmatched),
        unmatched=unmatched,
    )
