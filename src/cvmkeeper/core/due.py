"""Which slots a run makes: the catch-up rules of docs/design.md as one pure function.

A run without ``--policy`` (a scheduled run, a daemon start or reload, a manual
``cvmkeeper run``) makes, for each policy, its *latest* slot at or before ``now``, and only
when that slot's image is missing and the slot is younger than the policy's ``catch_up``
window (by default one schedule period, set by the config loader). Never a backlog: an
older missed slot is simply gone, because a newer backup supersedes it.

``catch_up: off`` (a zero window) still lets a run make the slot it was scheduled for:
such a run starts a little after the slot (jitter, a busy machine), so the window is then
the largest jitter of the policy's schedules plus :data:`ON_TIME_GRACE`.

Pure: ``now`` is an argument, existing image names and instances are values.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cvmkeeper.core.durations import format_duration
from cvmkeeper.core.inventory import Instance
from cvmkeeper.core.naming import DEFAULT_FORMAT, NameFormat, image_name, slot_tag_value
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.schedule import latest_policy_slot
from cvmkeeper.core.targets import resolve_targets

#: Due slots as the planner and the executor take them: (policy name, slot) pairs, or a
#: mapping policy name -> slot. One :class:`DueSlot` is one of them with the reason.
DueSlots = Mapping[str, datetime] | Iterable[tuple[str, datetime]]

#: How late a run may start and still count as on time when catch-up is off.
ON_TIME_GRACE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class DueSlot:
    """One slot a run makes for one policy, and why (for progress lines and logs)."""

    policy: str
    slot: datetime
    reason: str


def catch_up_window(policy: Policy) -> timedelta:
    """How old the latest slot may be and still be made (see the module docstring)."""
    if policy.catch_up > timedelta():
        return policy.catch_up
    jitter = max((schedule.jitter for schedule in policy.schedules), default=timedelta())
    return jitter + ON_TIME_GRACE


def _expected_names(
    policy: Policy,
    region: str,
    slot: datetime,
    instances: Iterable[Instance],
    fmt: NameFormat,
) -> list[str]:
    resolution = resolve_targets(region, [policy], instances)
    names: list[str] = []
    for instance_id in resolution.instances_of(policy.name):
        try:
            names.append(image_name(instance_id, slot, fmt))
        except ValueError:
            names.append(f"<unnameable {instance_id}>")  # never present: the planner reports it
    return names


def _missing_somewhere(
    policy: Policy,
    slot: datetime,
    existing: Mapping[str, Collection[str]],
    instances_by_region: Mapping[str, Sequence[Instance]] | None,
    fmt: NameFormat,
) -> bool:
    """True when an image of the slot is missing in a region of ``policy`` that is known,
    or when the policy's instances are known and it has none at all (then no image of the
    slot exists either: never say "its images exist" of images nobody can make)."""
    known = [region for region in policy.regions if region in existing]
    if not known:
        return True  # nothing known about its regions: let the planner decide
    expected_anywhere = 0
    instances_known = False
    for region in known:
        names = existing[region]
        if instances_by_region is not None and region in instances_by_region:
            instances_known = True
            expected = _expected_names(policy, region, slot, instances_by_region[region], fmt)
            expected_anywhere += len(expected)
            if any(name not in names for name in expected):
                return True
        elif not any(
            (parsed := fmt.parse(name)) is not None and parsed.slot == slot for name in names
        ):
            return True  # without instances: no image of this slot at all
    return instances_known and expected_anywhere == 0


def due_reason(slot: datetime, age: timedelta, window: timedelta, missing: bool | None) -> str:
    """Why a slot is taken, saying only what is known: ``missing`` is ``True`` when an
    image of the slot is known to be missing, ``False`` when all are known to exist, and
    ``None`` when the images were not looked at. A slot on time is simply due; only a
    catch-up says that an image is missing."""
    if age < ON_TIME_GRACE:
        head = f"slot {slot_tag_value(slot)} is due"
        return f"{head}; its images exist" if missing is False else head
    head = (
        f"catch-up: slot {slot_tag_value(slot)} is within the catch-up window "
        f"({format_duration(window)})"
    )
    if missing is None:
        return head
    return f"{head}; an image of it is missing" if missing else f"{head}; its images exist"


def due_slots(
    policies: Iterable[Policy],
    existing_image_names_by_region: Mapping[str, Collection[str]] | None,
    now: datetime,
    *,
    instances_by_region: Mapping[str, Sequence[Instance]] | None = None,
    name_format: NameFormat = DEFAULT_FORMAT,
    include_present: bool = False,
) -> tuple[DueSlot, ...]:
    """The slots due at ``now`` under the catch-up rules, one per policy at most.

    ``existing_image_names_by_region`` (region -> names of its images) lets a policy whose
    latest slot already has its images be left out; ``None`` skips that check (the planner
    makes nothing for a slot whose image exists, so passing every candidate is safe).
    With ``instances_by_region`` a slot counts as present in a region only when every
    instance the policy targets there has its image; without it, when any image of that
    slot exists there. ``include_present`` keeps present slots in the answer (the planner
    then reports them as ``exists``); the names are then used only for the reasons, which
    say whether an image is missing only when the names were given.
    """
    due: list[DueSlot] = []
    for policy in policies:
        slot = latest_policy_slot(policy, now)
        if slot is None:
            continue
        age = now - slot
        window = catch_up_window(policy)
        if age >= window:
            continue
        missing: bool | None = None
        if existing_image_names_by_region is not None:
            missing = _missing_somewhere(
                policy, slot, existing_image_names_by_region, instances_by_region, name_format
            )
            if not missing and not include_present:
                continue
        due.append(DueSlot(policy.name, slot, due_reason(slot, age, window, missing)))
    return tuple(due)
