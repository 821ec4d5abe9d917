"""Copies under the worst plausible cloud (issue #18), end to end over real HTTP.

The fleet switches say what SyncImages does where Tencent's documentation is silent:
``sync_copies_tags: false`` and ``sync_copies_description: false`` (a copy inherits
neither), ``sync_images_per_call: one`` (more than one ``ImageIds`` is refused) and
``sync_disallowed_pairs`` (a region pair that cannot copy). cvmkeeper must still own its
copies (it tags them through the Tag API, and recognises them by name and source until
then), rotate them by the destination's retention within its quota, never touch an
unmanaged image, and name a refused pair once per run.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.core.naming import MARKER_TAG, TAG_COPY_FROM, TAG_INSTANCE, image_name
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from executor.world import (
    DEST,
    REGION,
    T0,
    A,
    copying,
    hour,
    managed,
    replay_peaks,
    run,
    two_regions,
    unmanaged,
    world,
)

PESSIMISTIC_SYNC = {
    "sync_copies_tags": False,
    "sync_copies_description": False,
    "sync_images_per_call": "one",
}


def tags_of(image: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in image.get("Tags") or []}


def dest_copies(w: Any) -> list[dict[str, Any]]:
    return [i for i in w.state()["regions"][DEST]["images"] if i["ImageName"].endswith(A[4:])]


@pytest.mark.slow
def test_twelve_slots_rotate_untagged_copies_within_the_destination_quota(
    tmp_path: Path,
) -> None:
    spec = two_regions(
        quota=4,
        dest_quota=6,
        source_images=[unmanaged("img-handsrc", "gold")],
        dest_images=[unmanaged("img-handdst", "dr-gold")],
        **PESSIMISTIC_SYNC,
    )
    with world(tmp_path, spec, copying(keep_last=3, copy_keep_last=5)) as w:
        initial = w.state()
        alerter = RecordingAlerter()
        for slot in range(12):
            report = run(w, hour(slot), alerter)
            assert report.ok, (report.errors, report.copies)
            [copy] = report.copies
            assert (copy.status, copy.image_state) == ("copied", "NORMAL")
        assert w.image_names(DEST) == {"dr-gold"} | {
            image_name(A, T0 + timedelta(hours=h)) for h in range(7, 12)
        }
        assert replay_peaks(w, {REGION: 1, DEST: 1}) == {REGION: 4, DEST: 6}
        syncs = [e for e in w.writes() if e["action"] == "SyncImages"]
        assert len(syncs) == 12 and all(len(e["params"]["ImageIds"]) == 1 for e in syncs)
        for image in dest_copies(w):  # the cloud gave them nothing: cvmkeeper tagged them
            tags = tags_of(image)
            assert image["ImageDescription"] == ""
            assert tags[MARKER_TAG] == "true" and tags[TAG_INSTANCE] == A
            assert tags[TAG_COPY_FROM] == REGION
        deleted = {i for e in w.writes() if e["action"] == "DeleteImages" for i in e["ImageIds"]}
        assert not deleted & {"img-handsrc", "img-handdst"}
        violations = check_invariants(w.state(), initial)
        assert violations == [], format_violations(violations)
        assert alerter.errors == []
        assert {f.action for f in alerter.warnings} <= {"quota"}


def test_a_copy_whose_tagging_failed_is_recognised_by_its_source_and_tagged_next_run(
    tmp_path: Path,
) -> None:
    spec = two_regions(dest_quota=3, **PESSIMISTIC_SYNC)
    with world(tmp_path, spec, copying(keep_last=3, copy_keep_last=2)) as w:
        w.emu.core.set_faults({"TagResources": {"InternalError": 1.0}})
        alerter = RecordingAlerter()
        first = run(w, hour(0), alerter)
        assert first.ok  # the copy exists; its tags are a warning, not a failed backup
        assert [f.action for f in alerter.warnings] == ["TagResources"]
        [bare] = dest_copies(w)
        assert tags_of(bare) == {}
        w.emu.core.set_faults({})
        second = run(w, hour(1))
        assert second.ok
        tagged = {i["ImageName"]: tags_of(i) for i in dest_copies(w)}
        assert tagged[bare["ImageName"]][TAG_COPY_FROM] == REGION  # repaired
        for slot in (2, 3):
            assert run(w, hour(slot)).ok
        # copy retention keeps 2: the copy tagged late rotated like the others
        assert w.image_names(DEST) == {image_name(A, T0 + timedelta(hours=h)) for h in (2, 3)}


@pytest.mark.parametrize("code", ["InvalidRegion.Unavailable", "UnsupportedOperation.Region"])
def test_a_disallowed_region_pair_is_one_error_per_run_naming_policy_source_and_destination(
    tmp_path: Path, code: str
) -> None:
    earlier = [managed(A, T0 + timedelta(hours=h), f"img-old0000{h}") for h in (1, 2)]
    spec = two_regions(
        source_images=earlier, sync_disallowed_pairs=[[REGION, DEST, code]], **PESSIMISTIC_SYNC
    )
    with world(tmp_path, spec, copying(keep_last=3, copy_keep_last=3)) as w:
        for attempt in range(2):
            alerter = RecordingAlerter()
            report = run(w, hour(3, minute=1 + attempt), alerter)
            assert [o.status for o in report.outcomes] == ["created" if not attempt else "exists"]
            assert sorted(c.status for c in report.copies) == ["failed", "skipped", "skipped"]
            assert not report.ok and not report.policy_ok("hourly")
            [error] = alerter.errors
            assert (error.region, error.action, error.policy) == (DEST, "SyncImages", "hourly")
            assert error.tencent_code == code
            assert f"the cloud refuses copies from {REGION} to {DEST}" in error.message
            assert "policy hourly" in error.message
        syncs = [e for e in w.writes() if e["action"] == "SyncImages"]
        assert len(syncs) == 2 and all(e["result"] == code for e in syncs)  # one per run
        assert w.image_names(DEST) == set()
