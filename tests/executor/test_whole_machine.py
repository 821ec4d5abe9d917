"""Whole-machine images (issue #15, docs/design.md rule 10) over real HTTP with the official SDK.

A backup holds the system disk and every CBS data disk attached at the slot unless the
policy says otherwise; a disk that cannot be imaged is alerted on every run; deleting an
image deletes its snapshots; the invariant checker finds no snapshot left behind and no
disk left out without an alert.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.core.disks import TAG_DISKS
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from cvmkeeper.executor import run_once
from executor.world import (
    DEST,
    QUICK_RETRIES,
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
    two_regions,
    world,
)

DB_DISK = {"id": "disk-dbdata01", "type": "CLOUD_PREMIUM", "size": 200}
LOG_DISK = {"id": "disk-dblogs01", "type": "CLOUD_SSD", "size": 50}
SCRATCH = {"id": "disk-scratch1", "type": "LOCAL_SSD", "size": 100}


def creates(w: World) -> list[dict[str, Any]]:
    return [e for e in w.writes() if e["action"] == "CreateImage" and e["result"] == "ok"]


def image(w: World, image_id: str) -> dict[str, Any]:
    return next(i for i in w.images() if i["ImageId"] == image_id)


def usages(api_image: dict[str, Any]) -> list[tuple[str, int]]:
    return [(s["DiskUsage"], s["DiskSize"]) for s in api_image["SnapshotSet"]]


def change_disks(w: World, body: dict[str, Any]) -> dict[str, Any]:
    """Attach or detach a disk through the emulator's control endpoint, over HTTP."""
    request = urllib.request.Request(  # noqa: S310 - loopback http
        f"{w.emu.url}/_emulator/disks",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **w.emu.control_headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
        return dict(json.loads(answer.read()))


def disk_alerts(alerter: RecordingAlerter) -> set[str]:
    return {f.instance for f in alerter.warnings if f.action == "disks" and f.instance}


def test_an_image_holds_the_system_disk_and_every_data_disk(tmp_path: Path) -> None:
    spec = fleet(instances=({"id": A, "data_disks": [DB_DISK, LOG_DISK]}, {"id": B}))
    with world(tmp_path, spec, policy(ids=[A, B])) as w:
        initial = w.state()
        alerter = RecordingAlerter()
        report = run(w, hour(1), alerter)
        assert report.ok, report.errors
        made = {e["params"]["InstanceId"]: e for e in creates(w)}
        assert made[A]["params"]["DataDiskIds"] == ["disk-dbdata01", "disk-dblogs01"]
        assert "DataDiskIds" not in made[B]["params"]  # no data disk: the system disk alone
        image_a = image(w, made[A]["ImageIds"][0])
        assert usages(image_a) == [("SYSTEM_DISK", 50), ("DATA_DISK", 200), ("DATA_DISK", 50)]
        tags = {t["Key"]: t["Value"] for t in image_a["Tags"]}
        assert tags[TAG_DISKS] == "disk-dbdata01+disk-dblogs01"
        assert image_a["ImageState"] == "NORMAL"
        assert not alerter.warnings
        violations = check_invariants(w.state(), initial, disk_alerts=disk_alerts(alerter))
        assert violations == [], format_violations(violations)


def test_imaging_time_grows_with_the_disks(tmp_path: Path) -> None:
    spec = fleet(instances=({"id": A, "data_disks": [DB_DISK]}, {"id": B}), create_seconds=0.1)
    spec["timing"]["create_seconds_per_100gib"] = 0.2  # A: 250 GiB -> 0.6 s; B: 50 -> 0.2 s
    with world(tmp_path, spec, policy(ids=[A, B])) as w:
        assert run(w, hour(1)).ok
        ready = {
            e["InstanceIds"][0]: e["time"]
            for e in w.state()["history"]
            if e["action"] == "_transition" and e.get("to") == "NORMAL"
        }
        made = {e["params"]["InstanceId"]: e["time"] for e in creates(w)}

        def seconds(instance: str) -> float:
            start = datetime.fromisoformat(made[instance].replace("Z", "+00:00"))
            end = datetime.fromisoformat(ready[instance].replace("Z", "+00:00"))
            return (end - start).total_seconds()

        assert abs(seconds(A) - 0.6) < 0.01
        assert abs(seconds(B) - 0.2) < 0.01


def test_a_disk_attached_then_detached_between_slots(tmp_path: Path) -> None:
    spec = fleet(instances=({"id": A, "data_disks": [DB_DISK]},))
    with world(tmp_path, spec, policy(ids=[A], keep_last=5)) as w:
        assert run(w, hour(1)).ok
        answer = change_disks(w, {"instance_id": A, "attach": LOG_DISK})
        assert [d["DiskId"] for d in answer["DataDisks"]] == ["disk-dbdata01", "disk-dblogs01"]
        assert run(w, hour(2)).ok
        change_disks(w, {"instance_id": A, "detach": "disk-dbdata01"})
        alerter = RecordingAlerter()
        assert run(w, hour(3), alerter).ok
        asked = [e["params"].get("DataDiskIds", []) for e in creates(w)]
        assert asked == [["disk-dbdata01"], ["disk-dbdata01", "disk-dblogs01"], ["disk-dblogs01"]]
        # a detached disk is no longer the machine's: nothing is missing, nothing alerted
        assert not alerter.warnings


def test_a_listed_disk_that_was_detached_is_alerted_every_run(tmp_path: Path) -> None:
    spec = fleet(instances=({"id": A, "data_disks": [DB_DISK, LOG_DISK]},))
    listed = policy("db", ids=[A], disks={"include": ["disk-dbdata01"]})
    with world(tmp_path, spec, listed) as w:
        assert run(w, hour(1)).ok
        assert creates(w)[0]["params"]["DataDiskIds"] == ["disk-dbdata01"]  # logs excluded
        change_disks(w, {"instance_id": A, "detach": "disk-dbdata01"})
        for n in (2, 3):
            alerter = RecordingAlerter()
            run(w, hour(n), alerter)
            [warning] = [f for f in alerter.warnings if f.action == "disks"]
            assert warning.policy == "db" and warning.instance == A
            assert "disk-dbdata01" in warning.message and "NOT in the backup" in warning.message


def test_a_local_disk_is_named_in_a_warning_on_every_run(tmp_path: Path) -> None:
    spec = fleet(instances=({"id": A, "data_disks": [DB_DISK, SCRATCH]}, {"id": B}))
    with world(tmp_path, spec, policy("db", ids=[A, B])) as w:
        initial = w.state()
        alerted: set[str] = set()
        for n in (1, 2):
            alerter = RecordingAlerter()
            report = run(w, hour(n), alerter)
            assert report.ok, report.errors  # the backup itself is made
            [warning] = [f for f in alerter.warnings if f.action == "disks"]
            assert (warning.policy, warning.instance, warning.region) == ("db", A, REGION)
            assert "disk-scratch1" in warning.message and "LOCAL_SSD" in warning.message
            assert "InvalidParameter.LocalDataDiskNotSupport" in warning.message
            alerted |= disk_alerts(alerter)
        assert [
            e["params"].get("DataDiskIds") for e in creates(w) if e["params"]["InstanceId"] == A
        ] == [["disk-dbdata01"]] * 2
        state = w.state()
        assert check_invariants(state, initial, disk_alerts=alerted) == []
        # had the warning not been alerted, the checker would name the slots
        silent = check_invariants(state, initial, disk_alerts=set())
        assert {v.rule for v in silent} == {"disk_left_out_silently"}


def test_system_only_sends_no_data_disks(tmp_path: Path) -> None:
    spec = fleet(instances=({"id": A, "data_disks": [DB_DISK]},))
    with world(tmp_path, spec, policy(ids=[A], disks="system")) as w:
        alerter = RecordingAlerter()
        assert run(w, hour(1), alerter).ok
        [made] = creates(w)
        assert "DataDiskIds" not in made["params"]
        assert usages(image(w, made["ImageIds"][0])) == [("SYSTEM_DISK", 50)]
        assert not alerter.warnings  # the policy asked for the system disk only


def test_rotation_deletes_the_snapshots_with_the_image(tmp_path: Path) -> None:
    spec = fleet(instances=({"id": A, "data_disks": [DB_DISK, LOG_DISK]},))
    with world(tmp_path, spec, policy(ids=[A], keep_last=1)) as w:
        initial = w.state()
        for n in (1, 2, 3):
            assert run(w, hour(n)).ok
        deletes = [e for e in w.writes() if e["action"] == "DeleteImages"]
        assert len(deletes) == 2
        assert all(e["params"]["DeleteBindedSnap"] is True for e in deletes)
        region = w.state()["regions"][REGION]
        assert region["leftover_snapshots"] == []
        [kept] = region["images"]
        assert len(kept["SnapshotSet"]) == 3
        violations = check_invariants(w.state(), initial, disk_alerts=set())
        assert violations == [], format_violations(violations)


def test_an_image_holding_fewer_disks_than_asked_is_reported(tmp_path: Path) -> None:
    old = managed(A, T0, "img-shortone")
    old["tags"] = {**old["tags"], TAG_DISKS: "disk-dbdata01+disk-dblogs01"}
    spec = fleet(instances=({"id": A, "data_disks": [DB_DISK, LOG_DISK]},), images=[old])
    with world(tmp_path, spec, policy("db", ids=[A], keep_last=3)) as w:
        alerter = RecordingAlerter()
        assert run(w, hour(1), alerter).ok
        [warning] = [f for f in alerter.warnings if f.action == "disks"]
        assert (warning.policy, warning.instance) == ("db", A)
        assert "img-shortone" in warning.message
        assert "holds 0 of the 2 data disks" in warning.message


def test_a_copy_of_a_whole_machine_image_holds_every_disk(tmp_path: Path) -> None:
    spec = two_regions()
    spec["regions"][REGION]["instances"] = [{"id": A, "data_disks": [DB_DISK]}]
    copying = policy(ids=[A], copies=[{"region": DEST}])
    with world(tmp_path, spec, copying) as w:
        assert run(w, hour(1)).ok
        assert run(w, hour(1) + timedelta(minutes=1)).ok  # the copy of the NORMAL image
        dest = w.state()["regions"][DEST]["images"]
        assert dest, "the copy was made"
        assert usages(dest[0]) == [("SYSTEM_DISK", 50), ("DATA_DISK", 200)]


def test_a_refused_copy_says_why(tmp_path: Path) -> None:
    spec = two_regions(whole_machine={"sync": "refused"})
    spec["regions"][REGION]["instances"] = [{"id": A, "data_disks": [DB_DISK]}]
    copying = policy(ids=[A], copies=[{"region": DEST}])
    with world(tmp_path, spec, copying) as w:
        run(w, hour(1))
        alerter = RecordingAlerter()
        report = run(w, hour(1) + timedelta(minutes=1), alerter)
        assert not report.ok
        [error] = [f for f in alerter.errors if f.action == "SyncImages"]
        assert error.tencent_code == "InvalidParameter.InstanceImageNotSupport"
        assert "does not copy whole-machine images" in error.message
        assert "disks: system" in error.message


def test_consistency_modes_image_the_whole_machine(tmp_path: Path) -> None:
    spec = fleet(
        instances=({"id": A, "data_disks": [DB_DISK]}, {"id": B, "data_disks": [LOG_DISK]})
    )
    powered_off = policy("db", ids=[A], consistency="force_poweroff")
    stopped = policy("logs", ids=[B], consistency="stop_start")
    with world(tmp_path, spec, powered_off, stopped) as w:
        assert run(w, hour(1)).ok
        made = {e["params"]["InstanceId"]: e["params"] for e in creates(w)}
        assert made[A]["ForcePoweroff"] == "true"
        assert made[A]["DataDiskIds"] == ["disk-dbdata01"]
        assert made[B]["DataDiskIds"] == ["disk-dblogs01"]
        actions = [e["action"] for e in w.writes() if B in e.get("InstanceIds", [])]
        assert actions[:5] == [
            "TagResources",
            "StopInstances",
            "CreateImage",
            "StartInstances",
            "UnTagResources",
        ]
        assert w.instance_state(B) in ("RUNNING", "STARTING")
        # force_poweroff: marked before its create; still running after it, so only unmarked
        actions = [e["action"] for e in w.writes() if A in e.get("InstanceIds", [])]
        assert actions == ["TagResources", "CreateImage", "UnTagResources"]
        assert w.instance_state(A) == "RUNNING"


class DetachingClient(CloudClient):
    """A client whose first ``DescribeInstances`` is followed by a disk detach: the run's
    inventory lists a disk the instance no longer has when ``CreateImage`` is sent."""

    def __init__(self, w: World, disk_id: str) -> None:
        base = w.client()
        # the same transport and the same STS identity reader (GetCallerIdentity is
        # signed for the sts service, not through the cvm transport)
        super().__init__(
            base.transport, retry_policy=QUICK_RETRIES, identity_reader=base._identity_reader
        )
        self._world, self._disk_id, self._detached = w, disk_id, False

    def list_instances(self, region: str, ids: Any = (), tags: Any = None) -> Any:
        found = super().list_instances(region, ids, tags)
        if not self._detached:
            self._detached = True
            change_disks(self._world, {"instance_id": A, "detach": self._disk_id})
        return found


def test_a_disk_detached_during_the_run_is_read_again_not_a_failed_slot(tmp_path: Path) -> None:
    spec = fleet(instances=({"id": A, "data_disks": [DB_DISK, LOG_DISK]},))
    with world(tmp_path, spec, policy(ids=[A])) as w:
        alerter = RecordingAlerter()
        report = run_once(w.setup(), DetachingClient(w, "disk-dblogs01"), alerter, now=hour(1))
        assert report.ok, report.errors
        attempts = [
            (e["result"], e["params"].get("DataDiskIds"))
            for e in w.writes()
            if e["action"] == "CreateImage"
        ]
        assert attempts == [
            (
                "InvalidParameter.DataDiskNotBelongSpecifiedInstance",
                ["disk-dbdata01", "disk-dblogs01"],
            ),
            ("ok", ["disk-dbdata01"]),
        ]
        assert not alerter.errors


def test_a_refusal_at_the_snapshot_quota_is_an_alerted_slot(tmp_path: Path) -> None:
    spec = fleet(
        instances=({"id": A, "data_disks": [DB_DISK]},),
        whole_machine={"snapshot_quota_per_disk": 2},
    )
    with world(tmp_path, spec, policy("db", ids=[A], keep_last=3)) as w:
        assert run(w, hour(1)).ok and run(w, hour(2)).ok
        alerter = RecordingAlerter()
        report = run(w, hour(3), alerter)
        assert not report.ok
        [error] = [f for f in alerter.errors if f.action == "CreateImage"]
        assert (error.policy, error.instance, error.tencent_code) == (
            "db",
            A,
            "LimitExceeded.SnapshotQuota",
        )
        assert len(w.images()) == 2  # the backups that exist are untouched
