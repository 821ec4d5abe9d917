"""Region names checked against Tencent Cloud's known regions, with a "did you mean".

A typo in a region (``ap-guangzou``) passes the shape check of the config reader and only
shows when the daemon first calls the cloud there, at night. ``cvmkeeper validate`` checks
every region the config and the policies name against ``KNOWN_REGIONS`` and reports each
unknown one at its file, line and key, with the closest known name.

Kept out of the loader on purpose: Tencent Cloud opens regions from time to time, and a
stale list must never stop a running daemon from loading its config; it only makes the
offline ``validate`` ask the operator to look.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator
from pathlib import Path

import yaml

from cvmkeeper.config.errors import Problem
from cvmkeeper.config.loader import Setup
from cvmkeeper.config.paths import display_path

#: The public regions of Tencent Cloud, as the official Go SDK lists them
#: (github.com/TencentCloud/tencentcloud-sdk-go, tencentcloud/common/regions/regions.go,
#: commit c522e3f8), plus ap-beijing-fsi, the Beijing finance region of Tencent's
#: "Regions and Availability Zones" table (tencentcloud.com/document/product/239/4106).
KNOWN_REGIONS: tuple[str, ...] = (
    "ap-bangkok",
    "ap-beijing",
    "ap-beijing-fsi",
    "ap-chengdu",
    "ap-chongqing",
    "ap-guangzhou",
    "ap-guangzhou-open",
    "ap-hongkong",
    "ap-jakarta",
    "ap-mumbai",
    "ap-nanjing",
    "ap-seoul",
    "ap-shanghai",
    "ap-shanghai-fsi",
    "ap-shenzhen-fsi",
    "ap-singapore",
    "ap-tokyo",
    "eu-frankfurt",
    "eu-moscow",
    "na-ashburn",
    "na-siliconvalley",
    "na-toronto",
    "sa-saopaulo",
)


def closest_region(name: str) -> str | None:
    """The known region ``name`` most likely meant, if one is close enough."""
    close = difflib.get_close_matches(name.lower(), KNOWN_REGIONS, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_region_message(name: str) -> str:
    """The sentence for an unknown region: the suggestion first, then what to check."""
    guess = closest_region(name)
    hint = f"did you mean {guess}?" if guess else f"known: {', '.join(KNOWN_REGIONS)}"
    return (
        f"{name!r} is not a Tencent Cloud region cvmkeeper knows; {hint} (a region "
        "opened after this release still works in the daemon, which does not check names)"
    )


def _region_nodes(root: yaml.Node) -> Iterator[tuple[str, yaml.ScalarNode]]:
    """(key path, node) of every region a config or policy document names."""
    if not isinstance(root, yaml.MappingNode):
        return
    for key, value in root.value:
        if key.value == "regions" and isinstance(value, yaml.SequenceNode):
            for index, item in enumerate(value.value):
                if isinstance(item, yaml.ScalarNode):
                    yield f"regions[{index}]", item
        if key.value == "copies" and isinstance(value, yaml.SequenceNode):
            for index, item in enumerate(value.value):
                if not isinstance(item, yaml.MappingNode):
                    continue
                for item_key, item_value in item.value:
                    if item_key.value == "region" and isinstance(item_value, yaml.ScalarNode):
                        yield f"copies[{index}].region", item_value


def file_region_problems(path: Path, confirmed: Collection[str] = ()) -> list[Problem]:
    """A problem for every unknown region in the YAML file ``path`` (none if unreadable:
    the loader has reported that already); ``confirmed`` regions are not problems."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    if root is None:
        return []
    return [
        Problem(
            display_path(path),
            node.start_mark.line + 1,
            node.start_mark.column + 1,
            key,
            unknown_region_message(node.value),
        )
        for key, node in _region_nodes(root)
        if node.value not in KNOWN_REGIONS and node.value not in confirmed
    ]


def unknown_regions(setup: Setup) -> list[str]:
    """The regions ``setup`` names that are not in ``KNOWN_REGIONS``, in order."""
    names = [*setup.config.regions]
    for policy in setup.policies:
        names += [*policy.regions, *(rule.region for rule in policy.copies)]
    return [name for name in dict.fromkeys(names) if name not in KNOWN_REGIONS]


def region_problems(setup: Setup, confirmed: Collection[str] = ()) -> list[Problem]:
    """Every unknown region in the daemon config and in every policy file of ``setup``,
    except those ``confirmed`` (``validate --online``: the cloud answered for them)."""
    files = [setup.config.source, *(Path(p.source) for p in setup.policies if p.source)]
    problems: list[Problem] = []
    for path in dict.fromkeys(files):
        problems.extend(file_region_problems(path, confirmed))
    return problems
