"""The wire protocol: signatures, regions, envelopes, faults, races and control endpoints."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
import requests
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.cvm.v20170312 import models

from cvmkeeper.emulator.clock import ManualClock, SystemClock
from cvmkeeper.emulator.server import RunningEmulator
from emulator.sdk import GZ, base_fleet, create, error_code, request, sdk_client


def quota_call(client: Any) -> Any:
    return client.DescribeImageQuota(models.DescribeImageQuotaRequest())


def test_wrong_secret_key_is_rejected(emu: RunningEmulator) -> None:
    client = sdk_client(emu, secret_key="not-the-key")
    assert error_code(lambda: quota_call(client)) == "AuthFailure.SignatureFailure"
    assert emu.core.state()["errors"]["AuthFailure.SignatureFailure"] == 1


def test_unknown_secret_id_is_rejected(emu: RunningEmulator) -> None:
    client = sdk_client(emu, secret_id="AKIDSOMEONEELSE")
    assert error_code(lambda: quota_call(client)) == "AuthFailure.SecretIdNotFound"


def test_signature_older_than_five_minutes_expires(serve: Any) -> None:
    ahead = ManualClock(SystemClock().now() + timedelta(minutes=6))
    emu = serve(base_fleet(), signature_clock=ahead)
    assert error_code(lambda: quota_call(sdk_client(emu))) == "AuthFailure.SignatureExpire"
    ahead.set(SystemClock().now() + timedelta(minutes=4))
    assert quota_call(sdk_client(emu)).ImageNumQuota == 10


def test_token_is_checked_only_when_configured(serve: Any) -> None:
    plain = serve(base_fleet())
    assert quota_call(sdk_client(plain, token="any-session-token")).ImageNumQuota == 10
    fleet = base_fleet(
        credentials={"secret_id": "AKIDTMP", "secret_key": "tmp-key", "token": "session-1"}
    )
    with_token = serve(fleet)
    assert quota_call(sdk_client(with_token, token="session-1")).ImageNumQuota == 10
    assert (
        error_code(lambda: quota_call(sdk_client(with_token, token="session-2")))
        == "AuthFailure.TokenFailure"
    )


def test_region_is_required_and_must_exist(emu: RunningEmulator) -> None:
    assert error_code(lambda: quota_call(sdk_client(emu, region=None))) == "MissingParameter"
    assert (
        error_code(lambda: quota_call(sdk_client(emu, region="eu-frankfurt")))
        == "UnsupportedRegion"
    )
    assert (
        error_code(lambda: quota_call(sdk_client(emu, region="Mars Base!")))
        == "InvalidRegion.NotFound"
    )


def test_unknown_action_and_parameter(emu: RunningEmulator) -> None:
    client = sdk_client(emu)
    with_error = client.call_json  # the SDK's generic entry point signs any action
    assert error_code(lambda: with_error("RebootInstances", {})) == "InvalidAction"
    assert error_code(lambda: with_error("DescribeImages", {"Colour": "red"})) == "UnknownParameter"
    assert error_code(lambda: with_error("DeleteImages", {})) == "MissingParameter"


def test_every_answer_is_http_200_json_with_request_id(emu: RunningEmulator) -> None:
    ok = requests.post(
        emu.url + "/",
        data=b"{}",
        timeout=5,
        headers={"Content-Type": "application/json", "X-TC-Action": "X"},
    )
    assert ok.status_code == 200
    assert ok.headers["Content-Type"] == "application/json"
    body = ok.json()["Response"]
    assert body["Error"]["Code"] == "AuthFailure.InvalidAuthorization"
    assert body["RequestId"]
    good = sdk_client(emu).call_json("DescribeImageQuota", {})
    assert good["Response"]["RequestId"]


def test_injected_faults_and_reset(emu: RunningEmulator) -> None:
    client = sdk_client(emu)
    emu.core.set_faults({"CreateImage": {"InternalError": 1.0}})
    assert error_code(lambda: create(client, "ins-6pb6lrmy", "boom")) == "InternalError"
    emu.core.set_faults({"CreateImage": {"RequestLimitExceeded": 1.0}})
    assert error_code(lambda: create(client, "ins-6pb6lrmy", "boom")) == "RequestLimitExceeded"
    emu.core.set_faults({"CreateImage": {"reset": 1.0}})
    assert error_code(lambda: create(client, "ins-6pb6lrmy", "boom")) == "ClientNetworkError"
    emu.core.set_faults({})
    state = emu.core.state()
    assert not [i for i in state["regions"][GZ]["images"] if i["ImageName"] == "boom"]
    assert [h["result"] for h in state["history"]] == [
        "InternalError",
        "RequestLimitExceeded",
        "reset",
    ]


def test_lost_response_create_exists_afterwards(emu: RunningEmulator) -> None:
    client = sdk_client(emu)
    emu.core.set_faults({"CreateImage": {"lost_response": 1.0}})
    assert error_code(lambda: create(client, "ins-6pb6lrmy", "slot-0300")) == "ClientNetworkError"
    emu.core.set_faults({})
    found = client.DescribeImages(
        request(
            models.DescribeImagesRequest, Filters=[{"Name": "image-name", "Values": ["slot-0300"]}]
        )
    )
    assert [i.ImageName for i in found.ImageSet] == ["slot-0300"]
    # a retry of the lost create learns that it is done already
    assert (
        error_code(lambda: create(client, "ins-6pb6lrmy", "slot-0300"))
        == "InvalidImageName.Duplicate"
    )
    [entry, retry] = [h for h in emu.core.state()["history"] if h["action"] == "CreateImage"]
    assert entry["result"] == "ok"
    assert entry["lost_response"] is True
    assert entry["ImageIds"] == [found.ImageSet[0].ImageId]
    assert retry["result"] == "InvalidImageName.Duplicate"


def test_rate_limit_answers_request_limit_exceeded(serve: Any) -> None:
    frozen = ManualClock(SystemClock().now())  # no time passes: one window for every call
    emu = serve(base_fleet(rate_limits={"DescribeImages": 3}), clock=frozen)
    client = sdk_client(emu)
    for _ in range(3):
        client.DescribeImages(models.DescribeImagesRequest())
    assert (
        error_code(lambda: client.DescribeImages(models.DescribeImagesRequest()))
        == "RequestLimitExceeded"
    )
    other_region = sdk_client(emu, region="ap-shanghai")
    assert other_region.DescribeImages(models.DescribeImagesRequest()).TotalCount == 0
    frozen.advance(1.0)
    assert client.DescribeImages(models.DescribeImagesRequest()).TotalCount == 3


def test_concurrent_creates_race_for_the_last_quota_slot(serve: Any) -> None:
    racers = 8
    instances = [{"id": f"ins-race{n:04d}", "name": f"race-{n}"} for n in range(racers)]
    images = [{"id": f"img-old{n:05d}", "name": f"old-{n}"} for n in range(9)]
    emu = serve(base_fleet(regions={GZ: {"quota": 10, "instances": instances, "images": images}}))
    barrier = threading.Barrier(racers, timeout=10)
    outcomes: list[str] = []
    lock = threading.Lock()

    def racer(n: int) -> None:
        client = sdk_client(emu)
        barrier.wait()
        try:
            create(client, f"ins-race{n:04d}", f"race-image-{n}")
            result = "ok"
        except TencentCloudSDKException as exc:
            result = str(exc.get_code())
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(outcomes) == ["ImageQuotaLimitExceeded"] * (racers - 1) + ["ok"]
    assert emu.core.state()["regions"][GZ]["quota_used"] == 10


def _http(emu: RunningEmulator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    response = requests.request(
        method,
        emu.url + path,
        data=data,
        timeout=5,
        headers={"Content-Type": "application/json", **emu.control_headers},
    )
    assert response.headers["Content-Type"] == "application/json"
    return response.status_code, response.json()


def test_control_endpoints(emu: RunningEmulator) -> None:
    client = sdk_client(emu)
    image_id = create(client, "ins-6pb6lrmy", "control")
    status, state = _http(emu, "GET", "/_emulator/state")
    assert status == 200
    region = state["regions"][GZ]
    assert region["quota"] == 10
    assert {i["InstanceId"] for i in region["instances"]} >= {"ins-6pb6lrmy"}
    assert image_id in {i["ImageId"] for i in region["images"]}
    assert state["calls"]["CreateImage"] == 1
    [entry] = state["history"]
    assert (entry["action"], entry["result"], entry["ImageIds"], entry["region"]) == (
        "CreateImage",
        "ok",
        [image_id],
        GZ,
    )
    assert entry["params"] == {"InstanceId": "ins-6pb6lrmy", "ImageName": "control"}
    assert "test-secret-key" not in json.dumps(state)

    status, body = _http(
        emu, "POST", "/_emulator/faults", {"DescribeImageQuota": {"InternalError": 1.0}}
    )
    assert status == 200
    assert body["faults"] == {"DescribeImageQuota": {"InternalError": 1.0}}
    assert error_code(lambda: quota_call(client)) == "InternalError"
    status, body = _http(emu, "POST", "/_emulator/faults", {"DescribeImageQuota": {"x": 2}})
    assert status == 400
    assert "faults.DescribeImageQuota.x" in body["error"]

    status, _ = _http(emu, "POST", "/_emulator/reset")
    assert status == 200
    assert quota_call(client).ImageNumQuota == 10  # faults are back to the fleet's (none)
    _, state = _http(emu, "GET", "/_emulator/state")
    assert image_id not in {i["ImageId"] for i in state["regions"][GZ]["images"]}
    assert state["history"] == []


@pytest.mark.parametrize(
    ("path", "method"),
    [("/_emulator/state", "GET"), ("/_emulator/faults", "POST"), ("/_emulator/reset", "POST")],
)
def test_control_endpoints_want_this_runs_token_and_a_loopback_host(
    emu: RunningEmulator, path: str, method: str
) -> None:
    """issue 19: without the per-run token, or with a foreign Host (DNS rebinding), every
    control endpoint answers 403 and changes nothing."""
    body = json.dumps({"DescribeImageQuota": {"InternalError": 1.0}}).encode()
    attempts = [
        {},  # no token
        {"X-Emulator-Token": "guessed"},
        {**emu.control_headers, "Host": f"evil.example.com:{emu.port}"},
        {**emu.control_headers, "Host": f"127.0.0.1.nip.io:{emu.port}"},
    ]
    for headers in attempts:
        response = requests.request(
            method,
            emu.url + path,
            data=body,
            timeout=5,
            headers={"Content-Type": "application/json", **headers},
        )
        assert response.status_code == 403, (headers, response.text)
        assert emu.control_token not in response.text
    assert emu.core.state()["faults"] == {}
    for host in (f"127.0.0.1:{emu.port}", f"localhost:{emu.port}"):
        ok = requests.request(
            "GET",
            emu.url + "/_emulator/state",
            timeout=5,
            headers={**emu.control_headers, "Host": host},
        )
        assert ok.status_code == 200
