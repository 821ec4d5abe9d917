"""Ownership rests on who created an image, read over the real SDK (issue 19).

The emulator reports every image's ``ImageCreator`` (the UIN of the key that created it; a
fleet image may name another) and answers STS ``GetCallerIdentity`` on the same endpoint,
signed for the ``sts`` service, as Tencent does. These tests drive the official SDK over
HTTP on 127.0.0.1.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.credentials import Credentials
from cvmkeeper.cloud.transport import EndpointConfig
from cvmkeeper.core.naming import image_description, image_name, image_tags
from cvmkeeper.core.ownership import classify_image
from cvmkeeper.emulator.server import running_emulator

GZ = "ap-guangzhou"
INSTANCE = "ins-6pb6lrmy"
OURS = "100000000042"
SOMEONE = "100000000666"
SLOT = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


def managed_image(image_id: str, slot: datetime, **extra: object) -> dict[str, object]:
    return {
        "id": image_id,
        "name": image_name(INSTANCE, slot),
        "description": image_description(("web",), slot),
        "tags": image_tags(("web",), INSTANCE, slot),
        "instance_id": INSTANCE,
        "created_time": slot.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    }


FLEET = {
    "credentials": {"secret_id": "AKIDOWNER0001", "secret_key": "owner-secret-key", "uin": OURS},
    "regions": {
        GZ: {
            "instances": [{"id": INSTANCE}],
            "images": [
                managed_image("img-ours0001", SLOT),
                managed_image("img-forged01", SLOT.replace(hour=17), creator=SOMEONE),
                {"id": "img-golden01", "name": "golden"},
            ],
        }
    },
}


def client_for(emu: object) -> CloudClient:
    return CloudClient.over_http(
        Credentials("AKIDOWNER0001", "owner-secret-key"), EndpointConfig(emu.endpoint, "http", 5)
    )  # type: ignore[attr-defined]


def test_the_caller_identity_comes_from_sts_over_the_sdk() -> None:
    with running_emulator(FLEET) as emu:
        identity = client_for(emu).caller_identity(GZ)
        assert emu.core.state()["calls"]["GetCallerIdentity"] == 1
    assert (identity.account_id, identity.user_id, identity.principal_id) == (OURS, OURS, OURS)
    assert identity.arn == f"qcs::cam::uin/{OURS}:uin/{OURS}"


def test_an_image_someone_else_created_is_unmanaged_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_emulator(FLEET) as emu, caplog.at_level(logging.WARNING):
        client = client_for(emu)
        images = {image.image_id: image for image in client.list_images(GZ)}
        again = client.get_images(GZ, ["img-forged01", "img-ours0001"])
        calls = emu.core.state()["calls"]
    assert images["img-ours0001"].creator == OURS
    assert images["img-forged01"].creator == SOMEONE
    assert classify_image(images["img-ours0001"]) is not None
    assert classify_image(images["img-forged01"]) is None  # tags and name are perfect
    assert all(classify_image(i) is None for i in again if i.image_id == "img-forged01")
    assert calls["GetCallerIdentity"] == 1  # read once, remembered
    reports = [r.getMessage() for r in caplog.records if "img-forged01" in r.getMessage()]
    assert reports and f"created by {SOMEONE}" in reports[0]
    assert not any("img-golden01" in r.getMessage() for r in caplog.records)  # no marker


def test_a_newly_created_image_carries_the_creating_keys_uin() -> None:
    from cvmkeeper.cloud.models import CreateImageRequest

    with running_emulator(FLEET) as emu:
        client = client_for(emu)
        made = client.create_image(GZ, CreateImageRequest("fresh-image", INSTANCE))
        [image] = client.get_images(GZ, [made.image_id])
    assert image.creator == OURS and image.creator_trusted


def test_the_invariants_call_deleting_someone_elses_lookalike_a_violation() -> None:
    from cvmkeeper.emulator.clock import ManualClock
    from cvmkeeper.emulator.core import EmulatorCore
    from cvmkeeper.emulator.fleet import FleetSpec
    from cvmkeeper.emulator.invariants import check_invariants

    core = EmulatorCore(FleetSpec.from_mapping(FLEET), ManualClock(SLOT))
    initial = core.state()
    assert initial["caller_uin"] == OURS
    core.call("DeleteImages", GZ, {"ImageIds": ["img-forged01"]})
    kinds = [v.rule for v in check_invariants(core.state(), initial)]
    assert kinds == ["unmanaged_touched"]


def test_a_duplicate_name_held_by_someone_elses_image_is_not_adopted() -> None:
    from cvmkeeper.cloud.errors import PermanentError
    from cvmkeeper.cloud.models import CreateImageRequest

    forged = SLOT.replace(hour=17)  # img-forged01 holds this slot's name, made by SOMEONE
    request = CreateImageRequest(
        image_name(INSTANCE, forged),
        INSTANCE,
        image_description(("web",), forged),
        image_tags(("web",), INSTANCE, forged),
    )
    with running_emulator(FLEET) as emu:
        client = client_for(emu)
        with pytest.raises(PermanentError) as raised:
            client.create_image(GZ, request)
        # our own image of a slot is still adopted
        ours = CreateImageRequest(
            image_name(INSTANCE, SLOT),
            INSTANCE,
            image_description(("web",), SLOT),
            image_tags(("web",), INSTANCE, SLOT),
        )
        again = client.create_image(GZ, ours)
    assert "img-forged01" in str(raised.value) and SOMEONE in str(raised.value)
    assert raised.value.code == "InvalidImageName.Duplicate"
    assert again.adopted and again.image_id == "img-ours0001"
