"""Tencent's Tag API (service ``tag``, version ``2018-08-13``) over the emulated account.

``TagResources`` and ``UnTagResources`` change the tags of the fleet's CVM instances and
images, named by six-segment names ``qcs::cvm:<region>:uin/<uin>:instance/<id>`` (or
``:image/<id>``). Sources: tencentcloud-sdk-python ``tencentcloud/tag/v20180813/models.py``
(request and answer shapes: ``ResourceList`` and ``Tags`` take at most 10 entries each,
"N取值范围 0~9"; an existing key takes the new value; ``FailedResources`` lists the resources
that failed in an answer that is otherwise a success) and tencentcloud-sdk-go
``tencentcloud/tag/v20180813/client.go`` / ``errors.go`` (the codes each action answers).

Choices where the sources are silent, each the stricter one:

- A name that does not parse (six segments, service ``cvm``, ``uin/<digits>``,
  ``instance/`` or ``image/``) fails the whole request with
  ``InvalidParameterValue.ResourceDescriptionError``; another service is
  ``InvalidParameter.UnsupportedService``; a uin that is not the caller's account
  ``InvalidParameterValue.UinInvalid``; a region that is not in the fleet
  ``InvalidParameterValue.RegionInvalid``.
- A well-formed name of a resource that does not exist is listed in ``FailedResources``
  with ``InvalidParameterValue.ResourceIdInvalid`` ("资源Id错误"); the other resources of
  the request are still tagged.
- Removing a key a resource does not carry is no error (``ResourceNotFound.*`` is not in
  UnTagResources' list).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from cvmkeeper.emulator.errors import ApiError
from cvmkeeper.emulator.records import ImageRecord, InstanceRecord, RegionState

MAX_RESOURCES = 10
MAX_TAGS = 10
MAX_KEY_LENGTH = 127
MAX_VALUE_LENGTH = 255
#: keys the Tag service keeps for itself (errors.go: "qcloud、tencent和project 禁止创建")
RESERVED_KEY_PREFIXES = ("qcloud", "tencent", "project")
_NAME = re.compile(
    r"^qcs::(?P<service>[a-z0-9_-]+):(?P<region>[a-z0-9-]*):uin/(?P<uin>[0-9]+):"
    r"(?P<kind>[a-z]+)/(?P<id>[A-Za-z0-9_-]+)$"
)
#: letters (any script), digits, space and ``+ - = . _ : / @`` (Tencent's tag rules)
_TAG_TEXT = re.compile(r"^[\w +\-=.:/@]*$")
_KINDS = ("instance", "image")
NOT_FOUND = "InvalidParameterValue.ResourceIdInvalid"

Resource = ImageRecord | InstanceRecord


class TagActions:
    """The two handlers, bound to one core's regions and caller uin."""

    def __init__(
        self,
        regions: Callable[[], Mapping[str, RegionState]],
        uin: Callable[[], str],
        outcome: Callable[..., Any],
    ) -> None:
        """``outcome`` is the core's ``Outcome`` class (the core imports this module)."""
        self._regions = regions
        self._uin = uin
        self._outcome = outcome

    def handlers(self) -> dict[str, Callable[..., Any]]:
        """Action name -> handler ``(region, params, now, request_id) -> Outcome``."""
        return {"TagResources": self.tag_resources, "UnTagResources": self.untag_resources}

    def tag_resources(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Any:
        """Set every tag of ``Tags`` on every resource of ``ResourceList`` that exists."""
        tags = _tags(params.get("Tags"))
        return self._apply(params, lambda resource: resource.tags.update(tags))

    def untag_resources(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Any:
        """Remove the keys of ``TagKeys`` from every resource of ``ResourceList``."""
        keys = _keys(params.get("TagKeys"))

        def remove(resource: Resource) -> None:
            for key in keys:
                resource.tags.pop(key, None)

        return self._apply(params, remove)

    def _apply(self, params: Mapping[str, Any], change: Callable[[Resource], None]) -> Any:
        targets = [self._parse(name) for name in _resource_list(params.get("ResourceList"))]
        failed: list[dict[str, str]] = []
        changed: list[dict[str, str]] = []
        image_ids: list[str] = []
        instance_ids: list[str] = []
        for name, region_name, kind, resource_id in targets:
            region = self._regions()[region_name]
            resource: Resource | None = (
                region.instances.get(resource_id)
                if kind == "instance"
                else region.images.get(resource_id)
            )
            if resource is None:
                failed.append(
                    {
                        "Resource": name,
                        "Code": NOT_FOUND,
                        "Message": f"The {kind} `{resource_id}` does not exist in {region_name}.",
                    }
                )
                continue
            change(resource)
            changed.append({"Region": region_name, "Kind": kind, "Id": resource_id})
            (instance_ids if kind == "instance" else image_ids).append(resource_id)
        return self._outcome(
            {"FailedResources": failed},
            image_ids=image_ids,
            instance_ids=instance_ids,
            extra={"Resources": changed, "FailedResources": failed},
        )

    def _parse(self, name: str) -> tuple[str, str, str, str]:
        """(name, region, kind, id) of a six-segment name, or the whole request's error."""
        match = _NAME.match(name)
        if match is None or match["kind"] not in _KINDS:
            raise ApiError(
                "InvalidParameterValue.ResourceDescriptionError",
                f"`{name}` is not a six-segment name qcs::cvm:<region>:uin/<uin>:"
                "instance/<id> or image/<id>.",
            )
        if match["service"] != "cvm":
            raise ApiError(
                "InvalidParameter.UnsupportedService",
                f"The service `{match['service']}` is not supported.",
            )
        if match["uin"] != self._uin():
            raise ApiError(
                "InvalidParameterValue.UinInvalid",
                f"The uin `{match['uin']}` is not the caller's account.",
            )
        if match["region"] not in self._regions():
            raise ApiError(
                "InvalidParameterValue.RegionInvalid",
                f"The region `{match['region']}` is not valid.",
            )
        return name, match["region"], match["kind"], match["id"]


def _resource_list(raw: Any) -> list[str]:
    if raw is None or raw == []:
        raise ApiError("MissingParameter", "The parameter `ResourceList` is missing.")
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise ApiError("InvalidParameter", "The parameter `ResourceList` must be strings.")
    if len(raw) > MAX_RESOURCES:
        raise ApiError(
            "LimitExceeded.ResourceNumPerRequest",
            f"At most {MAX_RESOURCES} resources per request.",
        )
    return list(dict.fromkeys(raw))


def _tags(raw: Any) -> dict[str, str]:
    if raw is None or raw == []:
        raise ApiError("MissingParameter", "The parameter `Tags` is missing.")
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise ApiError("InvalidParameter.Tag", "The parameter `Tags` must be {TagKey, TagValue}.")
    if len(raw) > MAX_TAGS:
        raise ApiError("LimitExceeded.TagNumPerRequest", f"At most {MAX_TAGS} tags per request.")
    tags: dict[str, str] = {}
    for item in raw:
        key, value = item.get("TagKey"), item.get("TagValue")
        if set(item) - {"TagKey", "TagValue"} or not isinstance(value, str):
            raise ApiError("InvalidParameter.Tag", "Each tag is {TagKey, TagValue} strings.")
        _check_key(key)
        if key in tags:
            raise ApiError("InvalidParameterValue.TagKeyDuplicate", f"`{key}` is given twice.")
        if not value:
            raise ApiError("InvalidParameterValue.TagValueEmpty", f"The value of `{key}` is empty.")
        if len(value) > MAX_VALUE_LENGTH:
            raise ApiError(
                "InvalidParameterValue.TagValueLengthExceeded",
                f"The value of `{key}` is longer than {MAX_VALUE_LENGTH}.",
            )
        if not _TAG_TEXT.match(value):
            raise ApiError(
                "InvalidParameterValue.TagValueCharacterIllegal",
                f"The value of `{key}` has an illegal character.",
            )
        tags[str(key)] = value
    return tags


def _keys(raw: Any) -> list[str]:
    if raw is None or raw == []:
        raise ApiError("MissingParameter", "The parameter `TagKeys` is missing.")
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise ApiError("InvalidParameter.Tag", "The parameter `TagKeys` must be strings.")
    if len(raw) > MAX_TAGS:
        raise ApiError("LimitExceeded.TagNumPerRequest", f"At most {MAX_TAGS} tags per request.")
    for key in raw:
        _check_key(key)
    return list(dict.fromkeys(raw))


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise ApiError("InvalidParameter.Tag", "A tag key must be a string.")
    if not key:
        raise ApiError("InvalidParameterValue.TagKeyEmpty", "A tag key is empty.")
    if len(key) > MAX_KEY_LENGTH:
        raise ApiError(
            "InvalidParameterValue.TagKeyLengthExceeded",
            f"The tag key `{key[:20]}...` is longer than {MAX_KEY_LENGTH}.",
        )
    if not _TAG_TEXT.match(key):
        raise ApiError(
            "InvalidParameterValue.TagKeyCharacterIllegal", f"`{key}` has an illegal character."
        )
    if key.lower().startswith(RESERVED_KEY_PREFIXES):
        raise ApiError("InvalidParameter.ReservedTagKey", f"`{key}` is a reserved tag key.")
