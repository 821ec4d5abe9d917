"""Part 1: the invariant checker catches each broken rule on a hand-made history.

Each test drives a real ``EmulatorCore`` on a ``ManualClock`` the way a buggy client would
(or edits a state document where the emulator itself refuses the bad act) and asserts the
checker names exactly the broken rule; the same history without the bad act is clean.
"""

from __future__ import annotations

import contextlib
import copy
import socket
import struct
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cvmkeeper.core.naming import image_description, image_name, image_tags
from cvmkeeper.emulator.clock import ManualClock
from cvmkeeper.emulator.core import ApiError, ConnectionFault, EmulatorCore
from cvmkeeper.emulator.fleet import FleetSpec
from cvmkeeper.emulator.invariants import (
    RULES,
    Violation,
    check_invariants,
    check_restore_untouched,
    format_violations,
)
from cvmkeeper.emulator.server import running_emulator
from executor.world import REGION, A, B, fleet, managed, unmanaged
from reliability import figures

T0 = datetime(2026, 3, 1, tzinfo=UTC)
#: seconds past every lag switch of the profiles (visibility, tags, deletion: at most 1.2 s
#: in ``pessimistic``), for a history that re-uses a deleted image's name or counts images
#: after their deletion settled; harmless under ``documented`` (no lag)
LAGS = 5
caught: set[str] = set()


def core_for(**fleet_options: Any) -> tuple[EmulatorCore, ManualClock, dict[str, Any]]:
    """A core at T0 + 3h, seeded from ``fleet(...)``, and its initial state document."""
    clock = ManualClock(T0 + timedelta(hours=3))
    fleet_options.setdefault("create_seconds", 60)
    core = EmulatorCore(FleetSpec.from_mapping(fleet(**fleet_options)), clock)
    return core, clock, core.state()


def create(core: EmulatorCore, instance: str, hour: int) -> str:
    """CreateImage exactly as cvmkeeper sends it, for slot T0 + ``hour``."""
    slot = T0 + timedelta(hours=hour)
    tags = image_tags(("hourly",), instance, slot)
    params = {
        "InstanceId": instance,
        "ImageName": image_name(instance, slot),
        "ImageDescription": image_description(("hourly",), slot),
        "TagSpecification": [
            {"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    }
    return str(core.call("CreateImage", REGION, params)["ImageId"])


def delete(core: EmulatorCore, *image_ids: str, snapshots: bool = True) -> None:
    """DeleteImages (with ``DeleteBindedSnap`` as cvmkeeper sends it, unless ``snapshots``
    is false); the emulator's refusal (if any) is part of the history."""
    with contextlib.suppress(ApiError):
        core.call(
            "DeleteImages", REGION, {"ImageIds": list(image_ids), "DeleteBindedSnap": snapshots}
        )


def rules(state: Mapping[str, Any], initial: Mapping[str, Any]) -> list[str]:
    """The rules broken, recorded for the summary line."""
    found = check_invariants(state, initial)
    figures.add("1", runs=1)
    return sorted({v.rule for v in found})


def expect(rule: str, state: Mapping[str, Any], initial: Mapping[str, Any]) -> None:
    broken = rules(state, initial)
    assert broken == [rule], format_violations(check_invariants(state, initial))
    caught.add(rule)
    figures.add("1", rules_caught=1)


def old(instance: str, hours: range) -> list[dict[str, Any]]:
    return [
        managed(instance, T0 + timedelta(hours=h), f"img-{instance[4:8]}{h:04d}") for h in hours
    ]


def test_a_clean_history_has_no_violation() -> None:
    core, clock, initial = core_for(images=[*old(A, range(2)), unmanaged("img-hand0001", "g")])
    new = create(core, A, 2)
    clock.advance(61)
    delete(core, "img-aaaa0000")
    core.call("StopInstances", REGION, {"InstanceIds": [B]})
    clock.advance(1)
    core.call("StartInstances", REGION, {"InstanceIds": [B]})
    clock.advance(1)
    state = core.state()
    assert new in {i["ImageId"] for i in state["regions"][REGION]["images"]}
    assert rules(state, initial) == []


def test_deleting_an_unmanaged_image_is_caught() -> None:
    core, _, initial = core_for(images=[unmanaged("img-hand0001", "golden")])
    delete(core, "img-hand0001")
    expect("unmanaged_touched", core.state(), initial)


def test_an_image_whose_name_parses_but_has_no_marker_is_unmanaged() -> None:
    look_alike = {**managed(A, T0, "img-alike001"), "tags": {}}
    core, _, initial = core_for(images=[look_alike, *old(A, range(1, 2))])
    delete(core, "img-alike001")
    expect("unmanaged_touched", core.state(), initial)


def test_going_over_the_quota_at_any_moment_is_caught() -> None:
    # The emulator refuses a create over its quota, so the documents claim a quota of 2
    # for a region that briefly held 3 images (two of them deleted again afterwards).
    core, clock, initial = core_for()
    first, second = create(core, A, 0), create(core, B, 0)
    clock.advance(61)
    create(core, A, 1)
    clock.advance(61)
    delete(core, first)
    clock.advance(LAGS)  # under delete_lag_seconds the deleted image counts until DELETED
    state = core.state()
    assert {i["ImageId"] for i in state["regions"][REGION]["images"]} >= {second}
    assert len(state["regions"][REGION]["images"]) == 2
    for document in (state, initial):
        document["regions"][REGION]["quota"] = 2
    expect("quota_exceeded", state, initial)


def test_a_create_sent_into_a_full_quota_is_caught_even_when_refused() -> None:
    # the region is full (two of two); a create of a new name is sent anyway (refused for
    # the quota); re-sending a name the region holds (refused for the name) is not counted
    core, clock, initial = core_for(quota=2)
    create(core, A, 0)
    create(core, B, 0)
    clock.advance(61)
    with contextlib.suppress(ApiError):
        create(core, A, 0)
    assert rules(core.state(), initial) == []
    with pytest.raises(ApiError, match="ImageQuotaLimitExceeded"):
        create(core, A, 1)
    expect("create_into_full_quota", core.state(), initial)


def test_deleting_the_newest_normal_image_is_caught_and_an_older_one_is_not() -> None:
    core, _, initial = core_for(images=old(A, range(3)))
    delete(core, "img-aaaa0001")
    assert rules(core.state(), initial) == []
    delete(core, "img-aaaa0002")
    expect("newest_normal_deleted", core.state(), initial)


def test_the_newest_is_by_slot_not_by_creation_time() -> None:
    late = {**managed(A, T0, "img-aaaa0000"), "created_time": "2026-03-01T02:30:00Z"}
    core, _, initial = core_for(images=[late, *old(A, range(1, 2))])
    delete(core, "img-aaaa0001")  # slot 01:00 is the newest, though created earlier
    expect("newest_normal_deleted", core.state(), initial)


def test_asking_to_delete_a_creating_image_is_caught_even_when_refused() -> None:
    core, _, initial = core_for(images=old(A, range(1)))
    new = create(core, A, 1)
    delete(core, new)  # InvalidImageId.IncorrectState
    state = core.state()
    assert state["history"][-1]["result"] == "InvalidImageId.IncorrectState"
    expect("busy_deleted", state, initial)


def test_a_shared_image_really_deleted_is_caught() -> None:
    # The emulator refuses to delete a shared image; the initial document says shared.
    core, _, initial = core_for(images=old(A, range(2)))
    initial = copy.deepcopy(initial)
    initial["regions"][REGION]["shared_image_ids"] = ["img-aaaa0000"]
    delete(core, "img-aaaa0000")
    expect("shared_deleted", core.state(), initial)


def test_a_slot_made_again_after_its_backup_existed_is_caught() -> None:
    core, clock, initial = core_for(images=old(A, range(1)))
    first = create(core, A, 1)
    clock.advance(61)
    create(core, A, 2)
    clock.advance(61)
    delete(core, first)  # expired by retention: fine
    clock.advance(LAGS)  # its name is taken while it is DELETING (delete_lag_seconds)
    assert rules(core.state(), initial) == []
    create(core, A, 1)  # the expired slot made again: a duplicate over time
    expect("duplicate_slot", core.state(), initial)


def test_a_failed_image_cleaned_up_may_be_made_again() -> None:
    # a CREATEFAILED image of slot 01:00, deleted, then the slot made again: allowed
    failed_fleet = fleet(create_seconds=60)
    failed_fleet["timing"]["create_failed_probability"] = 1.0
    clock = ManualClock(T0 + timedelta(hours=3))
    core = EmulatorCore(FleetSpec.from_mapping(failed_fleet), clock)
    initial = core.state()
    first = create(core, A, 1)
    clock.advance(61)
    delete(core, first)
    clock.advance(LAGS)  # its name is taken while it is DELETING (delete_lag_seconds)
    create(core, A, 1)
    clock.advance(61)
    state = core.state()
    made = [e["to"] for e in state["history"] if e["action"] == "_transition"]
    assert [to for to in made if to != "DELETED"] == ["CREATEFAILED", "CREATEFAILED"]
    assert rules(state, initial) == []


def test_a_second_image_of_a_live_slot_is_caught() -> None:
    # The emulator's unique names prevent it; a document from a cloud that did not.
    core, _, initial = core_for()
    create(core, A, 1)
    state = core.state()
    twin = copy.deepcopy(state["history"][-1])
    twin["seq"] += 1
    twin["ImageIds"] = ["img-twin0001"]
    state["history"].append(twin)
    state["regions"][REGION]["images"].append(
        {**state["regions"][REGION]["images"][0], "ImageId": "img-twin0001"}
    )
    expect("duplicate_slot", state, initial)


def test_an_instance_stopped_and_never_started_is_caught() -> None:
    core, clock, initial = core_for()
    core.call("StopInstances", REGION, {"InstanceIds": [A]})
    clock.advance(2)
    expect("not_restarted", core.state(), initial)


def test_an_instance_that_was_stopped_before_is_not_ours_to_start() -> None:
    core, clock, initial = core_for(instances=({"id": A, "state": "STOPPED"}, {"id": B}))
    create(core, A, 0)
    clock.advance(61)
    assert rules(core.state(), initial) == []


def test_a_history_that_lacks_an_entry_is_reported() -> None:
    core, _, initial = core_for(images=old(A, range(2)))
    delete(core, "img-aaaa0000")
    state = core.state()
    state["history"] = [e for e in state["history"] if e["action"] != "DeleteImages"]
    expect("history_gap", state, initial)


def test_only_entries_after_the_initial_document_are_replayed() -> None:
    core, clock, _ = core_for()
    create(core, A, 0)
    clock.advance(61)
    later = core.state()  # a checkpoint in the middle of a longer history
    delete(core, *[i["ImageId"] for i in later["regions"][REGION]["images"]])
    assert rules(core.state(), later) == ["newest_normal_deleted"]


def test_violations_read_well() -> None:
    text = str(Violation("quota_exceeded", REGION, 7, "11 images in a region whose quota is 10"))
    assert (
        text == "quota_exceeded in ap-guangzhou (history #7): 11 images in a region whose "
        "quota is 10"
    )
    assert format_violations([]) == "no violations"


def test_a_delete_that_leaves_the_snapshots_behind_is_caught() -> None:
    core, _, initial = core_for(images=old(A, range(3)))
    delete(core, "img-aaaa0000", snapshots=False)
    state = core.state()
    assert len(state["regions"][REGION]["leftover_snapshots"]) == 1  # still there, billed
    expect("orphaned_snapshots", state, initial)


def test_the_same_delete_with_its_snapshots_is_clean() -> None:
    core, _, initial = core_for(images=old(A, range(3)))
    delete(core, "img-aaaa0000")
    state = core.state()
    assert state["regions"][REGION]["leftover_snapshots"] == []
    assert rules(state, initial) == []


def test_a_data_disk_left_out_without_an_alert_is_caught() -> None:
    disks = [{"id": "disk-data000a", "size": 200}, {"id": "disk-data000b", "size": 20}]
    core, clock, initial = core_for(instances=({"id": A, "data_disks": disks}, {"id": B}))
    slot = T0 + timedelta(hours=0)
    tags = image_tags(("hourly",), A, slot)
    core.call(
        "CreateImage",
        REGION,
        {
            "InstanceId": A,
            "ImageName": image_name(A, slot),
            "DataDiskIds": ["disk-data000a"],
            "ImageDescription": image_description(("hourly",), slot),
            "TagSpecification": [
                {"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ],
        },
    )
    clock.advance(61)
    state = core.state()
    found = check_invariants(state, initial, disk_alerts=set())
    assert [v.rule for v in found] == ["disk_left_out_silently"], format_violations(found)
    assert "disk-data000b" in found[0].message
    caught.add("disk_left_out_silently")
    # alerted (or a policy asking for fewer disks): not a violation; unchecked without the set
    assert check_invariants(state, initial, disk_alerts={A}) == []
    assert check_invariants(state, initial) == []


def test_a_due_slot_without_a_normal_image_or_an_alert_is_caught() -> None:
    core, clock, initial = core_for(images=old(A, range(2)))
    create(core, A, 2)  # made and NORMAL: fine without an alert
    clock.advance(61)
    state = core.state()
    made, missed = T0 + timedelta(hours=2), T0 + timedelta(hours=3)
    due = [(REGION, A, made), (REGION, B, missed), ("ap-nowhere", A, missed)]
    found = check_invariants(state, initial, due=due)
    assert [(v.rule, v.region) for v in found] == [
        ("slot_missed_silently", REGION),
        ("slot_missed_silently", "ap-nowhere"),
    ], format_violations(found)
    assert B in found[0].message
    caught.add("slot_missed_silently")
    # each missed slot named by an alert: not a violation; unchecked without ``due``
    alerted = {(REGION, B, missed), ("ap-nowhere", A, missed)}
    assert check_invariants(state, initial, due=due, alerted=alerted) == []
    assert check_invariants(state, initial) == []


def launch_drill(core: EmulatorCore, image_id: str, *, drill: bool = True) -> str:
    """RunInstances as a drill sends it (tagged cvmkeeper:drill unless ``drill`` is false)."""
    tags = [{"Key": "cvmkeeper:drill", "Value": "hourly"}] if drill else []
    params = {
        "ImageId": image_id,
        "Placement": {"Zone": f"{REGION}-1"},
        "TagSpecification": [
            {"ResourceType": "instance", "Tags": [*tags, {"Key": "x", "Value": "y"}]}
        ],
    }
    return str(core.call("RunInstances", REGION, params)["InstanceIdSet"][0])


def test_a_drill_instance_never_terminated_is_caught() -> None:
    core, clock, initial = core_for(images=old(A, range(1)))
    kept = launch_drill(core, "img-aaaa0000")
    launch_drill(core, "img-aaaa0000", drill=False)  # a restore's instance: not a drill
    done = launch_drill(core, "img-aaaa0000")
    clock.advance(5)
    core.call("TerminateInstances", REGION, {"InstanceIds": [done]})
    clock.advance(5)
    expect("drill_not_terminated", core.state(), initial)
    assert kept in format_violations(check_invariants(core.state(), initial))
    core.call("TerminateInstances", REGION, {"InstanceIds": [kept]})
    clock.advance(5)
    assert rules(core.state(), initial) == []


def test_restore_changing_or_deleting_an_image_is_caught() -> None:
    core, clock, before = core_for(images=old(A, range(3)))
    launch_drill(core, "img-aaaa0002", drill=False)
    clock.advance(5)
    assert check_restore_untouched(before, core.state()) == []
    delete(core, "img-aaaa0000")
    found = check_restore_untouched(before, core.state())
    assert {v.rule for v in found} == {"restore_changed_image"}
    assert any("DeleteImages was sent" in v.message for v in found)
    assert any("img-aaaa0000 is gone" in v.message for v in found)
    caught.add("restore_changed_image")


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_is_exercised_by_a_test_above(rule: str) -> None:
    # runs last in this module: every rule the checker knows was caught at least once
    assert rule in caught


def test_the_emulator_counts_the_faults_it_injects_by_kind(tmp_path: Any) -> None:
    core, _, _ = core_for()
    core.set_faults({"DescribeImages": {"InternalError": 1.0}, "CreateImage": {"reset": 1.0}})
    for _ in range(3):
        with contextlib.suppress(ApiError):
            core.call("DescribeImages", REGION, {})
    with contextlib.suppress(ConnectionFault):
        core.call("CreateImage", REGION, {"InstanceId": A, "ImageName": "x"})
    assert core.state()["injected"] == {"InternalError": 3, "reset": 1}
    core.save(tmp_path / "state.json")
    loaded = EmulatorCore.load(tmp_path / "state.json", ManualClock(), core.fleet)
    assert loaded.state()["injected"] == {"InternalError": 3, "reset": 1}
    core.reset()
    assert core.state()["injected"] == {}


def test_a_client_that_goes_away_leaves_no_traceback_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with running_emulator(fleet(latency_ms=300)) as emu:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", emu.port)) as sock:
                sock.sendall(
                    b"POST / HTTP/1.0\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.5)  # the answers are written (and fail) after the 300 ms latency
    assert emu.core.state()["errors"], "the requests reached the emulator"
    assert "Traceback" not in capsys.readouterr().err
