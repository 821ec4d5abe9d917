"""Tencent's Tag API (service ``tag``, version ``2018-08-13``): tags on CVM resources.

CVM has no action that changes an existing instance's or image's tags; the Tag service
does (``TagResources`` / ``UnTagResources``). Like STS (``cloud.identity``) it is another
service than CVM, so it has its own small transport here, over
:class:`~cvmkeeper.cloud.common_clients.CommonServiceClients` (the SDK's ``CommonClient``
signs for the service it is given; a custom endpoint serves every service).
:class:`~cvmkeeper.cloud.client.CloudClient` sends the tag actions through its one
``call`` (rate limits, retries, the error table), only over this transport.

Request shapes, from tencentcloud-sdk-python ``tencentcloud/tag/v20180813/models.py``
(``TagResourcesRequest``, ``UnTagResourcesRequest``, ``FailedResource``):

- ``ResourceList``: six-segment resource names,
  ``qcs::cvm:<region>:uin/<account uin>:instance/<id>`` (or ``:image/<id>``); at most 10
  per call ("N取值范围 0~9"; ``LimitExceeded.ResourceNumPerRequest``).
- ``TagResources`` takes ``Tags`` ([{TagKey, TagValue}], at most 10; an existing key gets
  the new value), ``UnTagResources`` takes ``TagKeys``.
- The answer of both may carry ``FailedResources`` ([{Resource, Code, Message}]): a call
  that "succeeds" with some resources failed. :func:`raise_failed` turns that into the
  classified error of its code, so a partial failure is never taken for success.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cvmkeeper.cloud.common_clients import CommonServiceClients
from cvmkeeper.cloud.credentials import CredentialProvider
from cvmkeeper.cloud.errors import classify
from cvmkeeper.cloud.transport import EndpointConfig

SERVICE = "tag"
VERSION = "2018-08-13"
TAG_ENDPOINT = "tag.tencentcloudapi.com"
TAG_RESOURCES = "TagResources"
UNTAG_RESOURCES = "UnTagResources"
#: the Tag API actions cvmkeeper calls (sent over :class:`SdkTagTransport`)
TAG_ACTIONS = frozenset({TAG_RESOURCES, UNTAG_RESOURCES})
#: resources (and tags) per call: ResourceList.N / Tags.N range over 0~9 in models.py
MAX_RESOURCES_PER_CALL = 10
MAX_TAGS_PER_CALL = 10
#: the CVM resource kinds cvmkeeper tags (the six-segment name's resource prefix)
RESOURCE_KINDS = frozenset({"instance", "image"})


def resource_name(region: str, account_uin: str, kind: str, resource_id: str) -> str:
    """The six-segment name of a CVM resource: ``qcs::cvm:<region>:uin/<uin>:<kind>/<id>``."""
    if kind not in RESOURCE_KINDS:
        raise ValueError(f"resource kind must be one of {sorted(RESOURCE_KINDS)}, not {kind!r}")
    if not (region and account_uin and resource_id):
        raise ValueError("a six-segment name needs a region, an account uin and an id")
    return f"qcs::cvm:{region}:uin/{account_uin}:{kind}/{resource_id}"


def raise_failed(action: str, region: str, body: Mapping[str, Any]) -> None:
    """Raise the classified error of the first entry of ``FailedResources`` (all of them
    named in the message); return when the answer lists none."""
    failed = [f for f in body.get("FailedResources") or () if isinstance(f, Mapping)]
    if not failed:
        return
    described = "; ".join(
        f"{f.get('Resource')}: {f.get('Code')}: {f.get('Message') or ''}".strip() for f in failed
    )
    raise classify(
        str(failed[0].get("Code") or "FailedOperation"),
        f"{len(failed)} resource(s) failed: {described}",
        action=action,
        region=region,
        request_id=str(body.get("RequestId") or "") or None,
    )


def tag_params(resources: Sequence[str], tags: Mapping[str, str]) -> dict[str, Any]:
    """The ``TagResources`` request for ``resources`` (at most 10) and ``tags``."""
    return {
        "ResourceList": list(resources),
        "Tags": [{"TagKey": key, "TagValue": value} for key, value in tags.items()],
    }


def untag_params(resources: Sequence[str], keys: Sequence[str]) -> dict[str, Any]:
    """The ``UnTagResources`` request for ``resources`` (at most 10) and tag ``keys``."""
    return {"ResourceList": list(resources), "TagKeys": list(keys)}


class SdkTagTransport:
    """The Tag API through the SDK's ``CommonClient`` (service ``tag``): a ``Transport``."""

    def __init__(self, credentials: CredentialProvider, endpoint: EndpointConfig) -> None:
        self._clients = CommonServiceClients(SERVICE, VERSION, TAG_ENDPOINT, credentials, endpoint)

    def __repr__(self) -> str:
        endpoint = self._clients.endpoint
        return f"SdkTagTransport({endpoint.scheme}://{endpoint.host})"

    def call(self, region: str, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Send a Tag API ``action``; failures are classified ``CloudError``s."""
        return self._clients.call(region, action, params)
