"""Request-parameter checks shared by every action, with the API's error codes.

Each action declares the parameters it accepts (as the SDK's request models do); anything
else is ``UnknownParameter``. Type and range problems are ``InvalidParameter`` /
``InvalidParameterValue``, missing required ones ``MissingParameter``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cvmkeeper.emulator.errors import ApiError

#: Accepted request parameters per action (from the SDK's ``*Request`` models).
ACCEPTED_PARAMS: Mapping[str, frozenset[str]] = {
    "CreateImage": frozenset(
        {
            "ImageName",
            "InstanceId",
            "ImageDescription",
            "ForcePoweroff",
            "Sysprep",
            "DataDiskIds",
            "SnapshotIds",
            "DryRun",
            "TagSpecification",
            "ImageFamily",
        }
    ),
    "DescribeImages": frozenset({"ImageIds", "Filters", "Offset", "Limit", "InstanceType"}),
    "DeleteImages": frozenset({"ImageIds", "DeleteBindedSnap", "DryRun"}),
    "GetCallerIdentity": frozenset(),  # STS (service sts, version 2018-08-13)
    "DescribeImageQuota": frozenset(),
    # Tencent's Tag API (service tag, version 2018-08-13; emulator/tagging.py)
    "TagResources": frozenset({"ResourceList", "Tags"}),
    "UnTagResources": frozenset({"ResourceList", "TagKeys"}),
    "SyncImages": frozenset(
        {
            "ImageIds",
            "DestinationRegions",
            "DryRun",
            "ImageName",
            "ImageSetRequired",
            "Encrypt",
            "KmsKeyId",
        }
    ),
    "DescribeInstances": frozenset({"InstanceIds", "Filters", "Offset", "Limit"}),
    "DescribeInstancesStatus": frozenset({"InstanceIds", "Offset", "Limit"}),
    "StopInstances": frozenset({"InstanceIds", "ForceStop", "StopType", "StoppedMode"}),
    "StartInstances": frozenset({"InstanceIds"}),
    # restore and drills (issue #16; emulator/launch.py): RunInstancesRequest,
    # TerminateInstancesRequest and ResetInstanceRequest of the SDK's models.py
    "RunInstances": frozenset(
        {
            "InstanceChargeType",
            "InstanceChargePrepaid",
            "Placement",
            "InstanceType",
            "ImageId",
            "SystemDisk",
            "DataDisks",
            "VirtualPrivateCloud",
            "InternetAccessible",
            "InstanceCount",
            "MinCount",
            "InstanceName",
            "LoginSettings",
            "SecurityGroupIds",
            "EnhancedService",
            "ClientToken",
            "HostName",
            "ActionTimer",
            "DisasterRecoverGroupIds",
            "TagSpecification",
            "InstanceMarketOptions",
            "UserData",
            "Metadata",
            "DryRun",
            "CpuTopology",
            "CamRoleName",
            "HpcClusterId",
            "LaunchTemplate",
            "DedicatedClusterId",
            "ChcIds",
            "DisableApiTermination",
            "EnableJumboFrame",
        }
    ),
    "TerminateInstances": frozenset({"InstanceIds", "ReleaseAddress", "ReleasePrepaidDataDisks"}),
    "ResetInstance": frozenset(
        {
            "InstanceId",
            "ImageId",
            "SystemDisk",
            "LoginSettings",
            "EnhancedService",
            "HostName",
            "UserData",
        }
    ),
}

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


def check_known(action: str, params: Mapping[str, Any]) -> None:
    """Reject parameters the action does not take (``UnknownParameter``)."""
    accepted = ACCEPTED_PARAMS[action]
    for key in params:
        if key not in accepted:
            raise ApiError(
                "UnknownParameter", f"The parameter `{key}` is not recognized by {action}."
            )


def required(params: Mapping[str, Any], key: str) -> Any:
    """Return a required parameter or raise ``MissingParameter``."""
    value = params.get(key)
    if value is None:
        raise ApiError("MissingParameter", f"The request is missing a required parameter `{key}`.")
    return value


def string(params: Mapping[str, Any], key: str, *, need: bool = False, default: str = "") -> str:
    """Return a string parameter (``InvalidParameter`` when it has another type)."""
    value = required(params, key) if need else params.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ApiError("InvalidParameter", f"The parameter `{key}` must be a string.")
    return value


def string_list(
    params: Mapping[str, Any], key: str, *, need: bool = False, max_items: int = MAX_LIMIT
) -> list[str]:
    """Return a list-of-strings parameter, bounded by ``max_items``."""
    value = required(params, key) if need else params.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ApiError("InvalidParameter", f"The parameter `{key}` must be a list of strings.")
    if need and not value:
        raise ApiError("MissingParameter", f"The parameter `{key}` must not be empty.")
    if len(value) > max_items:
        raise ApiError(
            "InvalidParameterValue.LimitExceeded",
            f"The parameter `{key}` takes at most {max_items} values.",
        )
    return value


def boolean(params: Mapping[str, Any], key: str, default: bool = False) -> bool:
    """Return a boolean parameter."""
    value = params.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError("InvalidParameter", f"The parameter `{key}` must be a boolean.")
    return value


def integer(params: Mapping[str, Any], key: str, default: int) -> int:
    """Return a non-negative integer parameter."""
    value = params.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError("InvalidParameter", f"The parameter `{key}` must be an integer.")
    if value < 0:
        raise ApiError("InvalidParameterValue", f"The parameter `{key}` must not be negative.")
    return value


def paging(params: Mapping[str, Any]) -> tuple[int, int]:
    """Return (offset, limit): Limit defaults to 20 and is at most 100."""
    offset = integer(params, "Offset", 0)
    limit = integer(params, "Limit", DEFAULT_LIMIT)
    if limit > MAX_LIMIT:
        raise ApiError(
            "InvalidParameterValue.LimitExceeded",
            f"The parameter `Limit` must be at most {MAX_LIMIT}, got {limit}.",
        )
    return offset, limit


def filters(params: Mapping[str, Any], allowed: frozenset[str]) -> list[tuple[str, list[str]]]:
    """Return ``Filters`` as (name, values) pairs; unknown names are ``InvalidFilter``.

    A name ``tag:<key>`` is accepted whenever ``"tag:"`` is in ``allowed``.
    """
    raw = params.get("Filters")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ApiError("InvalidParameter", "The parameter `Filters` must be a list.")
    if len(raw) > 10:
        raise ApiError("InvalidParameterValue.LimitExceeded", "At most 10 Filters are allowed.")
    out: list[tuple[str, list[str]]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise ApiError("InvalidParameter", "Each filter must be an object.")
        name = item.get("Name")
        values = item.get("Values")
        if (
            not isinstance(name, str)
            or not isinstance(values, list)
            or not all(isinstance(v, str) for v in values)
        ):
            raise ApiError("InvalidParameter", "A filter needs `Name` and a list of `Values`.")
        if len(values) > 5:
            raise ApiError(
                "InvalidParameterValue.LimitExceeded", f"Filter `{name}` takes at most 5 values."
            )
        if name not in allowed and not (name.startswith("tag:") and "tag:" in allowed):
            raise ApiError("InvalidFilter", f"The filter `{name}` is not supported.")
        out.append((name, values))
    return out


def tags_match(tags: Mapping[str, str], name: str, values: list[str]) -> bool | None:
    """Evaluate a tag filter (``tag-key``, ``tag-value``, ``tag:<key>``); None if not one."""
    if name == "tag-key":
        return any(key in values for key in tags)
    if name == "tag-value":
        return any(value in values for value in tags.values())
    if name.startswith("tag:"):
        key = name[len("tag:") :]
        return key in tags and tags[key] in values
    return None


def tag_specification(raw: Any, resource_type: str, *, action: str | None) -> dict[str, str]:
    """The tags ``TagSpecification`` gives a new resource of ``resource_type``.

    Every entry needs ``ResourceType`` and a list of ``Tags`` of string ``Key`` (not empty)
    and ``Value``. An entry of another type is refused naming ``action`` (CreateImage tags
    only its image) or, with ``action=None``, checked and ignored (RunInstances may tag its
    disks too).
    """
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise ApiError("InvalidParameter", "The parameter `TagSpecification` must be a list.")
    tags: dict[str, str] = {}
    for spec in raw:
        if not isinstance(spec, dict) or not isinstance(spec.get("Tags"), list):
            raise ApiError(
                "InvalidParameter", "Each TagSpecification needs `ResourceType` and `Tags`."
            )
        ours = spec.get("ResourceType") == resource_type
        if not ours and action is not None:
            raise ApiError(
                "InvalidParameterValue",
                f"TagSpecification.ResourceType must be `{resource_type}` for {action}.",
            )
        for tag in spec["Tags"]:
            if (
                not isinstance(tag, dict)
                or not isinstance(tag.get("Key"), str)
                or not tag["Key"]
                or not isinstance(tag.get("Value", ""), str)
            ):
                raise ApiError("InvalidParameter", "Each tag needs a string `Key` and `Value`.")
            if ours:
                tags[tag["Key"]] = tag.get("Value", "")
    return tags
