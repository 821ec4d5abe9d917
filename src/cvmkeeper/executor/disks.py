"""The ``CreateImage`` request of one planned create, holding the whole machine (rule 10).

The plan's ``Create`` step says which instance and slot; which disks go in is read here from
the instance as the run's inventory showed it (``DescribeInstances``' ``DataDisks`` at the
slot) and the due policies' ``disks`` key (``core.disks.choose_disks``). The ids asked for
are recorded in the image's ``cvmkeeper:disks`` tag, because ``SnapshotSet`` does not name
disks: the tag against the ``SnapshotSet`` is how an image holding fewer disks is noticed.

Consistency needs nothing extra: ``ForcePoweroff`` powers off the whole instance and
``stop_start`` stops it, so every disk is imaged at rest either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from cvmkeeper.cloud.models import CreateImageRequest
from cvmkeeper.core.disk_report import disk_choice, is_disk_warning, warning_instance
from cvmkeeper.core.disks import TAG_DISKS
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.plan import Create
from cvmkeeper.core.policy import Consistency, Policy

__all__ = ["create_request", "instance_in_warning", "is_disk_warning"]


def instance_in_warning(message: str) -> str | None:
    """The instance of a plan warning about disks (rule 10), for the alert's instance tag."""
    return warning_instance(message)


def create_request(
    step: Create, inventory: Inventory | None, policies: Sequence[Policy]
) -> CreateImageRequest:
    """The request for ``step``: name, tags, description, ``ForcePoweroff``, ``DataDiskIds``."""
    due = [policy for policy in policies if policy.name in step.policies]
    instance = None
    if inventory is not None:
        instance = next(
            (i for i in inventory.instances if i.instance_id == step.instance_id), None
        )
    data_disk_ids: tuple[str, ...] = ()
    tags = dict(step.tags)
    if instance is not None and due:
        choice = disk_choice(instance, due)
        data_disk_ids = choice.data_disk_ids
        tags[TAG_DISKS] = choice.tag_value
    return CreateImageRequest(
        name=step.image_name,
        instance_id=step.instance_id,
        description=step.description,
        tags=tags,
        force_poweroff=step.consistency is Consistency.FORCE_POWEROFF,
        data_disk_ids=data_disk_ids,
    )
