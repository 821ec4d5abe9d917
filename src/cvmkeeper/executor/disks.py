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

import logging
from collections.abc import Sequence

from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.cloud.models import CreateImageRequest, CreateOutcome
from cvmkeeper.core.disk_report import disk_choice
from cvmkeeper.core.disks import TAG_DISKS
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.plan import Create
from cvmkeeper.core.policy import Consistency, Policy

__all__ = ["create_image", "create_request"]

log = logging.getLogger(__name__)

#: ``CreateImage`` refusals that mean "the disks changed since the inventory was read" (a
#: disk detached, or swapped for a local one, between ``DescribeInstances`` and the create).
STALE_DISK_CODES = frozenset(
    {
        "InvalidParameter.DataDiskNotBelongSpecifiedInstance",
        "InvalidParameter.LocalDataDiskNotSupport",
    }
)


def create_request(
    step: Create, inventory: Inventory | None, policies: Sequence[Policy]
) -> CreateImageRequest:
    """The request for ``step``: name, tags, description, ``ForcePoweroff``, ``DataDiskIds``."""
    due = [policy for policy in policies if policy.name in step.policies]
    instance = None
    if inventory is not None:
        instance = next((i for i in inventory.instances if i.instance_id == step.instance_id), None)
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


def create_image(
    client: CloudClient,
    region: str,
    step: Create,
    request: CreateImageRequest,
    policies: Sequence[Policy],
) -> CreateOutcome:
    """``CreateImage``; when the cloud says a listed disk is no longer the instance's (it was
    detached after the run read the inventory), read the instance again and try once more
    with the disks it has now. Any other error, or the same disks, is raised as it is."""
    try:
        return client.create_image(region, request)
    except CloudError as error:
        if error.code not in STALE_DISK_CODES or not request.data_disk_ids:
            raise
        instances = client.list_instances(region, ids=[step.instance_id])
        fresh = create_request(step, Inventory(region, 0, (), instances), policies)
        if not instances or fresh.data_disk_ids == request.data_disk_ids:
            raise
        log.warning(
            "%s: CreateImage %s: %s; the disks of %s changed since the inventory was "
            "read: trying again with %s",
            region,
            step.image_name,
            error.code,
            step.instance_id,
            list(fresh.data_disk_ids) or "the system disk only",
        )
        return client.create_image(region, fresh)
