"""The warnings of rule 10: disks a backup cannot hold, and images holding fewer than asked.

Pure: it takes a region's inventory and the policies targeting each instance, and returns
warnings as ``core.plan.PlanWarning`` values (kind ``disks``, with their policies and
instance as fields). The planner adds them to every plan, so they are alerted on every run
(and printed by ``plan``); ``status`` and ``validate --online`` print their messages too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from cvmkeeper.core.disks import SNAPSHOTS_PER_DISK, DiskChoice, choose_disks, shortfall
from cvmkeeper.core.inventory import Instance, Inventory
from cvmkeeper.core.naming import DEFAULT_FORMAT, NameFormat
from cvmkeeper.core.ownership import ManagedImage, split_images
from cvmkeeper.core.plan import PlanWarning, WarningKind
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.targets import resolve_targets


def policies_text(policies: Iterable[Policy]) -> str:
    """``policy 'db'`` or ``policies 'a', 'b'``, for the message (the policies are a field)."""
    names = sorted({policy.name for policy in policies})
    label = "policy" if len(names) == 1 else "policies"
    return f"{label} " + ", ".join(f"'{name}'" for name in names)


def disk_choice(instance: Instance, policies: Sequence[Policy]) -> DiskChoice:
    """The ``DataDiskIds`` of an image of ``instance`` for ``policies`` (``choose_disks``)."""
    return choose_disks(
        instance.system_disk, instance.data_disks, [policy.disks for policy in policies]
    )


def _names(policies: Iterable[Policy] | None) -> tuple[str, ...]:
    return tuple(sorted({policy.name for policy in policies or ()}))


def left_out_warnings(instance: Instance, policies: Sequence[Policy]) -> list[PlanWarning]:
    """One warning per disk the policies want that the next image will not hold."""
    choice = disk_choice(instance, policies)
    who = policies_text(policies)
    return [
        PlanWarning(
            WarningKind.DISKS,
            f"{who}: instance {instance.instance_id}: disk {left.disk_id} {left.reason}; "
            "it is NOT in the backup",
            _names(policies),
            instance.instance_id,
        )
        for left in choice.left_out
    ]


def disk_warnings(
    inventory: Inventory,
    policies_by_instance: Mapping[str, Sequence[Policy]],
    managed: Iterable[ManagedImage],
) -> list[PlanWarning]:
    """Every rule-10 warning of one region, in a stable order.

    - a data disk the policies want that cannot be imaged (a local disk, a listed disk that
      is not attached, the system disk listed as a data disk);
    - a managed image holding fewer data disks than cvmkeeper asked for (its
      ``cvmkeeper:disks`` tag against the ``DATA_DISK`` entries of its ``SnapshotSet``);
    - an instance whose images would keep more snapshots of one disk than the documented
      CBS quota of 64 per disk (``core.disks.SNAPSHOTS_PER_DISK``).
    """
    instances = {instance.instance_id: instance for instance in inventory.instances}
    messages: list[PlanWarning] = []
    for instance_id in sorted(policies_by_instance):
        instance = instances.get(instance_id)
        if instance is not None:
            messages += left_out_warnings(instance, policies_by_instance[instance_id])
    per_instance: Counter[str] = Counter()
    for owned in sorted(managed, key=lambda o: (o.instance_id, o.slot)):
        per_instance[owned.instance_id] += 1
        policies = policies_by_instance.get(owned.instance_id)
        short = shortfall(owned.image.tags, owned.image.snapshots)
        if short is None or not owned.image.state.usable:
            continue
        asked, held = short
        who = policies_text(policies) if policies else "no policy"
        messages.append(
            PlanWarning(
                WarningKind.DISKS,
                f"{who}: image {owned.image.name} ({owned.image_id}) of instance "
                f"{owned.instance_id} holds {held} of the {asked} data disks cvmkeeper asked for",
                _names(policies),
                owned.instance_id,
            )
        )
    for instance_id, count in sorted(per_instance.items()):
        policies = policies_by_instance.get(instance_id)
        if policies and count + 1 > SNAPSHOTS_PER_DISK:
            messages.append(
                PlanWarning(
                    WarningKind.DISKS,
                    f"{policies_text(policies)}: instance {instance_id} has {count} images; each "
                    f"holds a snapshot of every disk and CBS documents at most "
                    f"{SNAPSHOTS_PER_DISK} snapshots per disk: keep fewer images",
                    _names(policies),
                    instance_id,
                )
            )
    return messages


def region_disk_warnings(
    inventory: Inventory, policies: Sequence[Policy], fmt: NameFormat = DEFAULT_FORMAT
) -> list[str]:
    """The messages of :func:`disk_warnings` of one region from its inventory and every
    configured policy (what ``status`` and ``validate --online`` print; the planner
    computes the same)."""
    resolution = resolve_targets(inventory.region, policies, inventory.instances)
    managed, _unmanaged = split_images(inventory.images, fmt)
    return [w.message for w in disk_warnings(inventory, resolution.policies_by_instance, managed)]
