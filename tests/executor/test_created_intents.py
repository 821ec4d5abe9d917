"""When a killed run's intent counts against the quota, and when it expires.

``executor.created.reconcile``: an intent (a name, no id) whose image is not listed is
live within ``api.visibility_grace`` of its record (``Inventory.intents``: one used image
each) and expires after it (dropped, no longer counted, warned once by the run).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.core.inventory import Image, ImageState, Inventory
from cvmkeeper.core.naming import MARKER_TAG, MARKER_VALUE, image_name
from cvmkeeper.executor import run_once
from cvmkeeper.executor.created import CreatedEntry, CreatedRecord, reconcile
from executor.world import REGION, T0, A, fleet, policy, world

NOW = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
GRACE = timedelta(minutes=10)


def intent(name: str, minutes_ago: float) -> CreatedEntry:
    return CreatedEntry(REGION, "", name, NOW - timedelta(minutes=minutes_ago))


def image(image_id: str, name: str, tags: dict[str, str] | None = None) -> Image:
    return Image(image_id, name, ImageState.NORMAL, NOW, REGION, tags=tags or {})


def test_an_unlisted_intent_counts_within_the_grace_and_expires_after() -> None:
    inventory = Inventory(REGION, 3, (image("img-hand0001", "golden"),), ())
    entries = [
        intent("young", 9),  # not listed, within the grace: live
        intent("old", 11),  # not listed, past the grace: expired
        intent("bare", 1),  # listed without tags: provisional, counted once as listed
        intent("whole", 1),  # listed with the marker: settled
    ]
    listing = Inventory(
        REGION,
        3,
        (
            *inventory.images,
            image("img-bare", "bare"),
            image("img-whole", "whole", {MARKER_TAG: MARKER_VALUE}),
        ),
        (),
    )
    result = reconcile(listing, entries, NOW, GRACE)
    assert result.inventory.intents == ("young",)
    assert result.inventory.used == 4 and result.inventory.free == 0
    assert [e.name for e in result.expired] == ["old"]
    assert {e.name for e in result.seen} == {"whole", "old"}  # both dropped from the record
    assert result.lost == ()
    # exactly at the grace it still counts (the grace is inclusive, like an id's)
    at_edge = reconcile(inventory, [intent("edge", 10)], NOW, GRACE)
    assert (at_edge.inventory.intents, at_edge.expired) == (("edge",), ())


def test_an_expired_intent_is_warned_about_once_and_stops_counting(tmp_path: Path) -> None:
    """A run past the grace of a killed run's intent whose image never showed: a warning
    naming it, and the create it held back is made (the quota is free in truth)."""
    name = image_name(A, T0)
    spec = fleet(quota=1, instances=[{"id": A}])
    with world(tmp_path, spec, policy(ids=[A]), quota=1, visibility_grace="10m") as w:
        CreatedRecord(tmp_path / "state").add([CreatedEntry(REGION, "", name, T0)])
        within = run_once(w.setup(), w.client(), RecordingAlerter(), now=T0 + timedelta(minutes=5))
        [outcome] = within.outcomes
        assert outcome.status == "skipped" and "an earlier run sent" in (outcome.error or "")
        assert not [e for e in w.writes() if e["action"] == "CreateImage"]

        later = T0 + timedelta(minutes=11)
        report = run_once(w.setup(), w.client(), RecordingAlerter(), now=later)
        expired = [m for m in report.warnings if "no longer counted against the quota" in m]
        assert len(expired) == 1 and name in expired[0]
        [outcome] = report.outcomes
        assert outcome.status == "created", report.errors
        again = run_once(w.setup(), w.client(), RecordingAlerter(), now=later)
        assert not [m for m in again.warnings if "no longer counted" in m]
        # the intent is gone (the new image may stay recorded by id under a tag lag)
        assert [
            e for e in CreatedRecord(tmp_path / "state").entries(REGION) if not e.image_id
        ] == []
