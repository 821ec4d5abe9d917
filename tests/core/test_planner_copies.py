"""Cross-region copies in the pure planner: scenarios, a two-region simulated run, properties.

The destination region's planner gets the source regions' inventories and plans ``Copy``
steps like creates (quota first, expired copies early, eviction or skip); the copies are
retained by the copy retention, independently of the source. The simulated run below
carries plans out in memory across two regions and checks each region's quota after every
single write, so multi-slot scenarios are tested end to end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_planner import (
    REGION,
    A,
    B,
    QuotaExceeded,
    backup,
    deleted,
    foreign,
    hour,
    instance,
)
from test_planner import run as run_region

from cvmkeeper.core.inventory import Image, ImageState, Inventory
from cvmkeeper.core.naming import (
    MARKER_TAG,
    PIN_TAG,
    TAG_COPY_FROM,
    TAG_INSTANCE,
    copy_tags,
    image_name,
    is_managed,
)
from cvmkeeper.core.plan import Copy, Delete, Phase, Plan, Skip, Wait, check_plan
from cvmkeeper.core.planner import PlannerSettings, plan_region
from cvmkeeper.core.policy import CopyRule, OnQuotaFull, Policy, Retention
from support.builders import policy

DEST = "ap-shanghai"


def copying(
    *,
    keep_last: int = 4,
    copy_keep_last: int = 2,
    on_quota_full: OnQuotaFull = "evict",
    ids: Sequence[str] = (A,),
) -> Policy:
    """An hourly policy of REGION that copies to DEST with its own keep_last."""
    base = policy(ids=ids, keep_last=keep_last, on_quota_full=on_quota_full)
    return replace(base, copies=(CopyRule(DEST, Retention(keep_last=copy_keep_last)),))


def source(images: Sequence[Image], quota: int = 10) -> Inventory:
    """REGION with instances A and B."""
    return Inventory(REGION, quota, tuple(images), (instance(A), instance(B)))


def dest(images: Sequence[Image] = (), quota: int = 10) -> Inventory:
    """DEST with no instance of its own."""
    return Inventory(DEST, quota, tuple(images), ())


def copy_of(image: Image, state: ImageState = ImageState.NORMAL, image_id: str = "") -> Image:
    """What SyncImages leaves in DEST: same name, tags and description."""
    return replace(image, region=DEST, state=state, image_id=image_id or f"cp-{image.image_id}")


def plan_dest(
    inv: Inventory,
    policies: Sequence[Policy],
    src: Inventory | None,
    *,
    make_copies: bool = True,
    settings: PlannerSettings | None = None,
) -> Plan:
    """Plan DEST (no due slots) with REGION as the copy source, and check it."""
    sources = {REGION: src} if src is not None else {}
    result = plan_region(
        inv, policies, (), hour(100), settings, sources=sources, make_copies=make_copies
    )
    assert check_plan(inv, result, sources=sources) == []
    return result


def execute_copies(inv: Inventory, plan: Plan, src: Inventory, *, run_after: bool) -> Inventory:
    """Carry a DEST plan out in memory: copies succeed, waits end NORMAL, quota checked."""
    images = {image.image_id: image for image in inv.images}
    sources = {image.image_id: image for image in src.images}
    for step in plan.steps:
        if isinstance(step, Delete) and (step.phase is Phase.BEFORE_CREATE or run_after):
            for image_id in step.image_ids:
                del images[image_id]
        elif isinstance(step, Copy):
            if len(images) + 1 > inv.quota:
                raise QuotaExceeded(f"{step.image_name}: {len(images)} of {inv.quota}")
            made = copy_of(sources[step.source_image_id])
            images[made.image_id] = made
        elif isinstance(step, Wait):
            for image_id in step.image_ids:
                images[image_id] = replace(images[image_id], state=ImageState.NORMAL)
    return replace(inv, images=tuple(images.values()))


def run_copies(
    inv: Inventory, policies: Sequence[Policy], src: Inventory, max_rounds: int = 4
) -> tuple[Inventory, list[Plan]]:
    """The destination phase of a run: copy, wait, plan again without copies, delete."""
    plans = [plan_dest(inv, policies, src)]
    in_flight = bool(plans[0].copies or plans[0].waits)
    inv = execute_copies(inv, plans[0], src, run_after=not in_flight)
    for _ in range(max_rounds):
        if not in_flight:
            return inv, plans
        plans.append(plan_dest(inv, policies, src, make_copies=False))
        in_flight = bool(plans[-1].copies or plans[-1].waits)
        inv = execute_copies(inv, plans[-1], src, run_after=not in_flight)
    raise AssertionError(f"copies did not settle: {plans[-1].steps}")


def names(inv: Inventory) -> set[str]:
    """The image names of a region."""
    return {image.name for image in inv.images}


# --- scenarios -----------------------------------------------------------------------------


def test_a_normal_source_image_without_a_copy_is_copied_with_its_name_and_tags() -> None:
    src = source([backup(A, hour(0)), backup(A, hour(1), ImageState.CREATING)])
    plan = plan_dest(dest(), [copying()], src)
    [step] = plan.copies  # the CREATING one is not copied yet
    assert (step.source_region, step.source_image_id) == (REGION, src.images[0].image_id)
    assert step.image_name == image_name(A, hour(0))
    assert step.tags[MARKER_TAG] == "true"
    assert step.policies == ("p",)
    assert plan.waits[0].image_names == (step.image_name,)


def test_copy_exists_in_flight_or_failed() -> None:
    good = backup(A, hour(0))
    src = source([good])
    assert not plan_dest(dest([copy_of(good)]), [copying()], src).writes_anything
    waiting = plan_dest(dest([copy_of(good, ImageState.CREATING)]), [copying()], src)
    assert not waiting.copies and waiting.waits[0].image_ids == (f"cp-{good.image_id}",)
    failed = plan_dest(dest([copy_of(good, ImageState.CREATEFAILED)]), [copying()], src)
    assert len(failed.copies) == 1 and deleted(failed, Phase.BEFORE_CREATE)


def test_a_name_held_by_an_unmanaged_image_is_a_skip_with_an_error() -> None:
    good = backup(A, hour(0))
    squatter = foreign("img-hand", good.name)
    plan = plan_dest(dest([squatter]), [copying()], source([good]))
    [skip] = plan.skips
    assert skip.source_region == REGION and "does not manage" in skip.error
    assert plan.errors and not plan.deletes()


def test_destination_at_quota_with_unmanaged_images_only_skips_and_deletes_nothing() -> None:
    src = source([backup(A, hour(0))])
    full = dest([foreign(f"img-hand{n}") for n in range(3)], quota=3)
    plan = plan_dest(full, [copying()], src)
    assert not plan.copies and not plan.deletes()
    [skip] = plan.skips
    assert "not copied from ap-guangzhou: region at quota (3 of 3 images)" in skip.error
    assert plan.errors == (skip.error,)


def test_copies_at_quota_expire_the_oldest_copy_first() -> None:
    old = [backup(A, hour(h)) for h in range(3)]
    newest = backup(A, hour(3))
    full = dest([copy_of(i) for i in old], quota=3)
    plan = plan_dest(full, [copying(copy_keep_last=2)], source([*old, newest]))
    assert [c.image_name for c in plan.copies] == [newest.name]
    assert set(deleted(plan, Phase.BEFORE_CREATE)) == {f"cp-{old[0].image_id}"}


def test_eviction_makes_room_for_a_copy_with_a_warning_and_skip_mode_refuses() -> None:
    old = [backup(A, hour(h)) for h in range(2)]
    newest = backup(A, hour(2))
    full = dest([copy_of(i) for i in old], quota=2)
    evicting = plan_dest(full, [copying(copy_keep_last=3)], source([*old, newest]))
    assert set(deleted(evicting, Phase.BEFORE_CREATE)) == {f"cp-{old[0].image_id}"}
    assert any("to copy from ap-guangzhou" in w for w in evicting.warnings)
    skipping = plan_dest(
        full, [copying(copy_keep_last=3, on_quota_full="skip")], source([*old, newest])
    )
    assert not skipping.copies and skipping.skips and not skipping.deletes()


def test_only_what_the_copy_retention_keeps_is_copied() -> None:
    history = [backup(A, hour(h)) for h in range(6)]
    plan = plan_dest(dest(), [copying(keep_last=6, copy_keep_last=2)], source(history))
    assert [c.image_name for c in plan.copies] == [history[5].name, history[4].name]
    assert not plan.warnings  # older than the copies keep: nothing to report


def test_without_the_source_inventory_copies_are_held_never_deleted_or_evicted() -> None:
    old = [copy_of(backup(A, hour(h))) for h in range(4)]
    keep_one = PlannerSettings(orphan_retention=Retention(keep_last=1))
    plan = plan_dest(dest(old, quota=4), [copying(copy_keep_last=1)], None, settings=keep_one)
    assert not plan.writes_anything and plan.orphan_instance_ids == ()
    assert all(d.keep and not d.orphan for d in plan.decisions)
    assert all("its source region was not read" in d.reasons[0] for d in plan.decisions)


def test_copies_of_an_instance_no_policy_targets_any_more_are_orphans() -> None:
    old = [copy_of(backup(B, hour(h))) for h in range(3)]
    plan = plan_dest(dest(old), [copying(ids=(A,))], source([]))
    assert plan.orphan_instance_ids == (B,) and not plan.writes_anything


def test_check_plan_refuses_a_copy_of_a_source_that_is_not_normal() -> None:
    syncing = backup(A, hour(0), ImageState.SYNCING)
    bad = Copy(
        A,
        syncing.name,
        hour(0),
        REGION,
        syncing.image_id,
        ("p",),
        syncing.tags,
        syncing.description,
        "test",
    )
    broken = replace(plan_dest(dest(), [copying()], source([])), steps=(bad,))
    sources = {REGION: source([syncing])}
    assert any(
        "is not a NORMAL managed image" in v for v in check_plan(dest(), broken, sources=sources)
    )
    own = replace(bad, source_region=DEST)
    assert any(
        "from its own region" in v for v in check_plan(dest(), replace(broken, steps=(own,)))
    )


# --- a two-region run over many slots ------------------------------------------------------


def test_twelve_slots_keep_their_retention_in_each_region_and_survive_source_rotation() -> None:
    policies = [copying(keep_last=3, copy_keep_last=5, ids=(A,))]
    src, dst = source([], quota=5), dest([foreign("img-hand")], quota=6)
    for slot in range(12):
        src, _ = run_region(src, policies, [("p", hour(slot))], hour(slot))
        dst, plans = run_copies(dst, policies, src)
        assert all(p.quota == 6 and not p.errors for p in plans)
        assert len(src.images) <= 5 and len(dst.images) <= 6
    assert names(src) == {image_name(A, hour(h)) for h in (9, 10, 11)}
    # Copy retention is its own: five copies, though the source keeps three.
    assert names(dst) == {image_name(A, hour(h)) for h in range(7, 12)} | {"golden-img-hand"}
    again = plan_dest(dst, policies, src)
    assert not again.writes_anything


def test_deleting_every_source_image_leaves_the_copies() -> None:
    policies = [copying(keep_last=2, copy_keep_last=2)]
    copies = [copy_of(backup(A, hour(h))) for h in range(2)]
    plan = plan_dest(dest(copies), policies, source([]))
    assert not plan.writes_anything
    assert {d.image_id for d in plan.decisions if d.keep} == {c.image_id for c in copies}


# --- properties ----------------------------------------------------------------------------


@st.composite
def copy_scenarios(draw: st.DrawFn) -> tuple[Inventory, Inventory, list[Policy]]:
    """A source region with history, a destination with copies, strays and unmanaged images."""
    policies = [
        copying(
            keep_last=draw(st.integers(1, 4)),
            copy_keep_last=draw(st.integers(1, 4)),
            on_quota_full=draw(st.sampled_from(["evict", "skip"])),
            ids=draw(st.sampled_from([(A,), (A, B), (B,)])),
        )
    ]
    src_images: list[Image] = []
    for owner in (A, B):
        for h in range(draw(st.integers(0, 5))):
            state = draw(
                st.sampled_from(
                    (ImageState.NORMAL,) * 4 + (ImageState.SYNCING, ImageState.CREATING)
                )
            )
            src_images.append(backup(owner, hour(h), state))
    dst_images: list[Image] = []
    for image in src_images:
        if draw(st.booleans()):
            state = draw(
                st.sampled_from(
                    (ImageState.NORMAL,) * 4 + (ImageState.CREATING, ImageState.CREATEFAILED)
                )
            )
            copied = copy_of(image, state)
            if draw(st.integers(0, 5)) == 0:
                copied = replace(copied, tags={**copied.tags, PIN_TAG: "true"})
            dst_images.append(copied)
    for n in range(draw(st.integers(0, 3))):
        dst_images.append(foreign(f"img-hand{n}"))
    if src_images and draw(st.booleans()):  # a hand-made image squatting on a copy's name
        squat = draw(st.sampled_from(src_images))
        if squat.name not in {i.name for i in dst_images}:
            dst_images.append(foreign("img-squat", squat.name))
    quota = draw(st.integers(max(0, len(dst_images) - 2), len(dst_images) + 3))
    return source(src_images), dest(dst_images, quota), policies


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(copy_scenarios())
def test_destination_plans_keep_rules_1_to_5(
    scenario: tuple[Inventory, Inventory, list[Policy]],
) -> None:
    src, dst, policies = scenario
    plan = plan_dest(dst, policies, src)  # check_plan: rules 1-5, copies counted
    unmanaged = {i.image_id for i in dst.images if i.image_id.startswith("img-")}
    newest: dict[str, Image] = {}
    for image in dst.images:
        if image.image_id not in unmanaged and image.state is ImageState.NORMAL:
            owner = image.tags["cvmkeeper:instance"]
            if owner not in newest or image.name > newest[owner].name:
                newest[owner] = image
    for step in plan.deletes():
        for target in step.targets:
            assert target.image_id not in unmanaged, "rule 1"
            image = next(i for i in dst.images if i.image_id == target.image_id)
            assert image.state is not ImageState.CREATING, "rule 4"
            assert PIN_TAG not in image.tags
            if newest.get(target.instance_id) is image:
                assert step.phase is Phase.AFTER_CREATE, "rule 3"
    by_id = {i.image_id: i for i in src.images}
    for step in plan.copies:
        assert by_id[step.source_image_id].state is ImageState.NORMAL
    for skip in plan.skips:
        assert isinstance(skip, Skip) and skip.error in plan.errors


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(copy_scenarios())
def test_copy_runs_settle_keep_unmanaged_images_and_repeat_as_no_ops(
    scenario: tuple[Inventory, Inventory, list[Policy]],
) -> None:
    src, dst, policies = scenario
    src = replace(src, images=tuple(replace(i, state=ImageState.NORMAL) for i in src.images))
    unmanaged = [i for i in dst.images if i.image_id.startswith("img-")]
    final = dst
    for _ in range(4):  # a short quota may need a run per copy: each run frees what it can
        final, _ = run_copies(final, policies, src)  # QuotaExceeded = rule 2
        assert all(image in final.images for image in unmanaged)
        assert len(final.images) <= max(dst.quota, len(dst.images))
    again = plan_dest(final, policies, src)
    assert not again.writes_anything, again.steps


@pytest.mark.parametrize("make_copies", [True, False])
def test_source_region_planning_ignores_copies_elsewhere(make_copies: bool) -> None:
    history = [backup(A, hour(h)) for h in range(3)]
    plan = plan_region(
        source(history), [copying(keep_last=3)], (), hour(3), make_copies=make_copies
    )
    assert not plan.writes_anything and not plan.copies


# --- copies without inherited tags (issue #18: SyncImages may copy neither) ---------------


def bare_copy_of(image: Image, state: ImageState = ImageState.NORMAL, **fields: Any) -> Image:
    """What SyncImages leaves in DEST at worst: the name, nothing of the tags or description."""
    return replace(copy_of(image, state), tags={}, description="", **fields)


def test_an_untagged_copy_is_recognised_by_its_source_and_rotated_by_the_copy_retention() -> None:
    history = [backup(A, hour(h)) for h in range(3)]
    bare = [bare_copy_of(i) for i in history]
    plan = plan_dest(dest(bare, quota=3), [copying(copy_keep_last=2)], source(history))
    assert not plan.copies  # each source image has its copy: none is made twice
    assert set(deleted(plan)) == {bare[0].image_id}  # the oldest copy expires
    assert plan.unmanaged == 0
    # without the source's record the same images are unmanaged: counted, never touched
    blind = plan_dest(dest(bare, quota=3), [copying(copy_keep_last=2)], source([]))
    assert blind.unmanaged == 3 and not blind.deletes()


def test_a_copy_in_flight_without_tags_is_waited_for_not_copied_again() -> None:
    good = backup(A, hour(0))
    plan = plan_dest(dest([bare_copy_of(good, ImageState.CREATING)]), [copying()], source([good]))
    assert not plan.copies and plan.waits[0].image_ids == (f"cp-{good.image_id}",)
    syncing = backup(A, hour(0), ImageState.SYNCING)  # the source is SYNCING while copied
    busy = dest([bare_copy_of(syncing, ImageState.CREATING)])
    during = plan_dest(busy, [copying()], source([syncing]))
    assert during.unmanaged == 0 and not during.writes_anything


def test_a_look_alike_of_another_identity_or_instance_is_never_a_copy() -> None:
    good = backup(A, hour(0))
    theirs = bare_copy_of(good, creator_trusted=False)
    plan = plan_dest(dest([theirs]), [copying()], source([good]))
    assert plan.unmanaged == 1 and plan.skips and not plan.deletes()
    wrong_tag = replace(bare_copy_of(good), tags={TAG_INSTANCE: B})
    assert plan_dest(dest([wrong_tag]), [copying()], source([good])).unmanaged == 1


def test_a_copy_tagged_by_cvmkeeper_is_managed_without_a_description_or_its_source() -> None:
    history = [backup(A, hour(h)) for h in range(3)]
    plan = plan_dest(dest(), [copying()], source(history[-1:]))
    [step] = plan.copies
    assert step.tags[TAG_COPY_FROM] == REGION and step.tags[MARKER_TAG] == "true"
    tagged = [
        replace(bare_copy_of(i), tags=copy_tags(i.tags, REGION), image_id=f"cp{n}")
        for n, i in enumerate(history)
    ]
    gone = plan_dest(dest(tagged), [copying(copy_keep_last=2)], source([]))
    assert gone.unmanaged == 0 and set(deleted(gone)) == {"cp0"}
    # the copy tag stands in for the description only with an instance tag
    no_instance = {k: v for k, v in tagged[0].tags.items() if k != TAG_INSTANCE}
    assert is_managed(replace(tagged[0], tags=no_instance)) is None
