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
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

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
T = TypeVar("T")


def _given(
    keys: dict[str, Node], key: str, default: T, read: Callable[[Node], T | None]
) -> T | None:
    """``read(keys[key])`` when ``key`` is given (``None`` after a problem), else ``default``."""
    return read(keys[key]) if key in keys else default


def _read_zone(
    reader: Reader, keys: dict[str, Node], path: str, regions: tuple[str, ...]
) -> str | None:
    """``zone``: well formed and inside one of the policy's regions."""
    zone = _given(
        keys,
        "zone",
        None,
        lambda node: reader.string(node, f"{path}.zone", ZONE, "a zone such as ap-guangzhou-3"),
    )
    if zone and not any(zone.startswith(region + "-") for region in regions):
        reader.problem(
            keys["zone"],
            f"{path}.zone",
            f"{zone} is in none of the policy's regions ({', '.join(regions)})",
        )
        zone = None
    return zone


def _read_network(
    reader: Reader, keys: dict[str, Node], path: str
) -> tuple[str | None, str | None, tuple[str, ...] | None]:
    """``vpc_id``, ``subnet_id`` and ``security_group_ids``, in that order."""
    vpc = _given(
        keys,
        "vpc_id",
        None,
        lambda node: reader.string(node, f"{path}.vpc_id", VPC, "a VPC id such as vpc-1a2b3c4d"),
    )
    subnet = _given(
        keys,
        "subnet_id",
        None,
        lambda node: reader.string(
            node, f"{path}.subnet_id", SUBNET, "a subnet id such as subnet-1a2b3c4d"
        ),
    )
    groups = _given(
        keys,
        "security_group_ids",
        None,
        lambda node: reader.string_list(
            node, f"{path}.security_group_ids", SG, "a security group id such as sg-1a2b3c4d"
        ),
    )
    return vpc, subnet, groups


def _read_check_port(reader: Reader, node: Node, path: str) -> int | None:
    """``check: {tcp_port: N}``: the port the drill connects to."""
    check = reader.mapping(node, f"{path}.check", ("tcp_port",), required=("tcp_port",))
    if check and "tcp_port" in check:
        return reader.integer(check["tcp_port"], f"{path}.check.tcp_port", 1, 65535)
    return None


def read_drill(
    reader: Reader, node: Node, regions: tuple[str, ...], path: str = "drill"
) -> DrillSpec | None:
    """Read ``drill``; ``None`` after recording a problem. Keys are read in the order the
    docs list them, so problems are reported in that order."""
    keys = reader.mapping(
        node,
        path,
        DRILL_KEYS,
        required=("zone", "vpc_id", "subnet_id", "security_group_ids", "instance_type"),
    )
    if keys is None:
        return None
    every = _given(
        keys,
        "every",
        timedelta(days=7),
        lambda node: reader.duration(node, f"{path}.every", timedelta(hours=1)),
    )
    timeout = _given(
        keys,
        "timeout",
        timedelta(minutes=15),
        lambda node: reader.duration(node, f"{path}.timeout", timedelta(minutes=1)),
    )
    zone = _read_zone(reader, keys, path, regions)
    vpc, subnet, groups = _read_network(reader, keys, path)
    instance_type = _given(
        keys,
        "instance_type",
        None,
        lambda node: reader.string(
            node, f"{path}.instance_type", INSTANCE_TYPE, "an instance type such as S5.SMALL2"
        ),
    )
    port = _given(keys, "check", 0, lambda node: _read_check_port(reader, node, path))
    cap = _given(
        keys, "max_per_run", 1, lambda node: reader.integer(node, f"{path}.max_per_run", 1, 100)
    )
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
