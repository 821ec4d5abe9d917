"""The policy key ``disks``: which disks a policy's images hold (docs/design.md rule 10).

Its shapes::

    disks: all                       # default: system disk + every CBS data disk at the slot
    disks: system                    # the system disk only
    disks: {include: [disk-1a2b3c4d]}  # the system disk + these data disks
    disks: {exclude: [disk-1a2b3c4d]}  # every CBS data disk at the slot but these

Every mistake is a problem naming the file, the line and the key, like the rest of
``config``.
"""

from __future__ import annotations

import re

import yaml

from cvmkeeper.config.reader import Node, Reader
from cvmkeeper.core.disks import DiskMode, DiskSelection

DISK_ID = re.compile(r"disk-[a-z0-9]+")
DISK_ID_HELP = "a CBS disk id such as disk-1a2b3c4d"
SHAPES = "all, system, {include: [disk-...]} or {exclude: [disk-...]}"


def read_disks(reader: Reader, node: Node, path: str = "disks") -> DiskSelection | None:
    """Read ``disks``; ``None`` after recording a problem."""
    if isinstance(node, yaml.ScalarNode):
        value = reader.string(node, path)
        if value is None:
            return None
        if value not in (DiskMode.ALL.value, DiskMode.SYSTEM.value):
            reader.problem(node, path, f"{value!r} is not one of {SHAPES}")
            return None
        return DiskSelection(DiskMode(value))
    keys = reader.mapping(node, path, (DiskMode.INCLUDE.value, DiskMode.EXCLUDE.value))
    if keys is None:
        return None
    if len(keys) != 1:
        if not reader.problems or reader.problems[-1].path.split(".")[0] != path:
            reader.problem(node, path, f"give exactly one of include or exclude ({SHAPES})")
        return None
    ((mode, list_node),) = keys.items()
    ids = reader.string_list(list_node, f"{path}.{mode}", DISK_ID, DISK_ID_HELP)
    if ids is None:
        return None
    if mode == DiskMode.INCLUDE.value and not ids:
        reader.problem(
            list_node, f"{path}.{mode}", "is empty: use `disks: system` for the system disk only"
        )
        return None
    return DiskSelection(DiskMode(mode), ids)
