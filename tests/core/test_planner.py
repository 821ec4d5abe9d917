"""The pure planner: named scenarios, a simulated executor, and rules 1-5 as properties.

Layout of this file:
- builders for inventories, images and policies;
- ``execute`` and ``run``: a tiny in-memory executor that follows the plan contract
  (before_create deletes, creates, wait, re-plan, after_create deletes) and checks the
  quota after every single write, so multi-run scenarios are tested end to end;
- table-driven scenarios from the issue (steady state, quota full, CREATEFAILED, existing
  names, orphans, several policies);
- ``check_plan`` catching each kind of broken plan (so it is not a vacuous oracle);
- hypothesis: generated inventories never yield a plan that breaks rules 1-5, with an
  oracle that knows which images the generator made managed, and repeated runs converge
  to a plan that writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cvmkeeper.core.inventory import Image, ImageState, Instance, Inventory
from cvmkeeper.core.naming import (
    MARKER_TAG,
    PIN_TAG,
    TAG_INSTANCE,
    image_description,
    image_name,
    image_tags,
)
from cvmkeeper.core.plan import (
    DELETE_BATCH_SIZE,
    Create,
    Delete,
    DeleteKind,
    DeleteTarget,
    Phase,
    Plan,
    Wait,
    check_plan,
)
from cvmkeeper.core.planner import DueSlots, PlannerSettings, plan_region
from cvmkeeper.core.policy import Consistency, OnQuotaFull, Policy, Retention, Schedule, Targets
from support.builders import policy

REGION = "ap-guangzhou"
T0 = datetime(2026, 11, 27, tzinfo=UTC)
A, B, C = "ins-aaaaaaaa", "ins-bbbbbbbb", "ins-cccccccc"
BUSY = (ImageState.CREATING, ImageState.SYNCING, ImageState.IMPORTING, ImageState.UNKNOWN)


# --- builders ------------------------------------------------------------------------------


def hour(n: int) -> datetime:
    """The slot ``n`` hours after T0."""
    return T0 + timedelta(hours=n)


def backup(
    instance_id: str,
    slot: datetime,
    state: ImageState = ImageState.NORMAL,
    *,
    pinned: bool = False,
    image_id: str | None = None,
) -> Image:
    """A managed image exactly as cvmkeeper creates it."""
    tags = image_tags(("p",), instance_id, slot)
    if pinned:
        tags[PIN_TAG] = "true"
    return Image(
        image_id=image_id or f"img-{instance_id[4:]}-{slot:%d%H%M}",
        name=image_name(instance_id, slot),
        state=state,
        created_time=slot,
        region=REGION,
        description=image_description(("p",), slot),
        tags=tags,
    )


def foreign(image_id: str, name: str | None = None) -> Image:
    """An image cvmkeeper did not make."""
    return Image(image_id, name or f"golden-{image_id}", ImageState.NORMAL, T0, REGION)


def instance(instance_id: str, **tags: str) -> Instance:
    """A running instance of the region."""
    return Instance(instance_id, instance_id, "RUNNING", REGION, tags=tags)


def inventory(quota: int, images: Iterable[Image], instances: Iterable[str] = (A, B)) -> Inventory:
    """An inventory of REGION."""
    return Inventory(REGION, quota, tuple(images), tuple(instance(i) for i in instances))


def plan_of(
    inv: Inventory,
    policies: Sequence[Policy],
    due: DueSlots,
    now: datetime,
    planner_settings: PlannerSettings | None = None,
) -> Plan:
    """Plan, and assert the plan passes ``check_plan`` (the planner also checks itself)."""
    result = plan_region(inv, policies, due, now, planner_settings)
    assert check_plan(inv, result) == []
    return result


def deleted(plan: Plan, phase: Phase | None = None) -> dict[str, DeleteKind]:
    """Image id -> delete kind for the plan's deletes (of one phase)."""
    return {t.image_id: step.kind for step in plan.deletes(phase) for t in step.targets}


# --- a simulated executor ------------------------------------------------------------------


class QuotaExceeded(AssertionError):
    """The simulated cloud refused a create: the plan broke rule 2."""


def _made(create: Create, now: datetime) -> Image:
    return Image(
        image_id=f"img-new-{create.image_name}",
        name=create.image_name,
        state=ImageState.NORMAL,
        created_time=now,
        region=REGION,
        description=create.description,
        tags=dict(create.tags),
    )


def execute(inv: Inventory, plan: Plan, now: datetime, *, run_after: bool) -> Inventory:
    """Carry ``plan`` out in memory; every create succeeds and waits end ``NORMAL``.

    ``after_create`` deletes run only when ``run_after`` (the executor runs them from a
    plan made after the creates). Raises ``QuotaExceeded`` like the cloud would.
    """
    images = {image.image_id: image for image in inv.images}
    for step in plan.steps:
        if isinstance(step, Delete) and (step.phase is Phase.BEFORE_CREATE or run_after):
            for image_id in step.image_ids:
                del images[image_id]
        elif isinstance(step, Create):
            if len(images) + 1 > inv.quota:
                raise QuotaExceeded(f"{step.image_name}: {len(images)} of {inv.quota}")
            made = _made(step, now)
            images[made.image_id] = made
        elif isinstance(step, Wait):
            for image_id in step.image_ids:
                images[image_id] = replace(images[image_id], state=ImageState.NORMAL)
    return replace(inv, images=tuple(images.values()))


def run(
    inv: Inventory,
    policies: Sequence[Policy],
    due: DueSlots,
    now: datetime,
    planner_settings: PlannerSettings | None = None,
    *,
    max_rounds: int = 6,
) -> tuple[Inventory, list[Plan]]:
    """One run as the executor does it: plan, create, wait, re-plan until nothing is left."""
    plans: list[Plan] = []
    for _ in range(max_rounds):
        plan = plan_of(inv, policies, due, now, planner_settings)
        plans.append(plan)
        in_flight = bool(plan.creates or plan.waits)
        inv = execute(inv, plan, now, run_after=not in_flight)
        if not in_flight:
            return inv, plans
    raise AssertionError(f"run did not settle in {max_rounds} plans: {plans[-1].steps}")


# --- scenarios -----------------------------------------------------------------------------


def test_steady_state_quota_10_two_instances_keep_last_4_two_unmanaged() -> None:
    keep4 = policy(ids=(A, B), keep_last=4)
    unmanaged = [foreign("img-hand1"), foreign("img-hand2")]
    inv = inventory(10, unmanaged)
    for n in range(12):
        slot = hour(n)
        first = plan_of(inv, [keep4], {"p": slot}, slot)
        assert first.warnings == () and first.errors == ()
        assert [c.image_name for c in first.creates] == [image_name(A, slot), image_name(B, slot)]
        if n >= 4:  # region full: the oldest of each goes first, and nothing else
            oldest = {image_name(A, hour(n - 4)), image_name(B, hour(n - 4))}
            (early,) = first.deletes(Phase.BEFORE_CREATE)
            assert early.kind is DeleteKind.EXPIRE
            assert {target.image_name for target in early.targets} == oldest
            assert first.deletes(Phase.AFTER_CREATE) == ()
        else:
            assert deleted(first) == {}
        inv, plans = run(inv, [keep4], {"p": slot}, slot)
        assert len(inv.images) <= 10
        assert not plans[-1].writes_anything
    managed = sorted(image.name for image in inv.images if image.name.startswith("26"))
    assert managed == sorted(image_name(i, hour(n)) for i in (A, B) for n in range(8, 12))
    assert all(image in inv.images for image in unmanaged)


def test_creates_fit_so_expired_images_go_after_the_create() -> None:
    inv = inventory(10, [backup(A, hour(0)), backup(A, hour(1))], instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=2)], {"p": hour(2)}, hour(2))
    assert [type(step).__name__ for step in plan.steps] == ["Create", "Wait", "Delete"]
    assert deleted(plan, Phase.AFTER_CREATE) == {backup(A, hour(0)).image_id: DeleteKind.EXPIRE}
    assert plan.deletes(Phase.BEFORE_CREATE) == ()


@pytest.mark.parametrize("mode", ["evict", "skip"])
def test_region_at_quota_with_nothing_expired(mode: OnQuotaFull) -> None:
    images = [backup(A, hour(0)), backup(A, hour(1)), backup(A, hour(2)), foreign("img-hand")]
    inv = inventory(4, images, instances=(A,))
    plan = plan_of(
        inv, [policy(ids=(A,), keep_last=10, on_quota_full=mode)], {"p": hour(3)}, hour(3)
    )
    if mode == "evict":
        assert deleted(plan) == {images[0].image_id: DeleteKind.EVICT}
        assert len(plan.creates) == 1
        assert len(plan.warnings) == 1 and "retention wants more" in plan.warnings[0]
        assert plan.errors == ()
    else:
        assert deleted(plan) == {}
        assert plan.creates == ()
        assert [skip.image_name for skip in plan.skips] == [image_name(A, hour(3))]
        assert len(plan.errors) == 1 and "on_quota_full: skip" in plan.errors[0]


def test_nothing_can_be_freed_skips_with_an_error() -> None:
    inv = inventory(2, [backup(A, hour(0)), foreign("img-hand")], instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {"p": hour(1)}, hour(1))
    assert plan.creates == () and deleted(plan) == {}
    assert "nothing can be evicted" in plan.errors[0]


def test_evicts_oldest_but_never_newest_pinned_or_busy() -> None:
    images = [
        backup(A, hour(0), pinned=True),
        backup(A, hour(1), ImageState.CREATING),
        backup(B, hour(2)),  # B's newest: protected
        backup(A, hour(3)),
        backup(A, hour(4)),
    ]
    inv = inventory(5, images)
    plan = plan_of(inv, [policy(ids=(A, B), keep_last=9)], {"p": hour(5)}, hour(5))
    assert deleted(plan) == {images[3].image_id: DeleteKind.EVICT}
    # One image could be freed: it goes to B, whose newest backup is the stalest.
    assert [c.instance_id for c in plan.creates] == [B]
    assert [s.instance_id for s in plan.skips] == [A]


def test_createfailed_is_cleaned_up_first_and_the_slot_made_again() -> None:
    failed_now = backup(A, hour(2), ImageState.CREATEFAILED)
    failed_old = backup(A, hour(1), ImageState.CREATEFAILED)
    good = backup(A, hour(0))
    inv = inventory(3, [good, failed_old, failed_now], instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=3)], {"p": hour(2)}, hour(2))
    cleanup = plan.deletes(Phase.BEFORE_CREATE)
    assert [(s.kind, s.image_ids) for s in cleanup] == [
        (DeleteKind.CLEANUP, (failed_old.image_id, failed_now.image_id))
    ]
    assert [c.image_name for c in plan.creates] == [failed_now.name]
    assert plan.steps.index(cleanup[0]) < plan.steps.index(plan.creates[0])
    assert good.image_id not in deleted(plan)


def test_pinned_createfailed_holds_its_name_and_is_not_deleted() -> None:
    failed = backup(A, hour(1), ImageState.CREATEFAILED, pinned=True)
    inv = inventory(5, [failed], instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {"p": hour(1)}, hour(1))
    assert deleted(plan) == {} and plan.creates == ()
    assert "may not delete" in plan.errors[0]


@pytest.mark.parametrize(
    ("state", "expect"),
    [
        (ImageState.NORMAL, "nothing"),
        (ImageState.USING, "nothing"),
        (ImageState.CREATING, "wait"),
        (ImageState.SYNCING, "wait"),
        (ImageState.UNKNOWN, "wait"),
        (ImageState.IMPORTFAILED, "skip"),
    ],
)
def test_existing_name_means_no_create(state: ImageState, expect: str) -> None:
    existing = backup(A, hour(1), state)
    inv = inventory(5, [backup(A, hour(0)), existing], instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=5)], {"p": hour(1)}, hour(1))
    assert plan.creates == ()
    assert [w.image_ids for w in plan.waits] == ([(existing.image_id,)] if expect == "wait" else [])
    assert len(plan.skips) == (1 if expect == "skip" else 0)
    assert not plan.writes_anything


def test_name_taken_by_an_unmanaged_image_is_a_skip_not_an_adoption() -> None:
    squatter = replace(backup(A, hour(1)), tags={}, image_id="img-hand")
    inv = inventory(5, [squatter], instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {"p": hour(1)}, hour(1))
    assert plan.creates == () and plan.waits == () and deleted(plan) == {}
    assert "does not manage" in plan.errors[0]


def test_second_run_for_the_same_slot_writes_nothing() -> None:
    keep2 = policy(ids=(A, B), keep_last=2)
    inv = inventory(10, [backup(A, hour(0)), backup(A, hour(1)), backup(B, hour(1))])
    inv, _ = run(inv, [keep2], {"p": hour(2)}, hour(2))
    again = plan_of(inv, [keep2], {"p": hour(2)}, hour(2))
    assert not again.writes_anything and again.waits == ()


def test_orphans_are_kept_and_reported() -> None:
    images = [backup(C, hour(n)) for n in range(3)] + [backup(A, hour(0))]
    inv = inventory(10, images, instances=(A,))  # C is gone from the region
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {"p": hour(1)}, hour(1))
    assert plan.orphan_instance_ids == (C,)
    orphan_decisions = [d for d in plan.decisions if d.orphan]
    assert len(orphan_decisions) == 3
    assert all(d.keep and d.delete_kind is None for d in orphan_decisions)
    assert not any(t.instance_id == C for step in plan.deletes() for t in step.targets)


def test_orphan_retention_setting_expires_old_orphans_but_keeps_the_newest() -> None:
    images = [backup(C, hour(n)) for n in range(3)]
    inv = inventory(10, images, instances=(A,))
    rules = PlannerSettings(orphan_retention=Retention(keep_last=1))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {}, hour(3), rules)
    assert deleted(plan) == {
        images[0].image_id: DeleteKind.EXPIRE,
        images[1].image_id: DeleteKind.EXPIRE,
    }


def test_two_policies_one_instance_one_slot_make_one_image_with_rules_ored() -> None:
    hourly = policy("hourly", ids=(A,), keep_last=1)
    careful = policy(
        "careful", tags={"tier": "db"}, keep_last=3, consistency=Consistency.STOP_START
    )
    # made by both policies (an image of a policy that no longer exists would be held)
    images = [
        replace(image, tags={**image.tags, "cvmkeeper:policy": "careful,hourly"})
        for image in (backup(A, hour(n)) for n in range(4))
    ]
    inv = Inventory(REGION, 10, tuple(images), (instance(A, tier="db"),))
    plan = plan_of(inv, [hourly, careful], [("hourly", hour(4)), ("careful", hour(4))], hour(4))
    (create,) = plan.creates
    assert create.policies == ("careful", "hourly")
    assert create.tags["cvmkeeper:policy"] == "careful,hourly"
    assert create.consistency is Consistency.STOP_START
    # keep_last 3 (careful) OR keep_last 1 (hourly): the new image and the two newest stay.
    assert deleted(plan, Phase.AFTER_CREATE) == dict.fromkeys(
        (images[0].image_id, images[1].image_id), DeleteKind.EXPIRE
    )


def test_created_image_carries_marker_tags_and_description() -> None:
    inv = inventory(10, [], instances=(A,))
    (create,) = plan_of(inv, [policy(ids=(A,), keep_last=1)], {"p": hour(0)}, hour(0)).creates
    assert create.tags[MARKER_TAG] == "true"
    assert create.tags[TAG_INSTANCE] == A
    assert create.tags["cvmkeeper:slot"] == "2026-11-27T00:00Z"
    assert create.description.startswith("cvmkeeper:") and len(create.description) <= 60


def test_policies_elsewhere_ignored_and_empty_policy_warned() -> None:
    far = policy("far", ids=(A,), regions=("ap-beijing",), keep_last=1)
    nobody = policy("nobody", ids=("ins-zzzzzzzz",), keep_last=1)
    inv = inventory(10, [], instances=(A,))
    plan = plan_of(inv, [far, nobody], {"far": hour(0), "nobody": hour(0)}, hour(0))
    assert plan.creates == ()
    assert plan.warnings == (f"policy 'nobody' matches no instance in {REGION}",)


def test_slot_after_now_is_not_made() -> None:
    inv = inventory(10, [], instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {"p": hour(1)}, hour(0))
    assert plan.creates == () and "after now" in plan.warnings[0]


def test_deletes_are_batched() -> None:
    count = DELETE_BATCH_SIZE + 5
    images = [backup(A, T0 + timedelta(minutes=n)) for n in range(count)]
    inv = inventory(count + 10, images, instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {}, hour(5))
    sizes = [len(step.targets) for step in plan.deletes()]
    assert sizes == [DELETE_BATCH_SIZE, 4]


def test_numbers_and_decisions_cover_every_managed_image() -> None:
    images = [backup(A, hour(0)), backup(A, hour(1)), foreign("img-hand")]
    inv = inventory(10, images, instances=(A,))
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {}, hour(2))
    assert (plan.quota, plan.used, plan.unmanaged, plan.free) == (10, 3, 1, 7)
    by_id = {d.image_id: d for d in plan.decisions}
    assert set(by_id) == {images[0].image_id, images[1].image_id}
    assert by_id[images[1].image_id].keep and by_id[images[1].image_id].reasons
    assert by_id[images[0].image_id].reasons == ("expired",)
    assert by_id[images[0].image_id].delete_phase is Phase.AFTER_CREATE


# --- check_plan is a real oracle -----------------------------------------------------------


def _bad(kind: DeleteKind, phase: Phase, image: Image) -> Delete:
    target = DeleteTarget(image.image_id, image.name, A, T0, "test")
    return Delete(phase=phase, kind=kind, targets=(target,))


def test_check_plan_catches_each_broken_rule() -> None:
    newest, older = backup(A, hour(1)), backup(A, hour(0))
    busy, hand = backup(A, hour(2), ImageState.CREATING), foreign("img-hand")
    inv = inventory(4, [older, newest, busy, hand], instances=(A,))
    good = plan_of(inv, [policy(ids=(A,), keep_last=5)], {}, hour(3))
    create = Create(
        A,
        image_name(A, hour(3)),
        hour(3),
        ("p",),
        image_tags(("p",), A, hour(3)),
        image_description(("p",), hour(3)),
        Consistency.LIVE,
        "test",
    )
    broken = {
        "rule 1": (_bad(DeleteKind.EXPIRE, Phase.AFTER_CREATE, hand),),
        "rule 2": (create,),
        "rule 3": (_bad(DeleteKind.EXPIRE, Phase.BEFORE_CREATE, newest),),
        "rule 4": (_bad(DeleteKind.EXPIRE, Phase.AFTER_CREATE, busy),),
        "rule 5": (
            _bad(DeleteKind.EXPIRE, Phase.BEFORE_CREATE, older),
            create,
            replace(create, reason="again"),
        ),
        "out of order": (create, _bad(DeleteKind.EXPIRE, Phase.BEFORE_CREATE, older)),
        "recognised": (
            _bad(DeleteKind.EXPIRE, Phase.BEFORE_CREATE, older),
            replace(create, tags={}),
        ),
    }
    for needle, steps in broken.items():
        violations = check_plan(inv, replace(good, steps=steps))
        assert any(needle in v for v in violations), (needle, violations)


# --- properties ----------------------------------------------------------------------------

POOL = (A, B, C, "ins-dddddddd")  # ins-dddddddd never exists: its images are orphans
SLOTS = tuple(hour(n) for n in range(8))
NOW = hour(8)
UNMANAGED_KINDS = (
    "plain",
    "no_marker",
    "bad_description",
    "almost_name",
    "wrong_instance_tag",
    "shared",
    "squatter",  # a due name, without the marker
)


@dataclass(frozen=True)
class Scenario:
    """A generated region, and what the generator knows about it."""

    inventory: Inventory
    policies: tuple[Policy, ...]
    due: tuple[tuple[str, datetime], ...]
    managed: Mapping[str, tuple[str, datetime]]  # image id -> (instance, slot)


def _almost(name: str, variant: int) -> str:
    options = (name[:-1], name.replace("-", "_", 1), name[:2] + "13" + name[4:], name.upper())
    return options[variant % len(options)]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Random quotas, fleets, overlapping policies and images of every kind and state."""
    present = draw(st.lists(st.sampled_from(POOL[:3]), unique=True, min_size=1, max_size=3))
    fleet = tuple(
        instance(
            i,
            **draw(
                st.dictionaries(
                    st.sampled_from(["env", "tier"]), st.sampled_from(["a", "b"]), max_size=2
                )
            ),
        )
        for i in present
    )
    policies = []
    for index in range(draw(st.integers(1, 3))):
        counts = {
            "keep_last": draw(st.sampled_from((0, 1, 2, 3, 6))),
            "keep_hourly": draw(st.integers(0, 3)),
            "keep_daily": draw(st.integers(0, 2)),
        }
        if not any(counts.values()):
            counts["keep_last"] = 1
        policies.append(
            Policy(
                name=f"p{index}",
                regions=draw(st.sampled_from([(REGION,), (REGION,), ("ap-beijing",)])),
                targets=Targets(
                    instance_ids=tuple(
                        draw(st.lists(st.sampled_from((*present, *POOL)), max_size=3))
                    ),
                    tags=draw(
                        st.dictionaries(
                            st.sampled_from(["env", "tier"]),
                            st.sampled_from(["a", "b"]),
                            max_size=1,
                        )
                    ),
                    exclude_instance_ids=tuple(draw(st.lists(st.sampled_from(POOL), max_size=1))),
                ),
                schedules=(Schedule(every=timedelta(hours=1)),),
                retention=Retention(
                    **counts,
                    keep_within=draw(st.sampled_from([None, timedelta(hours=2)])),
                    min_keep=draw(st.integers(1, 2)),
                ),
                consistency=draw(st.sampled_from(list(Consistency))),
                on_quota_full=draw(st.sampled_from(["evict", "skip"])),
            )
        )
    due = tuple(
        (
            draw(st.sampled_from([p.name for p in policies])),
            draw(st.sampled_from((NOW, NOW, *SLOTS))),
        )
        for _ in range(draw(st.integers(0, 3)))
    ) + tuple((p.name, NOW) for p in policies if draw(st.booleans()))
    images: dict[str, Image] = {}
    managed: dict[str, tuple[str, datetime]] = {}
    for owner in (*present, POOL[3]):  # a history of good backups: what rotation works on
        for slot in SLOTS[len(SLOTS) - draw(st.integers(0, 5)) :]:
            image = backup(owner, slot, image_id=f"img-{owner[4:]}-{slot:%H}")
            images[image.image_id] = image
            managed[image.image_id] = (owner, slot)
    for index in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(("managed",) * 8 + UNMANAGED_KINDS))
        owner = draw(st.sampled_from((*present, *POOL)))
        slot = NOW if kind == "squatter" else draw(st.sampled_from((*SLOTS, NOW)))
        image = backup(
            owner,
            slot,
            draw(st.sampled_from((ImageState.NORMAL,) * 8 + tuple(ImageState))),
            pinned=draw(st.sampled_from((False,) * 5 + (True,))),
            image_id=f"img-{index:04d}",
        )
        if kind == "plain":
            image = foreign(image.image_id)
        elif kind in ("no_marker", "squatter"):
            image = replace(image, tags={k: v for k, v in image.tags.items() if k != MARKER_TAG})
        elif kind == "bad_description":
            image = replace(image, description="made by hand")
        elif kind == "almost_name":
            image = replace(image, name=_almost(image.name, draw(st.integers(0, 3))))
        elif kind == "wrong_instance_tag":
            image = replace(image, tags={**image.tags, TAG_INSTANCE: "ins-zzzzzzzz"})
        elif kind == "shared":
            image = replace(image, image_type="SHARED_IMAGE")
        if image.name in {other.name for other in images.values()}:
            continue  # names are unique in a region
        images[image.image_id] = image
        if kind == "managed":
            managed[image.image_id] = (owner, slot)
    near_full = st.integers(-2, 2).map(lambda delta: max(0, len(images) + delta))
    quota = draw(st.one_of(near_full, st.integers(0, 16)))
    return Scenario(
        Inventory(REGION, quota, tuple(images.values()), fleet), tuple(policies), due, managed
    )


def assert_rules_hold(scenario: Scenario, plan: Plan) -> None:
    """Rules 1-5, checked with the generator's own knowledge, not the planner's."""
    inv = scenario.inventory
    by_id = {image.image_id: image for image in inv.images}
    newest: dict[str, tuple[datetime, str]] = {}
    for image_id, (owner, slot) in scenario.managed.items():
        if by_id[image_id].state in (ImageState.NORMAL, ImageState.USING):
            newest[owner] = max(newest.get(owner, (slot, image_id)), (slot, image_id))
    count = len(inv.images)
    freed: set[str] = set()
    created: set[tuple[str, datetime]] = set()
    replaced = {c.instance_id: c.slot for c in plan.creates}
    for wait in plan.waits:
        for image_id in wait.image_ids:
            owner, slot = scenario.managed[image_id]
            replaced[owner] = max(replaced.get(owner, slot), slot)
    for step in plan.steps:
        if isinstance(step, Delete):
            for image_id in step.image_ids:
                assert image_id in scenario.managed, f"rule 1: deleted {by_id[image_id]}"
                assert by_id[image_id].state not in BUSY, f"rule 4: {by_id[image_id]}"
                assert PIN_TAG not in by_id[image_id].tags, "pinned image deleted"
                owner, slot = scenario.managed[image_id]
                if newest.get(owner, (None, None))[1] == image_id:
                    assert step.phase is Phase.AFTER_CREATE, f"rule 3: {image_id}"
                    assert replaced.get(owner, slot) > slot, f"rule 3: {image_id}"
                if step.phase is Phase.BEFORE_CREATE:
                    count -= 1
                    freed.add(by_id[image_id].name)
        elif isinstance(step, Create):
            count += 1
            assert count <= inv.quota, "rule 2"
            assert (step.instance_id, step.slot) not in created, "rule 5: twice"
            created.add((step.instance_id, step.slot))
            taken = {image.name for image in inv.images} - freed
            assert step.image_name not in taken, "rule 5: name exists"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_generated_inventories_never_yield_a_plan_that_breaks_rules_1_to_5(
    scenario: Scenario,
) -> None:
    plan = plan_of(scenario.inventory, scenario.policies, scenario.due, NOW)
    for step in plan.steps:  # shown by --hypothesis-show-statistics: what was exercised
        event(
            type(step).__name__ + (f" {step.phase} {step.kind}" if isinstance(step, Delete) else "")
        )
    assert_rules_hold(scenario, plan)
    assert plan.used == len(scenario.inventory.images)
    assert plan.unmanaged == len(scenario.inventory.images) - len(scenario.managed)
    assert {d.image_id for d in plan.decisions} == set(scenario.managed)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_runs_settle_never_touch_unmanaged_images_and_repeat_as_no_ops(
    scenario: Scenario,
) -> None:
    inv = scenario.inventory
    unmanaged = [i for i in inv.images if i.image_id not in scenario.managed]
    final, plans = run(inv, scenario.policies, scenario.due, NOW)  # QuotaExceeded = rule 2
    assert all(image in final.images for image in unmanaged)
    assert len(final.images) <= max(inv.quota, len(inv.images))
    again = plan_of(final, scenario.policies, scenario.due, NOW)
    assert not again.writes_anything, again.steps
    first = plans[0]
    if len(plans) == 2 and not first.skips and DeleteKind.EVICT not in deleted(first).values():
        # The preview is what the run deletes after its creates (an image still in flight
        # is not in a Delete yet; its decision says it expires once NORMAL).
        in_flight = {d.image_id for d in first.decisions if not d.keep and not d.delete_kind}
        preview = set(deleted(first, Phase.AFTER_CREATE)) | in_flight
        assert preview == set(deleted(plans[1])), plans
