"""The emulator serves Tencent's Tag API (service ``tag``, 2018-08-13) to the official SDK.

The SDK's ``CommonClient`` signs for the service it is given; the emulator routes
``TagResources`` / ``UnTagResources`` by ``X-TC-Action`` to the Tag service and checks the
signature and version for it, as it does for STS.
"""

from __future__ import annotations

from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from cvmkeeper.emulator.fleet import DEFAULT_UIN
from cvmkeeper.emulator.server import RunningEmulator
from emulator.sdk import GZ, SH

INSTANCE = f"qcs::cvm:{GZ}:uin/{DEFAULT_UIN}:instance/ins-6pb6lrmy"


def common_client(emu: RunningEmulator, service: str = "tag", version: str = "2018-08-13") -> Any:
    cred = credential.Credential(emu.secret_id, emu.secret_key)
    profile = ClientProfile(
        httpProfile=HttpProfile(protocol="http", endpoint=emu.endpoint, reqTimeout=10)
    )
    return CommonClient(service, version, cred, GZ, profile)


def error_code(call: Any) -> str:
    with pytest.raises(TencentCloudSDKException) as caught:
        call()
    return str(caught.value.code)


def tags_of(emu: RunningEmulator, region: str, kind: str, resource_id: str) -> dict[str, str]:
    items = emu.core.state()["regions"][region][kind]
    key = "InstanceId" if kind == "instances" else "ImageId"
    [item] = [i for i in items if i[key] == resource_id]
    return {t["Key"]: t["Value"] for t in item["Tags"]}


def test_tag_and_untag_over_the_sdk(emu: RunningEmulator) -> None:
    client = common_client(emu)
    image = f"qcs::cvm:{SH}:uin/{DEFAULT_UIN}:instance/ins-5tr8w2ne"  # another region's
    answer = client.call_json(
        "TagResources",
        {"ResourceList": [INSTANCE, image], "Tags": [{"TagKey": "a:b", "TagValue": "x/1@2"}]},
    )
    assert answer["Response"]["FailedResources"] == []
    assert tags_of(emu, GZ, "instances", "ins-6pb6lrmy") == {"backup": "daily", "a:b": "x/1@2"}
    assert tags_of(emu, SH, "instances", "ins-5tr8w2ne") == {"a:b": "x/1@2"}
    client.call_json("UnTagResources", {"ResourceList": [INSTANCE], "TagKeys": ["a:b", "none"]})
    assert tags_of(emu, GZ, "instances", "ins-6pb6lrmy") == {"backup": "daily"}
    golden = f"qcs::cvm:{GZ}:uin/{DEFAULT_UIN}:image/img-golden01"
    client.call_json(
        "TagResources", {"ResourceList": [golden], "Tags": [{"TagKey": "k", "TagValue": "v"}]}
    )
    assert tags_of(emu, GZ, "images", "img-golden01") == {"k": "v"}
    state = emu.core.state()
    assert state["calls"]["TagResources"] == 2
    entry = next(e for e in state["history"] if e["action"] == "UnTagResources")
    assert entry["Resources"] == [{"Region": GZ, "Kind": "instance", "Id": "ins-6pb6lrmy"}]


def test_a_missing_resource_is_a_failed_resource(emu: RunningEmulator) -> None:
    gone = f"qcs::cvm:{GZ}:uin/{DEFAULT_UIN}:image/img-nothere1"
    answer = common_client(emu).call_json(
        "TagResources",
        {"ResourceList": [gone, INSTANCE], "Tags": [{"TagKey": "k", "TagValue": "v"}]},
    )
    [failed] = answer["Response"]["FailedResources"]
    assert (failed["Resource"], failed["Code"]) == (gone, "InvalidParameterValue.ResourceIdInvalid")
    assert tags_of(emu, GZ, "instances", "ins-6pb6lrmy")["k"] == "v"


@pytest.mark.parametrize(
    ("resource", "code"),
    [
        ("qcs::cvm:ap-guangzhou:uin/999:instance/ins-6pb6lrmy", "InvalidParameterValue.UinInvalid"),
        (
            "qcs::cvm:ap-guangzhou:instance/ins-6pb6lrmy",
            "InvalidParameterValue.ResourceDescriptionError",
        ),
        (
            f"qcs::cvm:{GZ}:uin/{DEFAULT_UIN}:disk/disk-1",
            "InvalidParameterValue.ResourceDescriptionError",
        ),
        (f"qcs::cbs:{GZ}:uin/{DEFAULT_UIN}:instance/x", "InvalidParameter.UnsupportedService"),
        (
            f"qcs::cvm:eu-nowhere:uin/{DEFAULT_UIN}:instance/x",
            "InvalidParameterValue.RegionInvalid",
        ),
    ],
)
def test_bad_six_segment_names_fail_the_request(
    emu: RunningEmulator, resource: str, code: str
) -> None:
    client = common_client(emu)
    params = {"ResourceList": [INSTANCE, resource], "Tags": [{"TagKey": "k", "TagValue": "v"}]}
    assert error_code(lambda: client.call_json("TagResources", params)) == code
    assert "k" not in tags_of(emu, GZ, "instances", "ins-6pb6lrmy")  # nothing was changed
    [entry] = [e for e in emu.core.state()["history"] if e["action"] == "TagResources"]
    assert entry["result"] == code


def test_signed_for_another_service_or_version_is_refused(emu: RunningEmulator) -> None:
    params = {"ResourceList": [INSTANCE], "Tags": [{"TagKey": "k", "TagValue": "v"}]}
    cvm_signed = common_client(emu, service="cvm", version="2018-08-13")
    assert error_code(lambda: cvm_signed.call_json("TagResources", params)) == (
        "AuthFailure.SignatureFailure"
    )
    old_version = common_client(emu, version="2017-03-12")
    assert error_code(lambda: old_version.call_json("TagResources", params)) == "NoSuchVersion"
    assert "k" not in tags_of(emu, GZ, "instances", "ins-6pb6lrmy")


@pytest.mark.parametrize(
    ("tags", "code"),
    [
        ([{"TagKey": "project", "TagValue": "v"}], "InvalidParameter.ReservedTagKey"),
        ([{"TagKey": "", "TagValue": "v"}], "InvalidParameterValue.TagKeyEmpty"),
        ([{"TagKey": "k", "TagValue": "v"}] * 2, "InvalidParameterValue.TagKeyDuplicate"),
        ([{"TagKey": "k#", "TagValue": "v"}], "InvalidParameterValue.TagKeyCharacterIllegal"),
        ([{"TagKey": "k", "TagValue": "a" * 256}], "InvalidParameterValue.TagValueLengthExceeded"),
        (
            [{"TagKey": f"k{n}", "TagValue": "v"} for n in range(11)],
            "LimitExceeded.TagNumPerRequest",
        ),
    ],
)
def test_bad_tags_are_refused(emu: RunningEmulator, tags: list[Any], code: str) -> None:
    client = common_client(emu)
    params = {"ResourceList": [INSTANCE], "Tags": tags}
    assert error_code(lambda: client.call_json("TagResources", params)) == code


def test_at_most_ten_resources(emu: RunningEmulator) -> None:
    params = {"ResourceList": [f"{INSTANCE[:-8]}ins-{n:08d}" for n in range(11)], "TagKeys": ["k"]}
    code = error_code(lambda: common_client(emu).call_json("UnTagResources", params))
    assert code == "LimitExceeded.ResourceNumPerRequest"
