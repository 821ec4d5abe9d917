"""The state machine in-process on a ManualClock: lifecycles, history, determinism, files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cvmkeeper.emulator.clock import ManualClock
from cvmkeeper.emulator.core import ApiError, ConnectionFault, EmulatorCore
from cvmkeeper.emulator.fleet import FleetSpec
from emulator.sdk import GZ, SH, base_fleet


def make_core(**overrides: Any) -> tuple[EmulatorCore, ManualClock]:
    clock = ManualClock()
    fleet = base_fleet(**overrides)
    fleet["timing"] = {
        "create_seconds": 60,
        "stop_seconds": 10,
        "start_seconds": 5,
        "sync_seconds": 30,
        **overrides.get("timing", {}),
    }
    return EmulatorCore(FleetSpec.from_mapping(fleet), clock), clock


def image_state(core: EmulatorCore, image_id: str, region: str = GZ) -> str:
    found = core.call("DescribeImages", region, {"ImageIds": [image_id]})
    return str(found["ImageSet"][0]["ImageState"])


def test_create_becomes_normal_exactly_after_create_seconds() -> None:
    core, clock = make_core()
    image_id = core.call("CreateImage", GZ, {"InstanceId": "ins-6pb6lrmy", "ImageName": "a"})[
        "ImageId"
    ]
    clock.advance(59.9)
    assert image_state(core, image_id) == "CREATING"
    clock.advance(0.1)
    assert image_state(core, image_id) == "NORMAL"
    transition = core.state()["history"][-1]
    assert transition["action"] == "_transition"
    assert (transition["from"], transition["to"], transition["ImageIds"]) == (
        "CREATING",
        "NORMAL",
        [image_id],
    )
    assert transition["time"] == "2026-01-01T00:01:00.000Z"
    assert transition["InstanceIds"] == ["ins-6pb6lrmy"]


def test_create_failed_probability_one_always_fails() -> None:
    core, clock = make_core(timing={"create_failed_probability": 1.0})
    image_id = core.call("CreateImage", GZ, {"InstanceId": "ins-6pb6lrmy", "ImageName": "f"})[
        "ImageId"
    ]
    clock.advance(60)
    assert image_state(core, image_id) == "CREATEFAILED"
    # a failed image still counts against the quota and can be deleted
    core.call("DeleteImages", GZ, {"ImageIds": [image_id]})


def test_stop_and_start_transitions_and_history() -> None:
    core, clock = make_core()
    core.call("StopInstances", GZ, {"InstanceIds": ["ins-6pb6lrmy"]})
    clock.advance(10)
    core.call("StartInstances", GZ, {"InstanceIds": ["ins-6pb6lrmy"]})
    clock.advance(5)
    history = core.state()["history"]
    assert [(h["action"], h.get("to")) for h in history] == [
        ("StopInstances", None),
        ("_transition", "STOPPED"),
        ("StartInstances", None),
        ("_transition", "RUNNING"),
    ]
    assert [h["seq"] for h in history] == [1, 2, 3, 4]
    assert all(h["InstanceIds"] == ["ins-6pb6lrmy"] for h in history)


def test_state_gives_only_the_history_after_a_seq_when_asked() -> None:
    core, clock = make_core()
    core.call("StopInstances", GZ, {"InstanceIds": ["ins-6pb6lrmy"]})
    clock.advance(10)
    core.call("StartInstances", GZ, {"InstanceIds": ["ins-6pb6lrmy"]})
    clock.advance(5)
    whole = core.state()
    since_two = core.state(history_since=2)
    assert [h["seq"] for h in since_two["history"]] == [3, 4]
    assert since_two["history"] == whole["history"][2:]
    assert {k: v for k, v in since_two.items() if k != "history"} == {
        k: v for k, v in whole.items() if k != "history"
    }
    assert core.state(history_since=4)["history"] == []
    since_two["history"][0]["params"]["InstanceIds"].append("edited")  # a copy, not the log
    assert core.state(history_since=2)["history"] == whole["history"][2:]
    with pytest.raises(ValueError, match="history_since"):
        core.state(history_since=-1)


def test_sync_marks_source_syncing_and_copies_creating() -> None:
    core, clock = make_core()
    body = core.call(
        "SyncImages",
        GZ,
        {"ImageIds": ["img-golden01"], "DestinationRegions": [SH], "ImageSetRequired": True},
    )
    [copy] = body["ImageSet"]
    assert image_state(core, "img-golden01") == "SYNCING"
    assert image_state(core, copy["ImageId"], SH) == "CREATING"
    clock.advance(30)
    assert image_state(core, "img-golden01") == "NORMAL"
    assert image_state(core, copy["ImageId"], SH) == "NORMAL"


def test_sync_respects_destination_quota() -> None:
    fleet = base_fleet()
    fleet["regions"][SH]["quota"] = 0
    core = EmulatorCore(FleetSpec.from_mapping(fleet), ManualClock())
    with pytest.raises(ApiError) as info:
        core.call("SyncImages", GZ, {"ImageIds": ["img-golden01"], "DestinationRegions": [SH]})
    assert info.value.code == "ImageQuotaLimitExceeded"


def test_seeded_faults_are_repeatable() -> None:
    def outcomes() -> list[str]:
        core, _ = make_core(
            seed=42,
            faults={
                "DescribeImageQuota": {"InternalError": 0.3, "reset": 0.2, "lost_response": 0.2}
            },
            rate_limits={"DescribeImageQuota": 0},
        )
        results = []
        for _ in range(40):
            try:
                core.call("DescribeImageQuota", GZ, {})
                results.append("ok")
            except ApiError as error:
                results.append(error.code)
            except ConnectionFault as fault:
                results.append(f"fault:{fault.committed}")
        return results

    first = outcomes()
    assert first == outcomes()
    assert {"ok", "InternalError", "fault:False", "fault:True"} <= set(first)


def test_rate_limit_window_slides_on_the_injected_clock() -> None:
    core, clock = make_core(rate_limits={"CreateImage": 2})
    for instance_id, name in (("ins-stopped1", "r1"), ("ins-2kd9x0qa", "r2")):
        core.call("CreateImage", GZ, {"InstanceId": instance_id, "ImageName": name})
    with pytest.raises(ApiError) as info:
        core.call("CreateImage", GZ, {"InstanceId": "ins-6pb6lrmy", "ImageName": "r3"})
    assert info.value.code == "RequestLimitExceeded"
    clock.advance(1.0)
    assert core.call("CreateImage", GZ, {"InstanceId": "ins-6pb6lrmy", "ImageName": "r3"})


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    core, clock = make_core()
    image_id = core.call("CreateImage", GZ, {"InstanceId": "ins-6pb6lrmy", "ImageName": "saved"})[
        "ImageId"
    ]
    core.call("StopInstances", GZ, {"InstanceIds": ["ins-2kd9x0qa"]})
    path = tmp_path / "state.json"
    core.save(path)
    assert "test-secret-key" not in path.read_text()
    loaded = EmulatorCore.load(path, clock, core.fleet)
    assert loaded.state() == core.state()
    clock.advance(60)
    assert image_state(loaded, image_id) == "NORMAL"
    assert loaded.state()["regions"][GZ]["instances"][1]["InstanceState"] == "STOPPED"
    # ids keep coming from the saved generator: no collision with existing ones
    again = loaded.call("CreateImage", GZ, {"InstanceId": "ins-6pb6lrmy", "ImageName": "b"})
    assert again["ImageId"] != image_id


def test_reset_returns_to_the_fleet() -> None:
    core, _ = make_core()
    core.call("DeleteImages", GZ, {"ImageIds": ["img-golden01"]})
    core.set_faults({"faults": {"CreateImage": {"reset": 1.0}}})
    core.reset()
    state = core.state()
    assert "img-golden01" in {i["ImageId"] for i in state["regions"][GZ]["images"]}
    assert state["faults"] == {}
    assert state["history"] == []
    assert state["calls"] == {}
