"""Cross-region copies end to end: run_once against a two-region emulator over real HTTP.

Each test serves a fleet with a source region (the instances) and a destination region,
writes real config and policy files, runs ``run_once`` with the real SDK, and checks the
emulator's state and write history (what really happened on the wire): each region's image
count replayed write by write against its quota, one ``SyncImages`` per image, never an
unmanaged image deleted, and what the ``RecordingAlerter`` received.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.cloud.retry import RetryPolicy
from cvmkeeper.core.naming import image_name
from executor.world import (
    DEST,
    REGION,
    T0,
    A,
    copying,
    hour,
    replay_peaks,
    run,
    two_regions,
    unmanaged,
    world,
)


@pytest.mark.slow
def test_twelve_slots_end_with_each_regions_retention_and_never_exceed_a_quota(
    tmp_path: Path,
) -> None:
    spec = two_regions(
        quota=4,
        dest_quota=6,
        source_images=[unmanaged("img-handsrc", "gold")],
        dest_images=[unmanaged("img-handdst", "dr-gold")],
    )
    with world(tmp_path, spec, copying(keep_last=3, copy_keep_last=5)) as w:
        alerter = RecordingAlerter()
        for slot in range(12):
            report = run(w, hour(slot), alerter)
            assert report.ok, (report.errors, report.copies)
            [copy] = report.copies
            assert (copy.status, copy.image_state) == ("copied", "NORMAL")
            assert copy.image_name == image_name(A, T0 + timedelta(hours=slot))
            assert (copy.region, copy.source_region) == (DEST, REGION)
        assert w.image_names(REGION) == {"gold"} | {
            image_name(A, T0 + timedelta(hours=h)) for h in (9, 10, 11)
        }
        assert w.image_names(DEST) == {"dr-gold"} | {
            image_name(A, T0 + timedelta(hours=h)) for h in range(7, 12)
        }
        assert replay_peaks(w, {REGION: 1, DEST: 1}) == {REGION: 4, DEST: 6}
        syncs = [e for e in w.writes() if e["action"] == "SyncImages"]
        assert len(syncs) == 12
        assert all(
            len(e["params"]["ImageIds"]) == 1
            and e["params"]["DestinationRegions"] == [DEST]
            and e["params"]["ImageSetRequired"] is True
            for e in syncs
        )
        assert all(e["result"] == "ok" for e in w.writes())  # never a refused delete
        deleted = {i for e in w.writes() if e["action"] == "DeleteImages" for i in e["ImageIds"]}
        assert not deleted & {"img-handsrc", "img-handdst"}
        copies_now = [
            i for i in w.state()["regions"][DEST]["images"] if i["ImageName"] != "dr-gold"
        ]
        tags = {t["Key"]: t["Value"] for t in copies_now[0]["Tags"]}
        assert tags["cvmkeeper:managed"] == "true" and tags["cvmkeeper:instance"] == A
        # only the quota headroom check speaks up (both regions run full, by design)
        assert alerter.errors == []
        assert {f.action for f in alerter.warnings} <= {"quota"}


def test_destination_at_quota_with_only_unmanaged_images_skips_with_an_error(
    tmp_path: Path,
) -> None:
    hand = [unmanaged(f"img-hand{n}", f"dr-{n}") for n in range(2)]
    spec = two_regions(dest_quota=2, dest_images=hand)
    with world(tmp_path, spec, copying(keep_last=3, copy_keep_last=3)) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(0), alerter)
        assert not report.ok
        [copy] = report.copies
        assert copy.status == "skipped" and "region at quota (2 of 2 images)" in (copy.error or "")
        assert [o.status for o in report.outcomes] == ["created"]  # the source is fine
        assert w.image_names(DEST) == {"dr-0", "dr-1"}
        assert [e["action"] for e in w.writes()] == ["CreateImage"]
        [error] = alerter.errors
        assert (error.region, error.action, error.policy) == (DEST, "SyncImages", "hourly")
        assert error.extra["source_region"] == REGION
        assert not report.policy_ok("hourly")


def test_a_lost_sync_answer_is_adopted_and_a_rerun_leaves_one_copy(tmp_path: Path) -> None:
    spec = two_regions(faults={"SyncImages": {"lost_response": 1.0}})
    with world(tmp_path, spec, copying(keep_last=3, copy_keep_last=3)) as w:
        no_retry = w.client()
        no_retry.retry_policy = RetryPolicy(
            max_attempts=1, base_seconds=0.01, cap_seconds=0.01, deadline_seconds=5
        )
        alerter = RecordingAlerter()
        first = run(w, hour(0), alerter, client=no_retry)  # as if killed after the call
        [copy] = first.copies
        assert copy.status == "failed" and alerter.errors[0].region == DEST
        second = run(w, hour(0, minute=5))  # the fault is still there: never called again
        assert second.ok and second.copies == ()
        third = run(w, hour(0, minute=9))  # with retries, a lost answer is adopted
        assert third.ok
        name = image_name(A, T0)
        assert [i["ImageName"] for i in w.state()["regions"][DEST]["images"]] == [name]
        syncs = [e for e in w.writes() if e["action"] == "SyncImages"]
        assert len(syncs) == 1 and syncs[0].get("lost_response") is True
        # next slot: the lost answer is adopted by name within the call, one copy per slot
        fourth = run(w, hour(1))
        assert [(c.status, c.image_state) for c in fourth.copies] == [("adopted", "NORMAL")]
        assert sorted(i["ImageName"] for i in w.state()["regions"][DEST]["images"]) == [
            name,
            image_name(A, T0 + timedelta(hours=1)),
        ]


def test_rotating_the_source_away_leaves_its_copies(tmp_path: Path) -> None:
    with world(tmp_path, two_regions(), copying(keep_last=1, copy_keep_last=3)) as w:
        for slot in range(3):
            assert run(w, hour(slot)).ok
        slots = [image_name(A, T0 + timedelta(hours=h)) for h in range(3)]
        assert w.image_names(REGION) == {slots[2]}
        assert w.image_names(DEST) == set(slots)
        client = w.client()
        client.delete_images(REGION, [i["ImageId"] for i in w.state()["regions"][REGION]["images"]])
        again = run(w, hour(2, minute=30))  # remakes the slot; copies were never touched
        assert again.ok and w.image_names(DEST) == set(slots)
        dest_deletes = [
            e for e in w.writes() if e["action"] == "DeleteImages" and e["region"] == DEST
        ]
        assert dest_deletes == []


def test_an_unknown_destination_region_is_alerted_with_that_region(tmp_path: Path) -> None:
    with world(tmp_path, two_regions(), copying(3, 3, region="ap-nowhere")) as w:
        alerter = RecordingAlerter()
        report = run(w, hour(0), alerter)
        assert [o.status for o in report.outcomes] == ["created"]
        assert not report.ok and not report.policy_ok("hourly")
        [error] = alerter.errors
        assert error.region == "ap-nowhere" and error.tencent_code == "UnsupportedRegion"


def test_dry_run_plans_the_copies_without_writing(tmp_path: Path) -> None:
    source = [
        {
            "id": "img-src00000",
            "name": image_name(A, T0),
            "state": "NORMAL",
            "description": "cvmkeeper:hourly 2026-11-27T00:00Z",
            "tags": {
                "cvmkeeper:managed": "true",
                "cvmkeeper:policy": "hourly",
                "cvmkeeper:instance": A,
                "cvmkeeper:slot": "2026-11-27T00:00Z",
            },
            "instance_id": A,
            "created_time": "2026-11-27T00:00:00Z",
        }
    ]
    spec = two_regions(source_images=source)
    with world(tmp_path, spec, copying(keep_last=3, copy_keep_last=3)) as w:
        report = run(w, hour(0, minute=30), dry_run=True)
        [plan] = report.copy_plans[DEST]
        [step] = plan.copies
        assert (step.source_image_id, step.image_name) == ("img-src00000", image_name(A, T0))
        assert w.writes() == []
