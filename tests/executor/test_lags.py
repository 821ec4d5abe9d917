"""Runs under eventual consistency and deletion lag (issue #18), over real HTTP.

The emulator hides a new image from DescribeImages for a while
(``image_visibility_seconds``), lists it without its tags for longer
(``tag_visibility_seconds``), and keeps a deleted image listed ``DELETING`` and counted
against the quota (``delete_lag_seconds``). Twelve hourly runs on a full quota must keep
exactly the retention, never send a CreateImage into a quota that is full in truth, and
report no image as disappeared and no slot as failed; an image that never shows is
reported once its grace has passed (rule 7).
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import pytest

from cvmkeeper.cloud.retry import RetryPolicy
from cvmkeeper.core.naming import image_name
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from cvmkeeper.executor.created import RECORD_NAME
from executor.world import (
    DEST,
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
    script_faults,
    two_regions,
    world,
)

#: the lags, scaled down for tests (pessimistic values in production are seconds)
LAGS = {
    "image_visibility_seconds": 0.6,
    # shorter than three runs (each takes at least the visibility lag), so an image is
    # tagged by the time retention lets it go: one without tags is never deleted
    "tag_visibility_seconds": 1.2,
    "delete_lag_seconds": 0.6,
}
KEEP = 3
QUOTA = 2 * KEEP  # full once both instances hold their retention: every run deletes first


def names_of(w: World, instance_id: str) -> list[str]:
    """The names of the instance's images the cloud really holds (DELETING ones left out)."""
    return sorted(
        i["ImageName"]
        for i in w.images()
        if i["ImageName"].endswith(instance_id.removeprefix("ins-"))
        and i["ImageState"] != "DELETING"
    )


def test_twelve_hourly_runs_keep_the_retention_under_every_lag(tmp_path: Path) -> None:
    spec = fleet(quota=QUOTA, **LAGS)
    # runs are pinned an hour apart while the lags pass in seconds: a grace of 2h keeps the
    # last run's images young for this one, as 10 minutes do for lags of seconds
    with world(tmp_path, spec, policy(keep_last=KEEP), quota=QUOTA, visibility_grace="2h") as w:
        before = w.state()
        for n in range(12):
            report = run(w, hour(n))
            assert report.ok, (n, report.errors)
            assert [o.status for o in report.outcomes] == ["created", "created"], n
            assert report.warnings == (), n
            for instance_id in (A, B):
                wanted = [image_name(instance_id, T0 + timedelta(hours=h)) for h in range(n + 1)]
                assert names_of(w, instance_id) == sorted(wanted[-KEEP:]), (n, instance_id)
        creates = [e["result"] for e in w.writes() if e["action"] == "CreateImage"]
        assert creates == ["ok"] * 24  # never one into a quota full in truth
        violations = check_invariants(w.state(), before)
        assert violations == [], format_violations(violations)


def test_a_new_image_without_its_tags_yet_keeps_rotation_going(tmp_path: Path) -> None:
    """Tags show a minute late: the run's new image is listed untagged when the run plans
    its deletes. It is recognised by its name, its creator and the run's record, so the
    image it replaces is deleted (before: it looked unmanaged and rotation stopped, exit
    0); it is never deleted itself, and the next run, an hour later, sees it whole."""
    old = [managed(A, T0 + timedelta(hours=h), f"img-olda000{h}") for h in range(3)]
    spec = fleet(instances=[{"id": A}], images=old, tag_visibility_seconds=60)
    with world(tmp_path, spec, policy(ids=[A], keep_last=2)) as w:
        report = run(w, hour(3))
        assert report.ok, report.errors
        assert report.warnings == ()
        new = image_name(A, T0 + timedelta(hours=3))
        listed = {i.name: i for i in w.client().list_images(REGION)}
        assert listed[new].tags == {}  # still untagged after the run
        assert sorted(d.image_id for d in report.deleted) == ["img-olda0000", "img-olda0001"]
        assert sorted(w.image_names()) == sorted([image_name(A, T0 + timedelta(hours=2)), new])
        record = json.loads((tmp_path / "state" / RECORD_NAME).read_text())
        assert [e["name"] for e in record["images"]] == [new]  # until it is seen whole


def test_an_image_that_never_shows_is_reported_after_the_grace(tmp_path: Path) -> None:
    """The new image is never listed: the run waits for it through the grace, then
    reports it lost (rule 7), not 'disappeared' at the first poll."""
    spec = fleet(instances=[{"id": A}], image_visibility_seconds=3600)
    with world(tmp_path, spec, policy(ids=[A]), visibility_grace="2s") as w:
        report = run(w, hour(0))
        [outcome] = report.outcomes
        assert outcome.status == "failed"
        assert outcome.error is not None and "not listed by DescribeImages" in outcome.error
        assert "api.visibility_grace 2s" in outcome.error
        assert not [e for e in report.errors if "disappeared" in e]
        polls = w.state()["calls"]["DescribeImages"]
        assert polls > 3  # it was polled for, not given up at the first absence


def test_an_unlisted_image_counts_against_the_quota_then_is_reported(tmp_path: Path) -> None:
    """A run that does not wait leaves its image unlisted: the next run (within the grace)
    counts it against the quota instead of sending a CreateImage into a full quota; the
    run after the grace reports it lost, once."""
    spec = fleet(quota=2, instances=[{"id": A}, {"id": B}], image_visibility_seconds=3600)
    with world(tmp_path, spec, policy(ids=[A, B]), quota=2, visibility_grace="90m") as w:
        report = run(w, hour(0), wait=False)
        assert [o.status for o in report.outcomes] == ["created", "created"]
        report = run(w, hour(1))  # both slots of hour 1 find the quota full in truth
        assert [o.status for o in report.outcomes] == ["skipped", "skipped"]
        assert all(o.error and "region at quota (2 of 2" in o.error for o in report.outcomes)
        creates = [e["result"] for e in w.writes() if e["action"] == "CreateImage"]
        assert creates == ["ok", "ok"]  # none into the full quota
        report = run(w, hour(2))  # past the grace: both are reported lost
        lost = [e for e in report.errors if "not listed by DescribeImages" in e]
        assert len(lost) == 2
        report = run(w, hour(3))
        assert not [e for e in report.errors if "not listed by DescribeImages" in e]


def test_copies_under_every_lag_are_made_and_rotated(tmp_path: Path) -> None:
    """A copy is absent from the destination's listing at first and lists without its tags
    for longer; a source still untagged when the copy phase reads it is copied by the next
    run. Six runs: no copy 'disappeared' or failed, each slot is copied once, and the
    destination keeps exactly its copy retention."""
    spec = two_regions(quota=4, dest_quota=3, **LAGS)
    copies = [{"region": DEST, "retention": {"keep_last": 2}}]
    document = policy(ids=[A], keep_last=2, copies=copies)
    with world(tmp_path, spec, document, visibility_grace="2h") as w:
        before = w.state()
        copied: list[str] = []
        for n in range(6):
            report = run(w, hour(n))
            assert report.ok, (n, report.errors, report.copies)
            for copy in report.copies:
                assert (copy.status, copy.image_state) == ("copied", "NORMAL"), n
                copied.append(copy.image_name)
        slots = [image_name(A, T0 + timedelta(hours=h)) for h in range(6)]
        assert len(copied) == len(set(copied)) and set(copied) >= set(slots[:5])
        dest = {
            i["ImageName"]
            for i in w.state()["regions"][DEST]["images"]
            if i["ImageState"] != "DELETING"
        }
        assert dest == set(sorted(copied)[-2:])
        violations = check_invariants(w.state(), before)
        assert violations == [], format_violations(violations)


@pytest.mark.parametrize("order", ["duplicate_first", "mutex_first"])
def test_a_lost_create_is_adopted_though_the_image_is_not_listed_yet(
    tmp_path: Path, order: str
) -> None:
    """CreateImage's answer is lost and the new image is not listed yet (nor its tags):
    the look-up by name finds nothing, the re-send is refused (the name, or the busy
    instance), and the run looks again until the image shows: adopted, one image, no
    failure (before: the refusal ended the slot as failed)."""
    spec = fleet(instances=[{"id": A}], create_seconds=2.0, create_retry_order=order, **LAGS)
    spec["faults"] = {"CreateImage": {"lost_response": 1.0}}
    # retries that outlast the visibility delay (seeded jitter: the same waits every time)
    patient = RetryPolicy(max_attempts=8, base_seconds=0.5, cap_seconds=1.0, deadline_seconds=30)
    with world(tmp_path, spec, policy(ids=[A])) as w:
        script_faults(w.emu.core, [("CreateImage", {})])
        report = run(w, hour(0), client=w.client(patient, rng=random.Random(3)))
        assert report.ok, report.errors
        [outcome] = report.outcomes
        assert (outcome.status, outcome.image_state) == ("adopted", "NORMAL")
        named = [i for i in w.images() if i["ImageName"] == image_name(A, T0)]
        assert len(named) == 1
