"""The baseline: the backup script a user writes by hand with the Tencent Cloud SDK.

It is what issue 10 describes as the usual cron script, done carefully but plainly: for each
instance in turn, find its images (``DescribeImages`` with an ``image-name`` filter),
``CreateImage``, poll until the new image is ``NORMAL``, then delete every image beyond the
newest ``keep`` with one ``DeleteImages`` call each. No threads, no batching, no rate
limiter (sequential calls stay under the limits on their own). It uses the same names as
cvmkeeper so that both leave the fleet in the same state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.cvm.v20170312 import cvm_client, models

from cvmkeeper.core.naming import image_name, instance_fragment

#: How often the script looks at its new image (a hand-written loop would sleep longer).
POLL_SECONDS = 1.0
#: How long it waits for one image before giving up on that instance.
WAIT_LIMIT_SECONDS = 600.0


@dataclass
class NaiveResult:
    """What the script did: instances done, seconds, and errors the SDK raised."""

    instances: int
    seconds: float
    errors: list[str]


def _request(model: Any, params: dict[str, Any]) -> Any:
    request = model()
    request.from_json_string(json.dumps(params))
    return request


def backup_instance(
    client: cvm_client.CvmClient, instance_id: str, slot: datetime, keep: int
) -> None:
    """Back up one instance and keep its ``keep`` newest images."""
    fragment = instance_fragment(instance_id) or instance_id
    found = client.DescribeImages(
        _request(
            models.DescribeImagesRequest,
            {"Filters": [{"Name": "image-name", "Values": [fragment]}], "Limit": 100},
        )
    )
    existing = sorted(found.ImageSet or [], key=lambda image: image.CreatedTime)
    created = client.CreateImage(
        _request(
            models.CreateImageRequest,
            {
                "InstanceId": instance_id,
                "ImageName": image_name(instance_id, slot),
                "ImageDescription": "nightly backup",
            },
        )
    )
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        seen = client.DescribeImages(
            _request(models.DescribeImagesRequest, {"ImageIds": [created.ImageId]})
        )
        if seen.ImageSet and seen.ImageSet[0].ImageState == "NORMAL":
            break
    else:
        raise TimeoutError(f"{instance_id}: image {created.ImageId} not NORMAL in time")
    for old in existing[: max(0, len(existing) + 1 - keep)]:
        client.DeleteImages(
            _request(
                models.DeleteImagesRequest, {"ImageIds": [old.ImageId], "DeleteBindedSnap": True}
            )
        )


def run_naive(
    endpoint: str,
    secret_id: str,
    secret_key: str,
    *,
    instances: Sequence[tuple[str, str]],
    slot: datetime,
    keep: int,
) -> NaiveResult:
    """Back up ``instances`` ((region, instance id) pairs) one after another."""
    cred = credential.Credential(secret_id, secret_key)
    profile = ClientProfile(
        httpProfile=HttpProfile(protocol="http", endpoint=endpoint, reqTimeout=30)
    )
    clients: dict[str, cvm_client.CvmClient] = {}
    errors: list[str] = []
    start = time.monotonic()
    for region, instance_id in instances:
        client = clients.setdefault(region, cvm_client.CvmClient(cred, region, profile))
        try:
            backup_instance(client, instance_id, slot, keep)
        except (TencentCloudSDKException, TimeoutError) as error:
            errors.append(f"{region} {instance_id}: {error}")
    return NaiveResult(len(instances), time.monotonic() - start, errors)
