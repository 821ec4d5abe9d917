"""Silent misses the planner must not allow (issue 19, rule 7): future-dated images, images
of a removed policy, managed images in a state the tool never cleans."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from test_planner import A, B, backup, deleted, hour, inventory, plan_of

from cvmkeeper.core.inventory import ImageState
from cvmkeeper.core.naming import TAG_POLICY, image_name
from cvmkeeper.core.plan import WarningKind
from cvmkeeper.core.planner import PlannerSettings
from cvmkeeper.core.policy import Retention
from support.builders import policy


def test_a_future_dated_image_does_not_cover_the_due_slot_and_is_warned() -> None:
    # made at hour 0 by a host whose clock was a day ahead: its name says hour 24
    ahead = replace(backup(A, hour(24)), created_time=hour(0))
    inv = inventory(10, [backup(A, hour(0)), ahead], instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=2)], {"p": hour(2)}, hour(2))
    assert [c.image_name for c in plan.creates] == [image_name(A, hour(2))]
    assert ahead.image_id not in deleted(plan)
    future = [n for n in plan.notices if n.kind is WarningKind.FUTURE]
    assert len(future) == 1
    assert ahead.image_id in future[0].message and future[0].instance_id == A
    assert future[0].policies == ("p",)


def test_images_of_a_removed_policy_are_held_and_warned() -> None:
    # "gone" kept 3 daily images of A; "p" (keep_last 1) still targets A
    gone = [
        replace(backup(A, hour(n)), tags={**backup(A, hour(n)).tags, TAG_POLICY: "gone"})
        for n in range(3)
    ]
    inv = inventory(10, [*gone, backup(A, hour(3))], instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {}, hour(4))
    assert not deleted(plan)
    held = [n for n in plan.notices if n.kind is WarningKind.RETENTION]
    assert len(held) == 1 and "'gone'" in held[0].message and "3 image(s)" in held[0].message
    decisions = {d.image_id: d for d in plan.decisions}
    assert all(decisions[i.image_id].keep for i in gone)
    assert any("'gone'" in r for r in decisions[gone[0].image_id].reasons)


def test_images_of_a_removed_policy_follow_the_orphans_setting_with_a_warning() -> None:
    gone = [
        replace(backup(A, hour(n)), tags={**backup(A, hour(n)).tags, TAG_POLICY: "gone"})
        for n in range(3)
    ]
    inv = inventory(10, [*gone, backup(A, hour(3))], instances=(A,))
    settings = PlannerSettings(orphan_retention=Retention(keep_last=1))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {}, hour(4), settings)
    assert set(deleted(plan)) == {i.image_id for i in gone}
    held = [n for n in plan.notices if n.kind is WarningKind.RETENTION]
    assert len(held) == 1 and "'gone'" in held[0].message


def test_an_image_of_a_policy_still_configured_is_not_held() -> None:
    inv = inventory(10, [backup(A, hour(n)) for n in range(3)], instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {}, hour(4))
    assert len(deleted(plan)) == 2
    assert not [n for n in plan.notices if n.kind is WarningKind.RETENTION]


def test_a_managed_image_the_tool_never_cleans_is_warned() -> None:
    stuck = backup(A, hour(0), ImageState.IMPORTFAILED)
    inv = inventory(10, [stuck, backup(B, hour(0))], instances=(A, B))
    plan = plan_of(inv, [policy(ids=(A, B), keep_last=1)], {}, hour(1))
    notes = [n for n in plan.notices if n.kind is WarningKind.STATE]
    assert len(notes) == 1
    assert stuck.image_id in notes[0].message and "IMPORTFAILED" in notes[0].message
    assert notes[0].instance_id == A


def test_an_old_image_is_not_future_dated() -> None:
    inv = inventory(10, [backup(A, hour(0) - timedelta(days=400))], instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {}, hour(1))
    assert not [n for n in plan.notices if n.kind is WarningKind.FUTURE]


def test_a_lookalike_made_by_another_identity_is_a_warning_and_never_deleted() -> None:
    forged = replace(
        backup(A, hour(0), image_id="img-forged01"), creator="100000000666", creator_trusted=False
    )
    inv = inventory(10, [forged, backup(A, hour(1)), backup(A, hour(2))], instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {}, hour(3))
    assert "img-forged01" not in deleted(plan)
    [note] = [n for n in plan.notices if n.kind is WarningKind.OWNERSHIP]
    assert "img-forged01" in note.message and "100000000666" in note.message
    assert (note.policies, note.instance_id) == (("p",), A)


def test_a_future_dated_image_does_not_strip_the_real_newest_of_its_protection() -> None:
    # quota full: B's due slot may evict, but never A's newest real backup (rule 3), even
    # though A's future-dated image sorts after it by the slot in its name
    ahead = replace(backup(A, hour(48)), created_time=hour(-5))
    newest = backup(A, hour(1))
    inv = inventory(3, [ahead, newest, backup(B, hour(1))], instances=(A, B))
    plan = plan_of(
        inv,
        [policy(ids=(A,), keep_last=1), policy("q", ids=(B,), keep_last=1)],
        {"q": hour(2)},
        hour(2),
    )
    assert newest.image_id not in deleted(plan)
    assert ahead.image_id not in deleted(plan)
