"""Helpers for the emulator tests: fleets, and real SDK clients pointed at an emulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.cvm.v20170312 import cvm_client, models

from cvmkeeper.emulator.server import RunningEmulator

GZ = "ap-guangzhou"
SH = "ap-shanghai"


def base_fleet(**overrides: Any) -> dict[str, Any]:
    """A two-region fleet with fast lifecycles; keys in ``overrides`` replace top-level keys."""
    fleet: dict[str, Any] = {
        "credentials": {"secret_id": "AKIDTEST", "secret_key": "test-secret-key"},
        "seed": 1,
        "rate_limits": {"CreateImage": 0},  # 0 switches a limit off; error tests call fast
        "timing": {
            "create_seconds": 0.2,
            "stop_seconds": 0.1,
            "start_seconds": 0.1,
            "sync_seconds": 0.2,
        },
        "regions": {
            GZ: {
                "quota": 10,
                "instances": [
                    {
                        "id": "ins-6pb6lrmy",
                        "name": "web-1",
                        "zone": "ap-guangzhou-3",
                        "tags": {"backup": "daily"},
                    },
                    {
                        "id": "ins-2kd9x0qa",
                        "name": "web-2",
                        "zone": "ap-guangzhou-4",
                        "tags": {"backup": "hourly"},
                        "data_disk_ids": ["disk-data0001"],
                    },
                    {"id": "ins-unsupp01", "name": "odd-1", "not_supported": True},
                    {"id": "ins-stopped1", "name": "batch-1", "state": "STOPPED"},
                ],
                "images": [
                    {"id": "img-golden01", "name": "golden-base"},
                    {"id": "img-shared01", "name": "shared-base", "shared": True},
                    {"id": "img-public01", "name": "TencentOS 3.1", "type": "PUBLIC_IMAGE"},
                ],
            },
            SH: {"quota": 5, "instances": [{"id": "ins-5tr8w2ne", "name": "api-1"}]},
        },
    }
    fleet.update(overrides)
    return fleet


def sdk_client(
    emu: RunningEmulator,
    region: str | None = GZ,
    *,
    secret_id: str | None = None,
    secret_key: str | None = None,
    token: str | None = None,
) -> cvm_client.CvmClient:
    """A real CvmClient talking HTTP to ``emu`` (the profile is given at construction)."""
    cred = credential.Credential(secret_id or emu.secret_id, secret_key or emu.secret_key, token)
    profile = ClientProfile(
        httpProfile=HttpProfile(protocol="http", endpoint=emu.endpoint, reqTimeout=10)
    )
    return cvm_client.CvmClient(cred, region, profile)


def request(model: type[Any], **fields: Any) -> Any:
    """Build an SDK request model from keyword fields."""
    req = model()
    req._deserialize(fields)
    return req


def error_code(call: Callable[[], Any]) -> str:
    """Run an SDK call that must fail; return its error code."""
    with pytest.raises(TencentCloudSDKException) as info:
        call()
    return str(info.value.get_code())


def create(client: cvm_client.CvmClient, instance_id: str, name: str, **extra: Any) -> str:
    """CreateImage through the SDK; return the ImageId."""
    response = client.CreateImage(
        request(models.CreateImageRequest, InstanceId=instance_id, ImageName=name, **extra)
    )
    return str(response.ImageId)
