"""run_once against the emulator over real HTTP with the real SDK: the issue's "Done when".

Every test builds a small fleet, writes real config and policy files, runs the executor
through ``run_once`` and checks the emulator's state and write history (what really
happened on the wire), the ``RunReport`` and what a ``RecordingAlerter`` received.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.cloud.retry import RetryPolicy
from cvmkeeper.core.naming import image_name
from cvmkeeper.executor import RegionLocks
from executor.world import (
    REGION,
    T0,
    A,
    B,
    World,
    fleet,
    hour,
    managed,
    policy,
    run,
    unmanaged,
    world,
)


def image_count_peak(w: World, start: int) -> int:
    """Replay the write history: the most images the region ever held (``start`` before)."""
    count = peak = start
    for entry in w.writes():
        if entry["result"] != "ok" or entry["region"] != REGION:
            continue
        if entry["action"] == "CreateImage":
            count += 1
        elif entry["action"] == "DeleteImages":
            count -= len(entry["ImageIds"])
        peak = max(peak, count)
    return peak


def test_a_due_slot_is_created_waited_for_and_rotated(tmp_path: Path) -> None:
    images = [managed(A, T0 + timedelta(hours=h), f"img-olda000{h}") for h in range(3)]
    with world(tmp_path, fleet(images=images), policy(ids=[A], keep_last=2)) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(3), alerter)
        assert report.ok, report.errors
        [outcome] = report.outcomes
        assert (outcome.status, outcome.image_state) == ("created", "NORMAL")
        assert outcome.image_name == image_name(A, T0 + timedelta(hours=3))
        # keep_last 2: the new one and 02:00 stay; 00:00 and 01:00 go, after the create.
        assert w.image_names() == {image_name(A, T0 + timedelta(hours=h)) for h in (2, 3)}
        actions = [e["action"] for e in w.writes()]
        assert actions[0] == "CreateImage" and set(actions[1:]) == {"DeleteImages"}
        created = w.writes()[0]["params"]
        tags = {t["Key"]: t["Value"] for t in created["TagSpecification"][0]["Tags"]}
        assert tags["cvmkeeper:managed"] == "true" and tags["cvmkeeper:instance"] == A
        assert created["ImageDescription"].startswith("cvmkeeper:")
        assert {d.status for d in report.deleted} == {"deleted"}
        assert alerter.failures == []


def test_run_twice_for_the_same_slot_writes_nothing_the_second_time(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy()) as w:
        first = run(w, hour(0))
        assert [o.status for o in first.outcomes] == ["created", "created"]
        writes = w.writes()
        second = run(w, hour(0, minute=30))
        assert w.writes() == writes
        assert [o.status for o in second.outcomes] == ["exists", "exists"]
        assert second.ok


def test_quota_full_with_nothing_expired_evicts_the_oldest_with_a_warning(
    tmp_path: Path,
) -> None:
    old = [managed(A, T0 + timedelta(hours=h), f"img-olda000{h}") for h in range(8)]
    hand = [unmanaged("img-hand0001", "golden-1"), unmanaged("img-hand0002", "golden-2")]
    with world(tmp_path, fleet(images=hand + old), policy(ids=[A], keep_last=20)) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(8), alerter)
        assert report.ok
        assert [o.status for o in report.outcomes] == ["created"]
        evicted = [d for d in report.deleted if d.kind == "evict"]
        assert [d.image_id for d in evicted] == ["img-olda0000"]
        writes = w.writes()
        assert [e["action"] for e in writes] == ["DeleteImages", "CreateImage"]
        assert image_count_peak(w, 10) == 10
        [warning] = alerter.warnings
        assert warning.policy == "hourly" and warning.action == "evict"
        assert warning.region == REGION and "img-olda0000" in warning.message
        assert alerter.errors == []
        assert {"img-hand0001", "img-hand0002"} <= {i["ImageId"] for i in w.images()}


def test_quota_full_under_skip_makes_nothing_and_alerts_an_error(tmp_path: Path) -> None:
    old = [managed(A, T0 + timedelta(hours=h), f"img-olda000{h}") for h in range(8)]
    hand = [unmanaged("img-hand0001", "golden-1"), unmanaged("img-hand0002", "golden-2")]
    document = policy(ids=[A], keep_last=20, on_quota_full="skip")
    with world(tmp_path, fleet(images=hand + old), document) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(8), alerter)
        assert not report.ok
        [outcome] = report.outcomes
        assert outcome.status == "skipped" and "on_quota_full: skip" in (outcome.error or "")
        assert w.writes() == []
        [error] = alerter.errors
        assert (error.policy, error.instance, error.region) == ("hourly", A, REGION)
        assert "quota" in error.message


def test_createfailed_is_cleaned_up_reported_and_old_backups_are_untouched(
    tmp_path: Path,
) -> None:
    images = [managed(A, T0 + timedelta(hours=h), f"img-olda000{h}") for h in range(2)]
    spec = fleet(images=images)
    spec["timing"]["create_failed_probability"] = 1.0
    with world(tmp_path, spec, policy(ids=[A], keep_last=2)) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(2), alerter)
        assert not report.ok
        [outcome] = report.outcomes
        assert (outcome.status, outcome.image_state) == ("failed", "CREATEFAILED")
        assert [(d.kind, d.image_id, d.status) for d in report.deleted] == [
            ("cleanup", outcome.image_id, "deleted")
        ]
        assert {i["ImageId"] for i in w.images()} == {"img-olda0000", "img-olda0001"}
        [error] = alerter.errors
        assert error.instance == A and "CREATEFAILED" in error.message
        assert error.extra["slot"] == "2026-11-27T02:00Z"


def test_a_lost_create_answer_is_adopted_and_a_rerun_makes_no_second_image(
    tmp_path: Path,
) -> None:
    spec = fleet(faults={"CreateImage": {"lost_response": 1.0}})
    with world(tmp_path, spec, policy(ids=[A])) as w:
        report = run(w, hour(0))
        assert [o.status for o in report.outcomes] == ["adopted"]
        w.emu.core.set_faults({})
        again = run(w, hour(0, minute=40))
        assert [o.status for o in again.outcomes] == ["exists"]
        name = image_name(A, T0)
        assert [i["ImageName"] for i in w.images()].count(name) == 1
        made = [e for e in w.writes() if e["action"] == "CreateImage" and e["result"] == "ok"]
        assert len(made) == 1 and made[0].get("lost_response") is True


def test_a_run_killed_after_a_lost_create_answer_converges_on_rerun(tmp_path: Path) -> None:
    spec = fleet(faults={"CreateImage": {"lost_response": 1.0}})
    with world(tmp_path, spec, policy(ids=[A])) as w:
        no_retry = w.client()
        no_retry.retry_policy = RetryPolicy(
            max_attempts=1, base_seconds=0.01, cap_seconds=0.01, deadline_seconds=5
        )
        alerter = RecordingAlerter()
        first = run(w, hour(0), alerter, client=no_retry)
        assert [o.status for o in first.outcomes] == ["failed"]
        assert alerter.errors[0].tencent_code is not None
        w.emu.core.set_faults({})
        second = run(w, hour(0, minute=5))
        assert [o.status for o in second.outcomes] == ["exists"]
        assert second.outcomes[0].image_state == "NORMAL"
        assert [i["ImageName"] for i in w.images()] == [image_name(A, T0)]
        creates = [e for e in w.writes() if e["action"] == "CreateImage"]
        assert len(creates) == 1


def test_stop_start_restarts_the_instance_when_create_image_fails(tmp_path: Path) -> None:
    spec = fleet(instances=[{"id": A, "not_supported": True}])
    with world(tmp_path, spec, policy(ids=[A], consistency="stop_start")) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(0), alerter)
        [outcome] = report.outcomes
        assert outcome.status == "failed"
        assert outcome.tencent_code == "InvalidInstance.NotSupported"
        assert [e["action"] for e in w.writes()] == [
            "TagResources",  # the cloud mark (rule 9 across hosts), before the stop
            "StopInstances",
            "CreateImage",
            "StartInstances",
            "UnTagResources",  # after the start
        ]
        assert w.instance_state(A) in ("STARTING", "RUNNING")
        [error] = alerter.errors
        assert (error.action, error.tencent_code, error.instance) == (
            "CreateImage",
            "InvalidInstance.NotSupported",
            A,
        )
        assert error.request_id


def test_stop_start_leaves_a_stopped_instance_stopped_and_restarts_a_running_one(
    tmp_path: Path,
) -> None:
    spec = fleet(instances=[{"id": A}, {"id": B, "state": "STOPPED"}])
    with world(tmp_path, spec, policy(consistency="stop_start")) as w:
        report = run(w, hour(0))
        assert report.ok, report.errors
        assert [o.status for o in report.outcomes] == ["created", "created"]
        writes = w.writes()
        stops = [e for e in writes if e["action"] == "StopInstances"]
        starts = [e for e in writes if e["action"] == "StartInstances"]
        assert [e["InstanceIds"] for e in stops] == [[A]]
        assert [e["InstanceIds"] for e in starts] == [[A]]
        assert w.instance_state(B) == "STOPPED"
        history = w.state()["history"]
        normal_a = next(
            e["seq"]
            for e in history
            if e["action"] == "_transition"
            and e.get("to") == "NORMAL"
            and e.get("InstanceIds") == [A]
        )
        assert normal_a < starts[0]["seq"]  # started only after its image left CREATING


def test_shared_expired_image_is_left_alone_with_a_warning(tmp_path: Path) -> None:
    images = [managed(A, T0 + timedelta(hours=h), f"img-olda000{h}") for h in range(3)]
    images[0]["shared"] = True
    with world(tmp_path, fleet(images=images), policy(ids=[A], keep_last=1)) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(3), alerter)
        assert report.ok
        by_id = {d.image_id: d.status for d in report.deleted}
        assert by_id == {
            "img-olda0000": "left",
            "img-olda0001": "deleted",
            "img-olda0002": "deleted",
        }
        [warning] = alerter.warnings
        assert warning.tencent_code == "InvalidImageId.InShared"
        assert "img-olda0000" in {i["ImageId"] for i in w.images()}


def test_quota_taken_between_plan_and_create_is_planned_again_once(tmp_path: Path) -> None:
    images = [managed(A, T0 + timedelta(hours=h), f"img-olda000{h}") for h in range(2)]
    images.append(unmanaged("img-hand0001", "golden-1"))
    spec = fleet(quota=4, images=images)
    with world(tmp_path, spec, policy(ids=[A], keep_last=2), quota=4) as w:
        taken: list[str] = []

        def someone_else_creates(message: str) -> None:
            if "to create" in message and not taken:
                body = w.emu.core.call(
                    "CreateImage", REGION, {"ImageName": "hand-made-2", "InstanceId": B}
                )
                taken.append(body["ImageId"])

        report = run(w, hour(2), progress=someone_else_creates)
        assert report.ok, report.errors
        assert [o.status for o in report.outcomes] == ["created"]
        assert len(report.plans[REGION]) == 3  # first, after the quota error, after the wait
        results = [(e["action"], e["result"]) for e in w.writes()]
        assert results[:4] == [
            ("CreateImage", "ok"),
            ("CreateImage", "ImageQuotaLimitExceeded"),
            ("DeleteImages", "ok"),
            ("CreateImage", "ok"),
        ]
        ids = {i["ImageId"] for i in w.images()}
        assert {"img-hand0001", taken[0], "img-olda0001"} <= ids
        assert "img-olda0000" not in ids


def test_no_wait_creates_and_leaves_deletes_to_the_next_run(tmp_path: Path) -> None:
    images = [managed(A, T0 + timedelta(hours=h), f"img-olda000{h}") for h in range(2)]
    with world(
        tmp_path, fleet(images=images, create_seconds=30), policy(ids=[A], keep_last=1)
    ) as w:
        report = run(w, hour(2), wait=False)
        assert report.ok
        [outcome] = report.outcomes
        assert (outcome.status, outcome.image_state) == ("created", "CREATING")
        assert [e["action"] for e in w.writes()] == ["CreateImage"]


def test_stop_requested_before_the_run_writes_nothing(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy()) as w:
        stop = threading.Event()
        stop.set()
        alerter = RecordingAlerter()
        report = run(w, hour(0), alerter, stop=stop)
        assert w.writes() == []
        assert [o.status for o in report.outcomes] == ["skipped", "skipped"]
        assert len(alerter.warnings) == 2 and alerter.errors == []


def test_a_busy_region_is_reported_not_run_twice(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy()) as w:
        locks = RegionLocks()
        alerter = RecordingAlerter()
        with locks.hold(REGION) as held:
            assert held
            report = run(w, hour(0), alerter, region_locks=locks)
        assert w.writes() == []
        assert not report.ok and "another run" in report.errors[0]
        assert not report.policy_ok("hourly")
        assert [f.action for f in alerter.errors] == ["run"]


def test_dry_run_plans_without_writing_or_alerting(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(), policy("other", ids=["ins-cccccccc"])) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(0), alerter, dry_run=True)
        assert w.writes() == [] and alerter.failures == []
        [plan] = report.plans[REGION]
        assert len(plan.creates) == 2
        assert any("matches no instance" in warning for warning in report.warnings)


def test_a_policy_matching_no_instance_is_a_warning(tmp_path: Path) -> None:
    # a tag selector may rightly match nothing; an instance named by id that is gone is a
    # missed backup (tests/executor/test_silent_miss.py)
    other = policy("other", ids=[], targets={"tags": {"env": "none"}})
    with world(tmp_path, fleet(), policy(), other) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(0), alerter)
        assert report.ok
        [warning] = alerter.warnings
        assert warning.policy == "other" and warning.action == "targets"


def test_explicit_policy_makes_its_slot_even_if_not_due(tmp_path: Path) -> None:
    document = policy(ids=[A], schedules=[{"cron": "0 3 * * *"}], catch_up="off")
    with world(tmp_path, fleet(), document) as w:
        assert run(w, hour(12)).outcomes == ()  # 03:00 is nine hours old: not due
        report = run(w, hour(12), policy_names=["hourly"])
        assert [(o.status, o.slot) for o in report.outcomes] == [
            ("created", T0 + timedelta(hours=3))
        ]


def test_unreadable_region_does_not_stop_the_other_regions(tmp_path: Path) -> None:
    other = policy("elsewhere", ids=[B], regions=["ap-shanghai"])
    with world(tmp_path, fleet(), policy(ids=[A]), other) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(0), alerter)
        assert [(o.region, o.status) for o in report.outcomes] == [
            (REGION, "created"),
            ("ap-shanghai", "failed"),
        ]  # its due slot is named (rule 7)
        assert any(e.startswith("ap-shanghai: cannot read") for e in report.errors)
        # one alert for the cause (issue 19), naming the policy whose slot it missed
        [alert] = alerter.errors
        assert (alert.region, alert.tags["policies"]) == ("ap-shanghai", "elsewhere")
        assert report.policy_ok("hourly") and not report.policy_ok("elsewhere")


def test_a_progress_display_that_raises_never_fails_the_run(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A])) as w:
        shown: list[str] = []

        def broken_display(message: str) -> None:
            shown.append(message)
            raise OSError("the terminal went away")

        report = run(w, hour(0), progress=broken_display)
        assert report.ok, report.errors
        assert [o.status for o in report.outcomes] == ["created"]
        assert any(": hourly: " in message for message in shown)  # the due line was shown too
