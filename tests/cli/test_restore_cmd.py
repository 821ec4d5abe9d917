"""``cvmkeeper restore`` over real HTTP with the official SDK against the emulator: the
restore point by image, slot and time; dry runs write nothing; refusals; in place with the
instance always started again, even when ResetInstance fails."""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.cli import cli
from cvmkeeper.emulator.invariants import check_invariants, check_restore_untouched
from cvmkeeper.executor import run_once
from executor.world import REGION, T0, A, B, fleet, managed, policy, unmanaged, world

OLD, MID, NEW = T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)
IMAGES = (
    managed(A, OLD, "img-old00001"),
    managed(A, MID, "img-mid00001"),
    managed(A, NEW, "img-new00001", state="CREATING"),
    managed(B, NEW, "img-bbb00001"),
    unmanaged("img-hand0001", "golden"),
)


def spec(**extra: Any) -> dict[str, Any]:
    """A fleet with A's three images (the newest still CREATING), one of B, one by hand.

    The seeded CREATING image must stay CREATING for the whole test: with the fast default
    (0.2 s) it became NORMAL after a few slow calls on a loaded CI machine, and the newest
    NORMAL image changed under the test. No test here creates an image, so an hour is safe.
    """
    return fleet(
        instances=({"id": A, "zone": f"{REGION}-3", "instance_type": "S5.LARGE8"}, {"id": B}),
        images=IMAGES,
        create_seconds=3600,
        **extra,
    )


def restore(w: Any, *args: str) -> Result:
    """Run ``cvmkeeper restore`` against the world's config."""
    return CliRunner().invoke(cli, ["restore", "--config", str(w.config_path), *args])


def launched(w: Any) -> list[dict[str, Any]]:
    """The RunInstances calls that launched something."""
    return [e for e in w.writes() if e["action"] == "RunInstances" and e["result"] == "ok"]


def image_writes(w: Any) -> list[dict[str, Any]]:
    """Every call that could delete or change an image."""
    return [e for e in w.writes() if e["action"] in ("CreateImage", "DeleteImages", "SyncImages")]


def test_new_restores_the_newest_normal_image_placed_like_the_source(tmp_path: Path) -> None:
    with world(tmp_path, spec(), policy(ids=[A, B])) as w:
        before = w.state()
        result = restore(w, A, "--json")
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert document["image_id"] == "img-mid00001"  # img-new00001 is still CREATING
        assert document["chosen_because"] == "newest NORMAL image"
        new_id = document["instance_id"]
        assert document["state"] == "RUNNING" and document["private_ips"]
        instance = next(
            i for i in w.state()["regions"][REGION]["instances"] if i["InstanceId"] == new_id
        )
        assert instance["Placement"]["Zone"] == f"{REGION}-3"
        assert instance["InstanceType"] == "S5.LARGE8"
        assert instance["ImageId"] == "img-mid00001"
        assert instance["LoginSettings"]["KeepImageLogin"] == "TRUE"
        assert {t["Key"]: t["Value"] for t in instance["Tags"]} == {
            "cvmkeeper:restored-from": "img-mid00001"
        }
        assert image_writes(w) == []  # never deletes or changes an image
        text = restore(w, A)
        assert text.exit_code == 0, text.output
        assert "launched ins-" in text.stdout and "reach it at 10." in text.stdout
        assert len(launched(w)) == 2  # a second restore is a second instance
        assert check_restore_untouched(before, w.state()) == []
        assert check_invariants(w.state(), before) == []


def test_restore_point_by_image_slot_and_time(tmp_path: Path) -> None:
    with world(tmp_path, spec(), policy(ids=[A, B])) as w:

        def chosen(*args: str) -> str:
            result = restore(w, A, "--dry-run", "--json", *args)
            assert result.exit_code == 0, result.output
            return str(json.loads(result.stdout)["image_id"])

        assert chosen("--image", "img-old00001") == "img-old00001"
        assert chosen("--slot", "2026-11-27T00:00Z") == "img-old00001"
        assert chosen("--as-of", "2026-11-27T00:59Z") == "img-old00001"
        assert chosen("--as-of", "2026-11-27T05:00Z") == "img-mid00001"
        assert chosen() == "img-mid00001"


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    with world(tmp_path, spec(), policy(ids=[A, B])) as w:
        result = restore(w, A, "--dry-run")
        assert result.exit_code == 0, result.output
        assert "launch a new instance" in result.stdout
        assert "zone ap-guangzhou-3 (the source instance's)" in result.stdout
        assert "dry run: RunInstances with DryRun passed" in result.stdout
        in_place = restore(w, A, "--in-place", "--dry-run")
        assert in_place.exit_code == 0, in_place.output
        assert "ResetInstance" in in_place.stdout and "start ins-aaaaaaaa again" in in_place.stdout
        writes = w.writes()
        assert [e["action"] for e in writes] == ["RunInstances"]
        assert writes[0]["params"]["DryRun"] is True and writes[0]["result"] == "DryRunOperation"
        assert len(w.state()["regions"][REGION]["instances"]) == 2
        assert w.instance_state(A) == "RUNNING"
        assert not (tmp_path / "state").exists()  # no journal entry, no local state either


def test_refusals_are_clear_and_exit_2(tmp_path: Path) -> None:
    sold_out = {"sold_out_types": ["SA2.TINY"]}
    with world(tmp_path, spec(launch=sold_out), policy(ids=[A, B])) as w:
        cases = {
            ("--image", "img-hand0001"): "was not made by cvmkeeper",
            ("--image", "img-bbb00001"): f"is a backup of {B}, not of {A}",
            ("--image", "img-new00001"): "is CREATING; only a NORMAL image can be restored",
            ("--image", "img-nothere1"): "does not exist in ap-guangzhou",
            ("--slot", "2026-11-26T00:00Z"): "has no image of slot 2026-11-26T00:00Z",
            ("--as-of", "2026-11-26T00:00Z"): "has no NORMAL image made at or before",
            ("--zone", "ap-shanghai-2"): "zone ap-shanghai-2 is not in region ap-guangzhou",
            ("--in-place",): "pass --yes (no terminal to ask)",
            ("--image", "img-old00001", "--slot", "2026-11-27T00:00Z"): "at most one of",
        }
        for args, message in cases.items():
            result = restore(w, A, *args)
            assert result.exit_code == 2, (args, result.output)
            assert message in result.stderr, (args, result.stderr)
            assert "Traceback" not in result.output
        gone = restore(w, "ins-zzzzzzzz")
        assert gone.exit_code == 2 and "is not in ap-guangzhou" in gone.stderr
        elsewhere = restore(w, A, "--region", "ap-nowhere-1")
        assert elsewhere.exit_code == 2
        assert "region ap-nowhere-1: UnsupportedRegion" in elsewhere.stderr
        capacity = restore(w, A, "--instance-type", "SA2.TINY")
        assert capacity.exit_code == 1
        assert "no capacity: ResourceInsufficient.SpecifiedInstanceType" in capacity.stderr
        assert launched(w) == [] and image_writes(w) == []
        assert w.instance_state(A) == "RUNNING"


def made_and_listed(w: Any, *instances: str) -> None:
    """One run makes an image of each of ``instances``; return once each is listed with its
    tags (the pessimistic profile lists a new image, then its tags, up to 1.2 s late), so
    that restore can recognise it. Bounded: 50 looks, 0.1 s apart."""
    run_once(w.setup(), w.client(), RecordingAlerter(), now=T0.replace(hour=1, minute=1))
    client = w.client()
    for _ in range(50):
        listed = [i for i in client.list_images(REGION) if "cvmkeeper:disks" in i.tags]
        if len(listed) >= len(instances):
            return
        time.sleep(0.1)
    raise AssertionError(f"the images of {instances} were never listed with their tags")


def test_in_place_resets_and_starts_the_instance_again(tmp_path: Path) -> None:
    with world(tmp_path, spec(), policy(ids=[A, B])) as w:
        before = w.state()
        result = restore(w, A, "--in-place", "--yes", "--image", "img-old00001", "--json")
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert document["reset"] is True and document["restarted"] is True
        assert document["state"] in ("STARTING", "RUNNING")
        actions = [(e["action"], e["result"]) for e in w.writes()]
        assert actions == [
            ("TagResources", "ok"),  # the cloud mark (rule 9 across hosts)
            ("StopInstances", "ok"),
            ("ResetInstance", "ok"),
            ("StartInstances", "ok"),
            ("UnTagResources", "ok"),
        ]
        instance = next(
            i for i in w.state()["regions"][REGION]["instances"] if i["InstanceId"] == A
        )
        assert instance["ImageId"] == "img-old00001"
        assert check_restore_untouched(before, w.state()) == []
        assert check_invariants(w.state(), before) == []  # rule 9: started again
        journal = json.loads((tmp_path / "state" / "stopped-instances.json").read_text())
        assert journal["stopped"] == []  # journaled before the stop, cleared after the start


def test_in_place_starts_the_instance_again_when_reset_instance_fails(tmp_path: Path) -> None:
    faults = {"ResetInstance": {"InternalError": 1.0}}
    with world(tmp_path, spec(faults=faults), policy(ids=[A, B])) as w:
        result = restore(w, A, "--in-place", "--yes")
        assert result.exit_code == 1, result.output
        assert "ResetInstance of ins-aaaaaaaa failed" in result.stderr
        assert "it was started again" in result.stderr
        actions = [e["action"] for e in w.writes()]
        assert actions[:2] == ["TagResources", "StopInstances"]
        assert actions[-2:] == ["StartInstances", "UnTagResources"]
        assert "ResetInstance" in actions
        w.emu.core.set_faults({})
        assert w.instance_state(A) in ("STARTING", "RUNNING")


def test_in_place_refuses_a_whole_machine_image_unless_system_disk_only(tmp_path: Path) -> None:
    disks = ({"id": A, "data_disks": [{"id": "disk-dbdata01", "size": 200}]}, {"id": B})
    with world(tmp_path, fleet(instances=disks), policy(ids=[A])) as w:
        made_and_listed(w, A)
        refused = restore(w, A, "--in-place", "--yes")
        assert refused.exit_code == 2
        assert "holds 1 data disk snapshot(s)" in refused.stderr
        assert "the data disks are NOT rolled back" in refused.stderr
        assert "ApplySnapshot" in refused.stderr
        new = restore(w, A, "--json")
        assert new.exit_code == 0, new.output
        [disk] = json.loads(new.stdout)["plan"]["data_disks"]
        assert disk["size_gib"] == 200
        new_id = json.loads(new.stdout)["instance_id"]
        instance = next(
            i for i in w.state()["regions"][REGION]["instances"] if i["InstanceId"] == new_id
        )
        assert [d["DiskSize"] for d in instance["DataDisks"]] == [200]
        only = restore(w, A, "--in-place", "--yes", "--system-disk-only")
        assert only.exit_code == 0, only.output
        assert "warning: the image's data disk snapshots" in only.stdout
        assert "the data disks are NOT rolled back" in only.stdout


def test_a_lost_run_instances_answer_launches_one_instance(tmp_path: Path) -> None:
    faults = {"RunInstances": {"lost_response": 0.8}}  # seed 5: lost once, then answered
    with world(tmp_path, spec(faults=faults), policy(ids=[A, B])) as w:
        result = restore(w, A, "--json")
        assert result.exit_code == 0, result.output
        runs = [e for e in w.writes() if e["action"] == "RunInstances"]
        assert any(e.get("lost_response") for e in runs)  # the answer was lost, then retried
        tokens = {e["params"]["ClientToken"] for e in runs}
        assert len(tokens) == 1  # every retry carried the same ClientToken
        new = [
            i for i in w.state()["regions"][REGION]["instances"] if i["InstanceId"] not in (A, B)
        ]
        assert [i["InstanceId"] for i in new] == [json.loads(result.stdout)["instance_id"]]


def test_a_dropped_reset_is_not_taken_for_an_earlier_reset_to_the_same_image(
    tmp_path: Path,
) -> None:
    """A stopped instance already reset to the image once (an earlier restore): when the
    second restore's ResetInstance is dropped before the cloud processed it, the earlier
    reset's ``ResetInstance``/``SUCCESS`` must not be taken for this one. Taking it reported
    ``reset: true`` for a system disk that was never reset (the data the user came back for
    silently not restored)."""
    instances = ({"id": A, "state": "STOPPED"}, {"id": B})
    with world(tmp_path, fleet(instances=instances, images=IMAGES), policy(ids=[A, B])) as w:
        first = restore(w, A, "--in-place", "--yes", "--image", "img-old00001")
        assert first.exit_code == 0, first.output
        w.emu.core.set_faults({"ResetInstance": {"reset": 1.0}})
        second = restore(w, A, "--in-place", "--yes", "--image", "img-old00001", "--json")
        w.emu.core.set_faults({})
        resets = [e for e in w.writes() if e["action"] == "ResetInstance"]
        assert [e["result"] for e in resets[1:]] and all(e["result"] == "reset" for e in resets[1:])
        assert second.exit_code == 1, second.output  # no reset happened: say so
        assert "ResetInstance of ins-aaaaaaaa failed" in second.stderr


def test_a_lost_reset_answer_is_this_reset_and_is_not_sent_twice(tmp_path: Path) -> None:
    """The other side of the test above: ResetInstance carried out but its answer lost. The
    instance's new ``LatestOperationRequestId`` shows the reset is this call's, so it is
    adopted (not sent again, which the busy instance would refuse) and waited for."""
    instances = ({"id": A, "state": "STOPPED"}, {"id": B})
    with world(tmp_path, fleet(instances=instances, images=IMAGES), policy(ids=[A, B])) as w:
        first = restore(w, A, "--in-place", "--yes", "--image", "img-old00001")
        assert first.exit_code == 0, first.output
        w.emu.core.set_faults({"ResetInstance": {"lost_response": 1.0}})
        second = restore(w, A, "--in-place", "--yes", "--image", "img-old00001", "--json")
        w.emu.core.set_faults({})
        assert second.exit_code == 0, second.output
        assert json.loads(second.stdout)["reset"] is True
        resets = [e for e in w.writes() if e["action"] == "ResetInstance"]
        assert [e.get("lost_response", False) for e in resets] == [False, True]


def test_new_makes_the_data_disks_of_the_source_type_or_the_one_asked(tmp_path: Path) -> None:
    """The data disks come back as the source's type (all CLOUD_SSD here), not a fixed
    CLOUD_PREMIUM (slower, and not sold in every zone); --data-disk-type chooses; a source
    whose disks differ gets the default, with the reason and the option to choose."""
    ssd = [{"id": "disk-ssd00001", "type": "CLOUD_SSD", "size": 100}]
    local = {"id": "disk-local001", "type": "LOCAL_SSD", "size": 100}
    mixed = [*ssd, {"id": "disk-hssd0001", "type": "CLOUD_HSSD", "size": 100}]
    instances = ({"id": A, "data_disks": [*ssd, local]}, {"id": B, "data_disks": mixed})
    with world(tmp_path, fleet(instances=instances), policy(ids=[A, B])) as w:
        made_and_listed(w, A, B)

        def disk_types(*args: str) -> tuple[list[str], list[str]]:
            result = restore(w, *args, "--json")
            assert result.exit_code == 0, result.output
            document = json.loads(result.stdout)
            new = next(
                i
                for i in w.state()["regions"][REGION]["instances"]
                if i["InstanceId"] == document["instance_id"]
            )
            return [d["DiskType"] for d in new["DataDisks"]], document["plan"]["reasons"]

        types, reasons = disk_types(A)
        assert types == ["CLOUD_SSD"]
        assert any("type CLOUD_SSD (the source instance's data disks)" in r for r in reasons)
        types, reasons = disk_types(A, "--data-disk-type", "CLOUD_HSSD")
        assert types == ["CLOUD_HSSD"]
        types, reasons = disk_types(B)
        assert types == ["CLOUD_PREMIUM", "CLOUD_PREMIUM"]
        assert any("--data-disk-type to choose" in r for r in reasons)
        refused = restore(w, A, "--in-place", "--data-disk-type", "CLOUD_SSD")
        assert refused.exit_code == 2 and "are for --new" in refused.stderr


def test_a_stopped_instance_stays_stopped_when_the_reset_starts_it(tmp_path: Path) -> None:
    """Under ``reset_leaves: running`` (undocumented: the cloud may boot the instance after
    the reset) a STOPPED instance comes back RUNNING. The plan promised to leave it stopped,
    and with --system-disk-only its data disks (not rolled back) would be written by the
    restored system before the user rolls them back with the instance stopped: it is
    stopped again, and the output says so."""
    instances = ({"id": A, "state": "STOPPED"}, {"id": B})
    spec_ = fleet(instances=instances, images=IMAGES, launch={"reset_leaves": "running"})
    with world(tmp_path, spec_, policy(ids=[A, B])) as w:
        result = restore(w, A, "--in-place", "--yes", "--image", "img-old00001", "--json")
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert document["reset"] is True
        assert document["state"] in ("STOPPING", "STOPPED")
        assert any("stopped again" in p for p in document["warnings"]), document
        assert [e["action"] for e in w.writes()][-1] == "StopInstances"


def test_new_warns_before_launching_an_image_short_of_data_disks(tmp_path: Path) -> None:
    """An image tagged as asked to hold two data disks but holding none (a seeded image:
    system disk only) is restored with a warning naming the missing disks, in the text plan
    and in --json, before the launch: nobody finds them missing on the restored machine."""
    short = managed(A, OLD, "img-short001")
    short["tags"] = {**short["tags"], "cvmkeeper:disks": "disk-dbdata01+disk-dblogs01"}
    with world(tmp_path, fleet(images=[short]), policy(ids=[A, B])) as w:
        text = restore(w, A, "--dry-run")
        assert text.exit_code == 0, text.output
        assert (
            "warning: img-short001 holds 0 of the 2 data disk(s) asked for "
            "(disk-dbdata01, disk-dblogs01): the new instance lacks the others"
        ) in text.stdout
        document = json.loads(restore(w, A, "--dry-run", "--json").stdout)
        [warning] = document["plan"]["warnings"]
        assert "holds 0 of the 2 data disk(s)" in warning


def test_new_asks_for_a_system_disk_as_large_as_the_images(tmp_path: Path) -> None:
    """RunInstances makes a 50 GiB system disk unless told (models.py ``SystemDisk``); an
    image of a 100 GiB system disk is launched with ``SystemDisk.DiskSize`` 100, so the
    restored machine has the room its system had (and the cloud has no reason to refuse)."""
    instances = ({"id": A, "system_disk_size": 100}, {"id": B})
    with world(tmp_path, fleet(instances=instances), policy(ids=[A, B])) as w:
        made_and_listed(w, A, B)
        result = restore(w, A, "--json")
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert any("system disk 100 GiB (the image's" in r for r in document["plan"]["reasons"])
        [run] = launched(w)
        assert run["params"]["SystemDisk"] == {"DiskSize": 100}
        new = next(
            i
            for i in w.state()["regions"][REGION]["instances"]
            if i["InstanceId"] == document["instance_id"]
        )
        assert new["SystemDisk"]["DiskSize"] == 100
        small = json.loads(restore(w, B, "--json").stdout)
        assert "SystemDisk" not in launched(w)[-1]["params"]  # 50 GiB: the default fits
        assert small["ok"] is True
