"""What ``validate --online`` reads from the cloud: every region at once, within one
``--timeout``.

It read regions one after another, each call waiting out ``cloud.timeout`` and its
retries, and read each region twice (quota check, disk warnings): against a silent
endpoint it took two minutes before saying anything (issue #17). Each region is now read
once (quota, images, instances), in parallel (``region_reads``), and every call of the
command ends by one deadline (``cloud.deadline``), copy-pair probes included.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from cvmkeeper.cli.region_reads import RegionReads, read_regions
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.deadline import Deadline
from cvmkeeper.core.inventory import Inventory


def read_online(
    client: CloudClient, regions: Sequence[str], deadline: Deadline
) -> RegionReads[Inventory]:
    """Each region's account quota (not capped: the check shows both), images and
    instances; the unreadable ones named on stderr. ``client`` is bounded by ``deadline``."""

    def read(region: str) -> Inventory:
        return Inventory(
            region=region,
            quota=client.image_quota(region),
            images=client.list_images(region),
            instances=client.list_instances(region),
        )

    reads = read_regions(regions, read, deadline.seconds)
    for region, problem in reads.unreadable.items():
        click.echo(f"validate: --online failed: {region}: {problem}", err=True)
    return reads
