"""The record of created images (``executor.created``): the file and its reconciliation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cvmkeeper.core.inventory import Image, ImageState, Inventory
from cvmkeeper.core.naming import MARKER_TAG, MARKER_VALUE
from cvmkeeper.executor.created import (
    RECORD_NAME,
    CreatedEntry,
    CreatedImages,
    CreatedRecord,
    reconcile,
)

REGION = "ap-guangzhou"
NOW = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)


def entry(image_id: str, minutes_ago: float = 1) -> CreatedEntry:
    return CreatedEntry(REGION, image_id, f"name-{image_id}", NOW - timedelta(minutes=minutes_ago))


def listed(image_id: str, tags: dict[str, str] | None = None) -> Image:
    return Image(image_id, f"name-{image_id}", ImageState.NORMAL, NOW, REGION, tags=tags or {})


def test_the_file_keeps_entries_per_region_and_forgets_them(tmp_path: Path) -> None:
    record = CreatedRecord(tmp_path / "state")
    assert record.entries(REGION) == []
    assert not (tmp_path / "state").exists()  # reading nothing creates nothing
    record.add([entry("img-1"), entry("img-2"), CreatedEntry("ap-shanghai", "img-3", "n", NOW)])
    again = CreatedRecord(tmp_path / "state")
    assert sorted(e.image_id for e in again.entries(REGION)) == ["img-1", "img-2"]
    again.forget(REGION, ["img-1"])
    assert [e.image_id for e in record.entries(REGION)] == ["img-2"]
    assert [e.image_id for e in record.entries("ap-shanghai")] == ["img-3"]


def test_a_broken_or_linked_file_is_not_followed_and_reads_empty(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / RECORD_NAME).write_text("{not json")
    assert CreatedRecord(state).entries(REGION) == []
    (state / RECORD_NAME).unlink()
    target = tmp_path / "elsewhere.json"
    target.write_text(
        '{"images": [{"region": "ap-guangzhou", "image_id": "img-x", '
        '"name": "n", "created_at": "2026-11-27T00:00:00+00:00"}]}'
    )
    (state / RECORD_NAME).symlink_to(target)
    assert CreatedRecord(state).entries(REGION) == []  # O_NOFOLLOW: refused, logged


def test_reconcile_sorts_entries_by_what_the_listing_shows() -> None:
    inventory = Inventory(
        REGION,
        10,
        (listed("img-whole", {MARKER_TAG: MARKER_VALUE}), listed("img-bare"), listed("img-old")),
        (),
    )
    result = reconcile(
        inventory,
        [
            entry("img-whole"),
            entry("img-bare"),
            entry("img-old", minutes_ago=11),  # listed, still without tags after the grace
            entry("img-coming"),  # not listed, young
            entry("img-lost", minutes_ago=11),  # not listed, past the grace
        ],
        NOW,
        GRACE,
    )
    # ours by the record while untagged, past the grace too (then warned about)
    assert result.inventory.provisional == frozenset({"img-bare", "img-old"})
    assert result.inventory.unlisted == ("img-coming",)
    assert result.inventory.used == 4 and result.inventory.free == 6
    assert [e.image_id for e in result.seen] == ["img-whole"]
    assert [e.image_id for e in result.lost] == ["img-lost"]
    assert [e.image_id for e in result.untagged] == ["img-old"]


def test_a_run_writes_only_what_it_leaves_unseen(tmp_path: Path) -> None:
    record = CreatedRecord(tmp_path / "state")
    run = CreatedImages(record, REGION, now=NOW, grace=GRACE, writable=True)
    run.remember("img-seen", "name-img-seen")
    run.remember("img-bare", "name-img-bare")
    tagged = listed("img-seen", {MARKER_TAG: MARKER_VALUE})
    run.apply(Inventory(REGION, 10, (tagged, listed("img-bare")), ()))
    assert not (tmp_path / "state").exists()  # nothing written while the run goes on
    run.flush()
    assert [e.image_id for e in record.entries(REGION)] == ["img-bare"]
    preview = CreatedImages(record, REGION, now=NOW, grace=GRACE, writable=False)
    preview.apply(Inventory(REGION, 10, (listed("img-bare", {MARKER_TAG: MARKER_VALUE}),), ()))
    assert [e.image_id for e in record.entries(REGION)] == ["img-bare"]  # a preview writes not
    later = CreatedImages(record, REGION, now=NOW, grace=GRACE, writable=True)
    later.apply(Inventory(REGION, 10, (listed("img-bare", {MARKER_TAG: MARKER_VALUE}),), ()))
    assert record.entries(REGION) == []  # seen whole by a later run: forgotten


def test_a_killed_runs_intent_makes_its_untagged_image_ours_until_its_tags_show(
    tmp_path: Path,
) -> None:
    # rule 6: killed after sending CreateImage, before it learned (or stored) the id
    record = CreatedRecord(tmp_path / "state")
    killed = CreatedImages(record, REGION, now=NOW, grace=GRACE, writable=True)
    killed.intend("name-img-new")
    assert [(e.image_id, e.name) for e in record.entries(REGION)] == [("", "name-img-new")]
    # the rerun, seconds later: the image is listed by its name, its tags not yet
    rerun = CreatedImages(record, REGION, now=NOW, grace=GRACE, writable=True)
    bare = Inventory(REGION, 10, (listed("img-new"), listed("img-other")), ())
    assert rerun.apply(bare).inventory.provisional == frozenset({"img-new"})
    rerun.flush()
    assert [e.name for e in record.entries(REGION)] == ["name-img-new"]  # still untagged
    # once its tags show, the intent is settled and dropped
    whole = Inventory(REGION, 10, (listed("img-new", {MARKER_TAG: MARKER_VALUE}),), ())
    later = CreatedImages(record, REGION, now=NOW, grace=GRACE, writable=True)
    assert later.apply(whole).inventory.provisional == frozenset()
    assert record.entries(REGION) == []


def test_an_intent_never_listed_is_dropped_quietly_after_the_grace(tmp_path: Path) -> None:
    record = CreatedRecord(tmp_path / "state")
    CreatedImages(record, REGION, now=NOW, grace=GRACE, writable=True).intend("name-img-x")
    empty = Inventory(REGION, 10, (), ())
    young = CreatedImages(record, REGION, now=NOW, grace=GRACE, writable=True).apply(empty)
    assert (young.lost, young.inventory.unlisted) == ((), ())
    assert len(record.entries(REGION)) == 1  # young: the create may still show
    late = NOW + GRACE + timedelta(minutes=1)
    old = CreatedImages(record, REGION, now=late, grace=GRACE, writable=True).apply(empty)
    assert old.lost == ()  # the create may never have reached the cloud: nothing lost
    assert record.entries(REGION) == []


def test_a_run_drops_its_own_intents_when_it_ends(tmp_path: Path) -> None:
    record = CreatedRecord(tmp_path / "state")
    run = CreatedImages(record, REGION, now=NOW, grace=GRACE, writable=True)
    run.intend("name-img-made")
    run.remember("img-made", "name-img-made")
    seen = listed("img-made", {MARKER_TAG: MARKER_VALUE})
    run.apply(Inventory(REGION, 10, (seen,), ()))
    run.flush()
    assert record.entries(REGION) == []
    preview = CreatedImages(record, REGION, now=NOW, grace=GRACE, writable=False)
    preview.intend("name-img-dry")  # a dry run writes no intent
    assert not record.entries(REGION)
