"""CloudClient against the emulator, over HTTP with the real SDK and in-process alike.

Every test runs with both transports (see ``conftest.make_cloud``): the same behaviour is
expected from both, which is the point of having one client over two transports.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cvmkeeper.cloud.errors import (
    AuthError,
    BusyError,
    InternalServerError,
    NetworkError,
    NotFoundError,
    PermanentError,
    QuotaExceededError,
)
from cvmkeeper.cloud.models import CreateImageRequest
from cvmkeeper.cloud.ratelimit import RateLimitConfig
from cvmkeeper.core.inventory import ImageState

from .conftest import MakeCloud, fleet_mapping

GZ, SH = "ap-guangzhou", "ap-shanghai"


def request(name: str, instance: str = "ins-0000", **extra: Any) -> CreateImageRequest:
    return CreateImageRequest(name=name, instance_id=instance, **extra)


def big_fleet(images: int, instances: int) -> dict[str, Any]:
    return fleet_mapping(
        regions={
            GZ: {
                "quota": images + 10,
                "instances": [
                    {"id": f"ins-{n:05d}", "tags": {"tier": "web" if n % 3 else "db"}}
                    for n in range(instances)
                ],
                "images": [{"id": f"img-{n:05d}", "name": f"old-{n:05d}"} for n in range(images)]
                + [{"id": "img-public", "name": "centos", "type": "PUBLIC_IMAGE"}],
            },
        }
    )


# -- reading ------------------------------------------------------------------------------


def test_paging_past_100_images_and_instances(make_cloud: MakeCloud) -> None:
    cloud = make_cloud(big_fleet(images=230, instances=205))
    images = cloud.client.list_images(GZ)
    assert sorted(i.image_id for i in images) == [f"img-{n:05d}" for n in range(230)]
    assert all(i.created_time.tzinfo is not None and i.state is ImageState.NORMAL for i in images)
    assert cloud.client.stats.attempts["DescribeImages"] == 3  # 100 + 100 + 30

    instances = cloud.client.list_instances(GZ)
    assert len({i.instance_id for i in instances}) == 205
    db = cloud.client.list_instances(GZ, tags={"tier": "db"})
    assert {i.instance_id for i in db} == {f"ins-{n:05d}" for n in range(0, 205, 3)}
    ids = [f"ins-{n:05d}" for n in range(150)]
    by_id = cloud.client.list_instances(GZ, ids=ids, tags={"tier": "db"})
    assert {i.instance_id for i in by_id} == {f"ins-{n:05d}" for n in range(0, 150, 3)}


def test_get_images_polls_many_ids_in_few_calls(make_cloud: MakeCloud) -> None:
    cloud = make_cloud(big_fleet(images=150, instances=1))
    wanted = [f"img-{n:05d}" for n in range(0, 150, 1)] + ["img-unknown"]
    before = cloud.client.stats.attempts["DescribeImages"]
    found = cloud.client.get_images(GZ, wanted)
    assert len(found) == 150
    assert cloud.client.stats.attempts["DescribeImages"] - before == 2


def test_quota_states_and_fuzzy_name_filter(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    assert cloud.client.image_quota(GZ) == 50
    assert cloud.client.instance_states(GZ, ["ins-0000", "ins-stopped"]) == {
        "ins-0000": "RUNNING",
        "ins-stopped": "STOPPED",
    }
    cloud.client.create_image(GZ, request("web-0-a", "ins-0000"))
    cloud.client.create_image(GZ, request("web-0-ab", "ins-0001"))
    found = cloud.client.find_image_by_name(GZ, "web-0-a")
    assert found is not None and found.name == "web-0-a"
    assert cloud.client.find_image_by_name(GZ, "web-0") is None


# -- writing ------------------------------------------------------------------------------


def test_create_wait_sync_and_delete(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    client = cloud.client
    outcome = client.create_image(
        GZ,
        request(
            "web0-20261127-0300",
            description="cvmkeeper: daily",
            tags={"cvmkeeper:policy": "p"},
            force_poweroff=True,
        ),
    )
    assert not outcome.adopted
    (image,) = client.get_images(GZ, [outcome.image_id])
    assert image.state is ImageState.CREATING
    assert dict(image.tags) == {"cvmkeeper:policy": "p"}
    assert image.description == "cvmkeeper: daily"
    cloud.wait_until(lambda: client.get_images(GZ, [outcome.image_id])[0].state.usable)

    synced = client.sync_image(GZ, outcome.image_id, [SH])
    assert set(synced.copies) == {SH}
    assert client.get_images(SH, [synced.copies[SH]])[0].name == "web0-20261127-0300"
    cloud.wait_until(lambda: client.get_images(GZ, [outcome.image_id])[0].state.usable)

    result = client.delete_images(GZ, [outcome.image_id, "img-golden01"])
    assert set(result.deleted) == {outcome.image_id, "img-golden01"}
    assert client.list_images(GZ) == ()
    history = [h for h in cloud.state()["history"] if h["action"] == "DeleteImages"]
    assert history[-1]["params"]["DeleteBindedSnap"] is True


def test_delete_in_batches_with_one_already_gone(make_cloud: MakeCloud) -> None:
    cloud = make_cloud(big_fleet(images=25, instances=1))
    ids = [f"img-{n:05d}" for n in range(25)]
    cloud.client.delete_images(GZ, ids[3:4])
    result = cloud.client.delete_images(GZ, ids)
    assert set(result.deleted) == set(ids) - {ids[3]}
    assert result.already_gone == (ids[3],)
    assert cloud.client.list_images(GZ) == ()


def test_stop_and_start_are_idempotent(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    client = cloud.client
    client.stop_instances(GZ, ["ins-0000"])
    client.stop_instances(GZ, ["ins-0000"])  # stopping: busy, retried, then already stopped
    assert client.instance_states(GZ, ["ins-0000"]) == {"ins-0000": "STOPPED"}
    client.stop_instances(GZ, ["ins-0000", "ins-0001"])  # one is done already
    cloud.wait_until(lambda: client.instance_states(GZ, ["ins-0001"])["ins-0001"] == "STOPPED")
    client.start_instances(GZ, ["ins-0000", "ins-0001"])
    client.start_instances(GZ, ["ins-0000"])
    cloud.wait_until(
        lambda: set(client.instance_states(GZ, ["ins-0000", "ins-0001"]).values()) == {"RUNNING"}
    )


# -- every error class --------------------------------------------------------------------


def test_already_done_create_is_adopted(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    first = cloud.client.create_image(GZ, request("slot-a"))
    again = cloud.client.create_image(GZ, request("slot-a"))
    assert again.image_id == first.image_id and again.adopted
    assert len(cloud.images_named(GZ, "slot-a")) == 1


def test_dry_run_creates_nothing(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    outcome = cloud.client.create_image(GZ, request("dry", dry_run=True))
    assert outcome.image_id == "" and not outcome.adopted
    assert cloud.images_named(GZ, "dry") == []


def test_quota_exceeded(make_cloud: MakeCloud) -> None:
    fleet = fleet_mapping()
    fleet["regions"][GZ]["quota"] = 1
    cloud = make_cloud(fleet)
    with pytest.raises(QuotaExceededError) as caught:
        cloud.client.create_image(GZ, request("over"))
    assert caught.value.code == "ImageQuotaLimitExceeded"
    assert cloud.client.stats.attempts["CreateImage"] == 1


@pytest.mark.parametrize(
    ("req", "error", "code"),
    [
        (request("x", "ins-missing"), NotFoundError, "InvalidInstanceId.NotFound"),
        (request("x", "ins-odd"), PermanentError, "InvalidInstance.NotSupported"),
        (request("a-name-over-twenty-chars"), PermanentError, "InvalidParameter.ValueTooLarge"),
    ],
)
def test_permanent_errors_are_not_retried(
    make_cloud: MakeCloud, req: CreateImageRequest, error: type, code: str
) -> None:
    cloud = make_cloud()
    with pytest.raises(error) as caught:
        cloud.client.create_image(GZ, req)
    assert caught.value.code == code
    assert caught.value.region == GZ and caught.value.action == "CreateImage"
    if cloud.transport == "http":
        assert caught.value.request_id
    assert cloud.client.stats.attempts["CreateImage"] == 1


def test_deleting_a_creating_image_is_refused(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    outcome = cloud.client.create_image(GZ, request("busy"))
    with pytest.raises(PermanentError) as caught:
        cloud.client.delete_images(GZ, [outcome.image_id])
    assert caught.value.code == "InvalidImageId.IncorrectState"


def test_busy_instance_is_retried_until_free(
    make_cloud: MakeCloud, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cvmkeeper.cloud")
    cloud = make_cloud()
    cloud.client.create_image(GZ, request("first"))
    second = cloud.client.create_image(GZ, request("second"))  # MutexOperation until NORMAL
    assert not second.adopted
    assert "MutexOperation.TaskRunning" in caplog.text


def test_busy_gives_up_when_the_policy_is_exhausted(make_cloud: MakeCloud) -> None:
    from cvmkeeper.cloud.retry import RetryPolicy

    cloud = make_cloud(policy=RetryPolicy(max_attempts=2, base_seconds=0.001, cap_seconds=0.001))
    cloud.client.create_image(GZ, request("first"))
    with pytest.raises(BusyError):
        cloud.client.create_image(GZ, request("second"))
    assert cloud.client.stats.attempts["CreateImage"] == 3


def test_internal_error_is_retried_a_bounded_few_times(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    cloud.core.set_faults({"DescribeImageQuota": {"InternalError": 1.0}})
    with pytest.raises(InternalServerError):
        cloud.client.image_quota(GZ)
    assert cloud.client.stats.attempts["DescribeImageQuota"] == 6  # 1 + max_internal_errors


def test_network_errors_are_retried_then_raised(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    cloud.core.set_faults({"DescribeImageQuota": {"reset": 1.0}})
    with pytest.raises(NetworkError):
        cloud.client.image_quota(GZ)
    assert cloud.client.stats.attempts["DescribeImageQuota"] == 10


@pytest.mark.parametrize("make_cloud", ["http"], indirect=True)  # signatures: wire only
def test_wrong_key_is_an_auth_error(make_cloud: MakeCloud) -> None:
    cloud = make_cloud(secret_key="not-the-key")
    with pytest.raises(AuthError) as caught:
        cloud.client.list_images(GZ)
    assert caught.value.code == "AuthFailure.SignatureFailure"
    assert caught.value.request_id
    assert cloud.client.stats.attempts["DescribeImages"] == 1


@pytest.mark.slow
def test_throttling_is_absorbed_and_the_bucket_slows_down(
    make_cloud: MakeCloud, caplog: pytest.LogCaptureFixture
) -> None:
    """The emulator allows 3 CreateImage/s but the client believes 10/s: throttled answers
    are retried, the bucket adapts, every create succeeds in a bounded number of attempts."""
    caplog.set_level(logging.INFO, logger="cvmkeeper.cloud.retry")
    fleet = fleet_mapping(rate_limits={"CreateImage": 3})
    fleet["regions"][GZ]["instances"] = [{"id": f"ins-{n:04d}"} for n in range(12)]
    cloud = make_cloud(fleet, limiter_config=RateLimitConfig(headroom=1.0))
    for n in range(12):
        assert not cloud.client.create_image(GZ, request(f"t-{n}", f"ins-{n:04d}")).adopted
    throttled = cloud.state()["errors"].get("RequestLimitExceeded", 0)
    assert throttled > 0
    assert cloud.client.stats.attempts["CreateImage"] == 12 + throttled
    assert throttled <= 12  # adaptive: far fewer than one bounce per call after slowing
    retries = [r for r in caplog.records if "after RequestLimitExceeded" in r.getMessage()]
    assert len(retries) == throttled
    assert cloud.client.limiter.current_rate(GZ, "CreateImage") < 10


@pytest.mark.slow
def test_default_limits_keep_under_the_emulator_limits(make_cloud: MakeCloud) -> None:
    fleet = fleet_mapping()
    fleet["regions"][GZ]["instances"] = [{"id": f"ins-{n:04d}"} for n in range(25)]
    cloud = make_cloud(fleet)
    for n in range(25):
        cloud.client.create_image(GZ, request(f"b-{n}", f"ins-{n:04d}"))
    for _ in range(45):
        cloud.client.image_quota(GZ)
    assert cloud.state()["errors"].get("RequestLimitExceeded", 0) == 0


# -- lost answers and faults --------------------------------------------------------------


def test_lost_response_create_ends_with_exactly_one_image(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    cloud.core.set_faults({"CreateImage": {"lost_response": 1.0}})
    outcome = cloud.client.create_image(GZ, request("lost-1"))
    assert outcome.adopted
    images = cloud.images_named(GZ, "lost-1")
    assert [i["ImageId"] for i in images] == [outcome.image_id]
    creates = [h for h in cloud.state()["history"] if h["action"] == "CreateImage"]
    assert len(creates) == 1 and creates[0]["lost_response"] is True


def test_lost_response_sync_is_not_copied_twice(make_cloud: MakeCloud) -> None:
    cloud = make_cloud()
    created = cloud.client.create_image(GZ, request("to-copy"))
    cloud.wait_until(lambda: cloud.client.get_images(GZ, [created.image_id])[0].state.usable)
    cloud.core.set_faults({"SyncImages": {"lost_response": 1.0}})
    result = cloud.client.sync_image(GZ, created.image_id, [SH])
    assert result.adopted == (SH,)
    assert [i["ImageId"] for i in cloud.images_named(SH, "to-copy")] == [result.copies[SH]]


@pytest.mark.slow
def test_twenty_percent_faults_on_every_action_every_operation_completes(
    make_cloud: MakeCloud,
) -> None:
    fleet = fleet_mapping()
    fleet["regions"][GZ]["instances"] = [{"id": f"ins-{n:04d}"} for n in range(8)]
    cloud = make_cloud(fleet)
    each = {
        "InternalError": 0.05,
        "RequestLimitExceeded": 0.05,
        "reset": 0.05,
        "lost_response": 0.05,
    }
    cloud.core.set_faults(
        {
            action: dict(each)
            for action in (
                "CreateImage",
                "DescribeImages",
                "DeleteImages",
                "DescribeImageQuota",
                "SyncImages",
                "DescribeInstances",
                "DescribeInstancesStatus",
                "StopInstances",
                "StartInstances",
            )
        }
    )
    client = cloud.client
    ids = [f"ins-{n:04d}" for n in range(8)]

    created = {n: client.create_image(GZ, request(f"f-{n}", ids[n])).image_id for n in range(8)}
    assert client.image_quota(GZ) == 50
    assert len(client.list_instances(GZ, ids=ids)) == 8
    cloud.wait_until(
        lambda: all(i.state.usable for i in client.get_images(GZ, list(created.values())))
    )
    copy = client.sync_image(GZ, created[0], [SH])
    client.stop_instances(GZ, ids[:3])
    cloud.wait_until(lambda: set(client.instance_states(GZ, ids[:3]).values()) == {"STOPPED"})
    client.start_instances(GZ, ids[:3])
    cloud.wait_until(
        lambda: all(i.state.usable for i in client.get_images(GZ, list(created.values())))
    )
    deleted = client.delete_images(GZ, [created[n] for n in range(1, 8)])
    assert set(deleted.deleted) | set(deleted.already_gone) == {created[n] for n in range(1, 8)}

    cloud.core.set_faults({})
    state = cloud.state()
    names = sorted(i["ImageName"] for i in state["regions"][GZ]["images"])
    assert names == ["f-0", "golden-base"]  # exactly one image per create, deletes done
    assert [i["ImageId"] for i in cloud.images_named(SH, "f-0")] == [copy.copies[SH]]
    assert sum(state["errors"].values()) > 0  # faults really happened
    assert {
        i["InstanceState"] for i in state["regions"][GZ]["instances"] if i["InstanceId"] in ids[:3]
    } <= {"STARTING", "RUNNING"}
