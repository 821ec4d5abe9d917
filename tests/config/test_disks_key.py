"""The policy key ``disks`` (rule 10): its shapes, its default, and errors with file:line:key."""

from __future__ import annotations

import textwrap

import pytest

from cvmkeeper.config import ConfigError, parse_policy_text
from cvmkeeper.core.disks import DiskMode, DiskSelection

BASE = """\
name: db
regions: [ap-guangzhou]
targets: {instance_ids: [ins-6pb6lrmy]}
schedules: [{every: 1h}]
retention: {keep_last: 3}
"""


def load(disks: str | None) -> DiskSelection:
    text = BASE if disks is None else BASE + f"disks: {disks}\n"
    return parse_policy_text(text, "policies/db.yaml").disks


def problems(disks: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_policy_text(BASE + textwrap.dedent(disks), "policies/db.yaml")
    return [str(p) for p in info.value.problems]


def test_the_default_is_the_whole_machine() -> None:
    assert load(None) == DiskSelection(DiskMode.ALL)
    assert load("all") == DiskSelection(DiskMode.ALL)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("system", DiskSelection(DiskMode.SYSTEM)),
        ("{include: [disk-1a2b3c4d]}", DiskSelection(DiskMode.INCLUDE, ("disk-1a2b3c4d",))),
        (
            "{exclude: [disk-1a2b3c4d, disk-5e6f7a8b]}",
            DiskSelection(DiskMode.EXCLUDE, ("disk-1a2b3c4d", "disk-5e6f7a8b")),
        ),
        ("{exclude: []}", DiskSelection(DiskMode.EXCLUDE)),
    ],
)
def test_each_shape(text: str, expected: DiskSelection) -> None:
    assert load(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "disks: every\n",
            "policies/db.yaml:6:8: disks: 'every' is not one of all, system, {include: [disk-...]} "
            "or {exclude: [disk-...]}",
        ),
        (
            "disks: {include: [vol-1]}\n",
            "policies/db.yaml:6:19: disks.include[0]: 'vol-1' is not a CBS disk id such as "
            "disk-1a2b3c4d",
        ),
        (
            "disks: {include: []}\n",
            "policies/db.yaml:6:18: disks.include: is empty: use `disks: system` for the system "
            "disk only",
        ),
        (
            "disks:\n  include: [disk-a]\n  exclude: [disk-b]\n",
            "policies/db.yaml:7:3: disks: give exactly one of include or exclude (all, system, "
            "{include: [disk-...]} or {exclude: [disk-...]})",
        ),
        (
            "disks: {only: [disk-a]}\n",
            "policies/db.yaml:6:9: disks.only: unknown key; allowed keys: exclude, include",
        ),
        (
            "disks: {include: [disk-a, disk-a]}\n",
            "policies/db.yaml:6:27: disks.include[1]: 'disk-a' is listed twice",
        ),
    ],
)
def test_mistakes_name_file_line_column_and_key(text: str, message: str) -> None:
    assert problems(text) == [message]
