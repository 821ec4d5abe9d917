"""The policy key ``drill``: a periodic restore drill (issue #16). Off unless given::

    drill:
      every: 7d                    # how often (default 7d)
      zone: ap-guangzhou-3         # where the throwaway instance runs
      vpc_id: vpc-1a2b3c4d
      subnet_id: subnet-1a2b3c4d
      security_group_ids: [sg-1a2b3c4d]
      instance_type: S5.SMALL2     # a small, cheap type
      check: {tcp_port: 22}        # optional: a TCP connect from the daemon's host
      timeout: 15m                 # RUNNING (and the check) within this (default 15m)
      max_per_run: 1               # instances drilled per run (default 1)

Every mistake is a problem naming the file, the line and the key.
"""

from __future__ import annotations

import re
from datetime import timedelta

from cvmkeeper.config.reader import Node, Reader
from cvmkeeper.core.drill import DrillSpec

DRILL_KEYS = (
    "every",
    "zone",
    "vpc_id",
    "subnet_id",
    "security_group_ids",
    "instance_type",
    "check",
    "timeout",
    "max_per_run",
)
ZONE = re.compile(r"[a-z]+-[a-z]+(-[a-z]+)*-\d+")
VPC = re.compile(r"vpc-[a-z0-9]+")
SUBNET = re.compile(r"subnet-[a-z0-9]+")
SG = re.compile(r"sg-[a-z0-9]+")
INSTANCE_TYPE = re.compile(r"[A-Z0-9]+[a-z0-9]*\.[A-Z0-9]+")


# Long on purpose (~90 lines): one flat block per key of drill:, in the order the docs
# list them, like read_policy; splitting it would scatter one table over several functions.
def read_drill(
    reader: Reader, node: Node, regions: tuple[str, ...], path: str = "drill"
) -> DrillSpec | None:
    """Read ``drill``; ``None`` after recording a problem."""
    keys = reader.mapping(
        node,
        path,
        DRILL_KEYS,
        required=("zone", "vpc_id", "subnet_id", "security_group_ids", "instance_type"),
    )
    if keys is None:
        return None
    every: timedelta | None = timedelta(days=7)
    if "every" in keys:
        every = reader.duration(keys["every"], f"{path}.every", timedelta(hours=1))
    timeout: timedelta | None = timedelta(minutes=15)
    if "timeout" in keys:
        timeout = reader.duration(keys["timeout"], f"{path}.timeout", timedelta(minutes=1))
    zone = (
        reader.string(keys["zone"], f"{path}.zone", ZONE, "a zone such as ap-guangzhou-3")
        if "zone" in keys
        else None
    )
    if zone and not any(zone.startswith(region + "-") for region in regions):
        reader.problem(
            keys["zone"],
            f"{path}.zone",
            f"{zone} is in none of the policy's regions ({', '.join(regions)})",
        )
        zone = None
    vpc = (
        reader.string(keys["vpc_id"], f"{path}.vpc_id", VPC, "a VPC id such as vpc-1a2b3c4d")
        if "vpc_id" in keys
        else None
    )
    subnet = (
        reader.string(
            keys["subnet_id"], f"{path}.subnet_id", SUBNET, "a subnet id such as subnet-1a2b3c4d"
        )
        if "subnet_id" in keys
        else None
    )
    groups = (
        reader.string_list(
            keys["security_group_ids"],
            f"{path}.security_group_ids",
            SG,
            "a security group id such as sg-1a2b3c4d",
        )
        if "security_group_ids" in keys
        else None
    )
    instance_type = (
        reader.string(
            keys["instance_type"],
            f"{path}.instance_type",
            INSTANCE_TYPE,
            "an instance type such as S5.SMALL2",
        )
        if "instance_type" in keys
        else None
    )
    port: int | None = 0
    if "check" in keys:
        check = reader.mapping(
            keys["check"], f"{path}.check", ("tcp_port",), required=("tcp_port",)
        )
        port = (
            reader.integer(check["tcp_port"], f"{path}.check.tcp_port", 1, 65535)
            if check and "tcp_port" in check
            else None
        )
    cap: int | None = 1
    if "max_per_run" in keys:
        cap = reader.integer(keys["max_per_run"], f"{path}.max_per_run", 1, 100)
    if (
        not (zone and vpc and subnet and groups and instance_type and every and timeout)
        or port is None
        or cap is None
    ):
        return None
    return DrillSpec(
        every=every,
        zone=zone,
        subnet_id=subnet,
        vpc_id=vpc,
        security_group_ids=tuple(groups),
        instance_type=instance_type,
        tcp_port=port,
        timeout=timeout,
        max_per_run=cap,
    )
