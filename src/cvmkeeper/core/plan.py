"""The plan: the ordered steps one run takes in one region, as plain immutable values.

The planner (``core.planner``) produces a :class:`Plan`; the executor carries it out and the
``plan`` / ``run`` / ``images`` commands print it. These types are the contract between the
pure core and the shell, so every field says what it means and every step carries the
reason for it.

Step order inside ``Plan.steps`` is the order of execution:

1. ``Delete`` steps with ``phase=before_create`` (``cleanup`` of ``CREATEFAILED`` images,
   then ``expire``, then ``evict``) -- only what frees quota or a name for the creates;
2. ``Create`` steps, highest priority first (each fits the quota at that point), then
   ``Copy`` steps (``SyncImages`` of a source region's ``NORMAL`` image into this region:
   a copy counts against this region's quota exactly like a create);
3. ``Skip`` steps (creates or copies that could not be made, each with its error);
4. at most one ``Wait`` for every image in flight (the new ones, by name, and existing
   ``CREATING`` images of due slots or copies, by id);
5. ``Delete`` steps with ``phase=after_create`` (``expire``).

``after_create`` deletes are computed in the hypothetical world where every planned create
(and every waited image) has become ``NORMAL``; they show what the run will delete. The
executor must NOT execute them from this plan once any create or wait was involved: it waits,
re-reads the inventory, plans again, and executes the ``after_create`` deletes of that new
plan (which has no creates left, so its deletes rest on real ``NORMAL`` images). A plan
without ``Create`` and ``Wait`` steps can be executed as is.

:func:`check_plan` states rules 1-5 of docs/design.md as code, one function per rule; the
planner runs it on every plan it returns, and tests and the invariant checker can run it on
any plan.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cvmkeeper.core.inventory import Image, ImageState, Inventory
from cvmkeeper.core.naming import DEFAULT_FORMAT, NameFormat
from cvmkeeper.core.ownership import ManagedImage, classify_image, copy_origins, split_images
from cvmkeeper.core.policy import Consistency

#: The most image ids one ``DeleteImages`` call carries: one ``Delete`` step of a plan, and
#: one batch of ``CloudClient.delete_images`` (the one constant both use, so a step is one
#: call). The API documents no maximum for ``DeleteImages``; 100 is the most ids any CVM
#: image action documents (``DescribeImages`` ``ImageIds``, ``Limit``), so it is the
#: largest batch we can expect to be accepted, and a refused batch is retried one id at a
#: time, which bounds what one bad id costs.
DELETE_BATCH_SIZE = 100


class DeleteKind(StrEnum):
    """Why an image is deleted."""

    #: a ``CREATEFAILED`` image: garbage that frees quota and its name, costs no backup.
    CLEANUP = "cleanup"
    #: retention no longer keeps it (in the world where the planned creates succeeded).
    EXPIRE = "expire"
    #: retention still wants it but the quota cannot hold it (``on_quota_full: evict``).
    EVICT = "evict"


class Phase(StrEnum):
    """When a ``Delete`` runs relative to the creates of the plan."""

    #: before any create, because the quota needs the room (or it is a cleanup).
    BEFORE_CREATE = "before_create"
    #: after the creates are ``NORMAL`` and the region was planned again (see module doc).
    AFTER_CREATE = "after_create"


@dataclass(frozen=True, slots=True)
class Create:
    """Call ``CreateImage`` for one (instance, slot).

    ``tags`` go into ``TagSpecification`` (they include the marker and ``cvmkeeper:policy``,
    ``cvmkeeper:instance``, ``cvmkeeper:slot``); ``description`` starts with the marker
    prefix and fits the API's 60 characters. ``policies`` are all policies due at this slot
    for this instance (sorted); ``consistency`` is the strongest mode any of them asks for.
    """

    instance_id: str
    image_name: str
    slot: datetime
    policies: tuple[str, ...]
    tags: Mapping[str, str]
    description: str
    consistency: Consistency
    reason: str


@dataclass(frozen=True, slots=True)
class Copy:
    """Call ``SyncImages`` for one image of ``source_region`` into the plan's region.

    The copy gets the source's name (same instance, same slot: the name is what makes a
    retried copy idempotent). ``SyncImages`` cannot set tags and may not copy the source's
    (issue #18), so the executor tags the copy through the Tag API with ``tags``
    (``naming.copy_tags``: the source's ``cvmkeeper:*`` tags and ``cvmkeeper:copy-from``),
    which make it managed whatever its description; ``description`` is the source's (what
    the cloud may copy). ``policies`` are the policies that copy this instance's images
    here.
    """

    instance_id: str
    image_name: str
    slot: datetime
    source_region: str
    source_image_id: str
    policies: tuple[str, ...]
    tags: Mapping[str, str]
    description: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeleteTarget:
    """One image inside a ``Delete`` step, with the reason it goes."""

    image_id: str
    image_name: str
    instance_id: str
    slot: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Delete:
    """Call ``DeleteImages`` for a batch of managed images of one kind and phase."""

    phase: Phase
    kind: DeleteKind
    targets: tuple[DeleteTarget, ...]

    @property
    def image_ids(self) -> tuple[str, ...]:
        """The ids to pass as ``ImageIds``."""
        return tuple(target.image_id for target in self.targets)


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait until these images leave their in-flight state (``NORMAL`` or failed).

    ``image_ids`` are existing images (a due slot already ``CREATING``); ``image_names``
    are the names of every image waited for, including the creates of this plan, whose ids
    only the executor learns.
    """

    image_ids: tuple[str, ...]
    image_names: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Skip:
    """A due (instance, slot) that gets no image in this run, and the error to alert."""

    instance_id: str
    slot: datetime
    image_name: str
    policies: tuple[str, ...]
    error: str
    source_region: str = ""
    """For a copy that could not be made: the region of its source image."""


Step = Create | Copy | Delete | Wait | Skip


@dataclass(frozen=True, slots=True)
class ImageDecision:
    """What the plan decides for one managed image, and why.

    ``keep`` is retention's verdict in the hypothetical world where the creates succeeded
    (with the hard rules applied on top: newest ``NORMAL``, pins, in-flight images are always
    kept). ``delete_kind``/``delete_phase`` say whether this plan deletes it and when; an
    evicted image has ``keep=True`` and ``delete_kind=evict``. ``orphan`` is true when no
    policy of this region targets the image's instance any more.
    """

    image_id: str
    image_name: str
    instance_id: str
    slot: datetime
    state: ImageState
    pinned: bool
    orphan: bool
    keep: bool
    reasons: tuple[str, ...]
    delete_kind: DeleteKind | None = None
    delete_phase: Phase | None = None


class WarningKind(StrEnum):
    """What a plan's warning is about; it is the ``action`` tag of the warning's alert."""

    PLAN = "plan"  # a due slot or copy not made, an unknown policy, a slot after now
    TARGETS = "targets"  # a policy matches no instance of the region
    EVICT = "evict"  # quota full: an image evicted to make room for a create or copy
    DISKS = "disks"  # rule 10: a disk a backup cannot hold, an image holding fewer disks
    FUTURE = "future"  # a managed image named for a slot after now (held, never covering)
    RETENTION = "retention"  # images kept by a policy that no longer exists (held or rotated)
    STATE = "state"  # a managed image in a state cvmkeeper never cleans (IMPORTFAILED, ...)
    OWNERSHIP = "ownership"  # an image with cvmkeeper's marker made by another identity


@dataclass(frozen=True, slots=True)
class PlanWarning:
    """One warning of a plan, with what it is about as fields (never parsed from the text).

    ``policies`` are the policies the warning concerns (its alerts are tagged with them);
    empty when it concerns no configured policy (a due slot of an unknown policy): the
    executor then tags it with the policies the run was due for. ``instance_id`` is the
    instance it is about, when it is about one (the alert's ``instance`` tag).
    """

    kind: WarningKind
    message: str
    policies: tuple[str, ...] = ()
    instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one run will do in one region, with the numbers behind it.

    ``used`` counts every image of the region (unmanaged and in-flight included);
    ``unmanaged`` how many of them cvmkeeper does not own. ``notices`` are alerted as
    warnings (evictions, policies that match nothing; ``warnings`` is their text);
    ``errors`` as errors (skipped creates).
    """

    region: str
    now: datetime
    quota: int
    used: int
    unmanaged: int
    steps: tuple[Step, ...]
    decisions: tuple[ImageDecision, ...]
    notices: tuple[PlanWarning, ...] = ()
    errors: tuple[str, ...] = ()
    orphan_instance_ids: tuple[str, ...] = field(default=())

    @property
    def warnings(self) -> tuple[str, ...]:
        """The text of every warning, in order."""
        return tuple(notice.message for notice in self.notices)

    @property
    def free(self) -> int:
        """Images that can be created before any delete (never negative)."""
        return max(0, self.quota - self.used)

    @property
    def creates(self) -> tuple[Create, ...]:
        """The ``Create`` steps, in order."""
        return tuple(step for step in self.steps if isinstance(step, Create))

    @property
    def copies(self) -> tuple[Copy, ...]:
        """The ``Copy`` steps, in order."""
        return tuple(step for step in self.steps if isinstance(step, Copy))

    @property
    def skips(self) -> tuple[Skip, ...]:
        """The ``Skip`` steps, in order."""
        return tuple(step for step in self.steps if isinstance(step, Skip))

    @property
    def waits(self) -> tuple[Wait, ...]:
        """The ``Wait`` steps (zero or one)."""
        return tuple(step for step in self.steps if isinstance(step, Wait))

    def deletes(self, phase: Phase | None = None) -> tuple[Delete, ...]:
        """The ``Delete`` steps, optionally only those of one phase, in order."""
        return tuple(
            step
            for step in self.steps
            if isinstance(step, Delete) and (phase is None or step.phase is phase)
        )

    @property
    def writes_anything(self) -> bool:
        """True when carrying the plan out calls ``CreateImage``, ``SyncImages`` or
        ``DeleteImages``."""
        return any(isinstance(step, Create | Copy | Delete) for step in self.steps)


def check_plan(
    inventory: Inventory,
    plan: Plan,
    fmt: NameFormat = DEFAULT_FORMAT,
    *,
    managed: Mapping[str, ManagedImage] | None = None,
    sources: Mapping[str, Inventory] | None = None,
) -> list[str]:
    """Return every way ``plan`` breaks rules 1-5 of docs/design.md for ``inventory``
    (empty: none).

    Checked independently of how the planner works, one function per rule: ownership is
    re-derived from the images (rule 1); the image count is replayed step by step against
    the quota (rule 2); the newest usable image of each instance (rule 3), busy and pinned
    images (rule 4) must survive; creates are unique per (instance, slot) and never reuse a
    name that exists unless a ``before_create`` cleanup removed that image first (rule 5).
    Also checks the step order described in the module doc and that every created image
    will itself be recognised as managed (name, marker, tags). ``managed`` (image id ->
    ``classify_image`` result for every managed image of the inventory) saves classifying
    again when the caller already did. Copies count like creates; with ``sources`` (source
    region -> its inventory) each copy's source must be a usable managed image of that
    region with the copy's name.
    """
    if managed is None:
        origins = copy_origins((sources or {}).values(), fmt)
        managed = {
            owned.image_id: owned
            for owned in split_images(inventory.images, fmt, origins, inventory.provisional)[0]
        }
    facts = _PlanFacts.of(inventory, plan, managed)
    return [
        *_check_step_order(plan),
        *_check_deletes_known_once(facts),
        *_check_rule_1_only_managed(facts),
        *_check_rule_3_newest_survives(facts),
        *_check_rule_4_busy_pinned_failed(facts),
        *_check_rule_2_quota(facts),
        *_check_rule_5_one_image_per_slot(facts),
        *_check_made_images_are_managed(facts, fmt),
        *(
            problem
            for index, step in facts.makes
            if isinstance(step, Copy)
            for problem in _check_copy_source(step, _where(index), inventory, sources, fmt)
        ),
    ]


def _where(index: int) -> str:
    return f"step {index + 1}"


@dataclass(frozen=True, slots=True)
class _PlanFacts:
    """What every rule's check reads: the inventory indexed, and the plan's steps by kind
    (each with its index in ``plan.steps``)."""

    inventory: Inventory
    plan: Plan
    managed: Mapping[str, ManagedImage]
    by_id: Mapping[str, Image]
    deletes: tuple[tuple[int, Delete, DeleteTarget], ...]
    makes: tuple[tuple[int, Create | Copy], ...]

    @classmethod
    def of(
        cls, inventory: Inventory, plan: Plan, managed: Mapping[str, ManagedImage]
    ) -> _PlanFacts:
        """Index ``inventory`` and ``plan`` once."""
        return cls(
            inventory=inventory,
            plan=plan,
            managed=managed,
            by_id={image.image_id: image for image in inventory.images},
            deletes=tuple(
                (index, step, target)
                for index, step in enumerate(plan.steps)
                if isinstance(step, Delete)
                for target in step.targets
            ),
            makes=tuple(
                (index, step)
                for index, step in enumerate(plan.steps)
                if isinstance(step, Create | Copy)
            ),
        )

    def owned_deletes(self) -> list[tuple[int, Delete, Image, ManagedImage]]:
        """The deletes of known managed images (the others are rule 1's or unknown)."""
        return [
            (index, step, self.by_id[target.image_id], self.managed[target.image_id])
            for index, step, target in self.deletes
            if target.image_id in self.by_id and target.image_id in self.managed
        ]


def _check_step_order(plan: Plan) -> list[str]:
    """Steps run in the order of the module doc; a ``Delete`` step is never empty."""
    violations: list[str] = []
    stage = 0  # 0 before-deletes, 1 creates/copies/skips, 2 wait, 3 after-deletes
    for index, step in enumerate(plan.steps):
        if isinstance(step, Delete):
            step_stage = 0 if step.phase is Phase.BEFORE_CREATE else 3
            if not step.targets:
                violations.append(f"{_where(index)}: empty Delete")
        elif isinstance(step, Create | Copy | Skip):
            step_stage = 1
        else:
            step_stage = 2
        if step_stage < stage:
            violations.append(f"{_where(index)}: {type(step).__name__} out of order")
        stage = max(stage, step_stage)
    return violations


def _check_deletes_known_once(facts: _PlanFacts) -> list[str]:
    """Every deleted image is in the inventory, and is deleted once."""
    violations: list[str] = []
    deleted: set[str] = set()
    for index, _step, target in facts.deletes:
        if target.image_id not in facts.by_id:
            violations.append(f"{_where(index)}: deletes unknown image {target.image_id}")
            continue
        if target.image_id in deleted:
            violations.append(f"{_where(index)}: deletes {target.image_id} twice")
        deleted.add(target.image_id)
    return violations


def _check_rule_1_only_managed(facts: _PlanFacts) -> list[str]:
    """Rule 1: only images cvmkeeper made (marker and a name that parses) are deleted."""
    return [
        f"{_where(index)}: rule 1: deletes unmanaged {target.image_id}"
        for index, _step, target in facts.deletes
        if target.image_id in facts.by_id and target.image_id not in facts.managed
    ]


def _check_rule_3_newest_survives(facts: _PlanFacts) -> list[str]:
    """Rule 3: an instance's newest usable image is deleted only after the creates, and
    only when the plan makes (or waits for) a newer one."""
    newest_usable: dict[str, tuple[datetime, str]] = {}
    for image_id, owned in facts.managed.items():
        if facts.by_id[image_id].state.usable:
            best = newest_usable.get(owned.instance_id)
            if best is None or (owned.slot, image_id) > best:
                newest_usable[owned.instance_id] = (owned.slot, image_id)
    coming: dict[str, list[datetime]] = defaultdict(list)
    for _index, made in facts.makes:
        coming[made.instance_id].append(made.slot)
    for wait in facts.plan.waits:
        for image_id in wait.image_ids:
            if image_id in facts.managed:
                coming[facts.managed[image_id].instance_id].append(facts.managed[image_id].slot)
    violations: list[str] = []
    for index, step, image, owned in facts.owned_deletes():
        newest = newest_usable.get(owned.instance_id)
        if newest is None or newest[1] != image.image_id:
            continue
        replaced = any(slot > newest[0] for slot in coming[owned.instance_id])
        if step.phase is Phase.BEFORE_CREATE or not replaced:
            violations.append(
                f"{_where(index)}: rule 3: deletes {image.image_id}, the newest NORMAL "
                f"image of {owned.instance_id}"
            )
    return violations


def _check_rule_4_busy_pinned_failed(facts: _PlanFacts) -> list[str]:
    """Rule 4: no busy image is deleted; nor a pinned one; a cleanup only takes
    ``CREATEFAILED`` images."""
    violations: list[str] = []
    for index, step, image, owned in facts.owned_deletes():
        where = _where(index)
        if image.state.busy:
            violations.append(f"{where}: rule 4: deletes {image.image_id} in state {image.state}")
        if owned.pinned:
            violations.append(f"{where}: deletes pinned {image.image_id}")
        if owned.provisional:
            violations.append(f"{where}: deletes {image.image_id}, ours only by name (no tags)")
        if image.state is ImageState.DELETING:
            violations.append(f"{where}: deletes {image.image_id}, already DELETING")
        if step.kind is DeleteKind.CLEANUP and image.state is not ImageState.CREATEFAILED:
            violations.append(f"{where}: cleanup of non-failed {image.image_id}")
    return violations


def _check_rule_2_quota(facts: _PlanFacts) -> list[str]:
    """Rule 2: replayed step by step, no create or copy takes the region over its quota
    (every image counts; only ``before_create`` deletes of managed images free room)."""
    violations: list[str] = []
    count = facts.inventory.used  # the images created and not listed yet count too
    quota = facts.inventory.quota
    freed = {
        image.image_id
        for _index, step, image, _owned in facts.owned_deletes()
        if step.phase is Phase.BEFORE_CREATE
    }
    count -= len(freed)
    for index, step in facts.makes:
        count += 1
        if count > quota:
            verb = "create" if isinstance(step, Create) else "copy"
            violations.append(
                f"{_where(index)}: rule 2: {verb} {step.image_name} makes {count} images, "
                f"quota {quota}"
            )
    return violations


def _check_rule_5_one_image_per_slot(facts: _PlanFacts) -> list[str]:
    """Rule 5: one create or copy per (instance, slot), never under a name that exists
    (unless a ``before_create`` delete removed its image first)."""
    names_freed = {
        image.name
        for _index, step, image, _owned in facts.owned_deletes()
        if step.phase is Phase.BEFORE_CREATE
    }
    existing_names = {image.name for image in facts.inventory.images}
    violations: list[str] = []
    keys: set[tuple[str, datetime]] = set()
    for index, step in facts.makes:
        verb = "create" if isinstance(step, Create) else "copy"
        key = (step.instance_id, step.slot)
        if key in keys:
            violations.append(f"{_where(index)}: rule 5: second {verb} for {key}")
        keys.add(key)
        if step.image_name in existing_names and step.image_name not in names_freed:
            violations.append(f"{_where(index)}: rule 5: {verb} {step.image_name}: name exists")
    return violations


def _check_made_images_are_managed(facts: _PlanFacts, fmt: NameFormat) -> list[str]:
    """Every image the plan makes will itself be recognised as managed, as its slot."""
    violations: list[str] = []
    for index, step in facts.makes:
        future = classify_image(
            Image(
                image_id="(planned)",
                name=step.image_name,
                state=ImageState.CREATING,
                created_time=facts.plan.now,
                region=facts.inventory.region,
                description=step.description,
                tags=step.tags,
            ),
            fmt,
        )
        if future is None or (future.instance_id, future.slot) != (step.instance_id, step.slot):
            verb = "create" if isinstance(step, Create) else "copy"
            violations.append(
                f"{_where(index)}: {verb} {step.image_name} would not be recognised as managed"
            )
    return violations


def _check_copy_source(
    step: Copy,
    where: str,
    inventory: Inventory,
    sources: Mapping[str, Inventory] | None,
    fmt: NameFormat,
) -> list[str]:
    """A copy comes from another region, and (when known) from a usable managed image."""
    problems: list[str] = []
    if step.source_region == inventory.region:
        problems.append(f"{where}: copy {step.image_name} from its own region")
    if sources is None or step.source_region not in sources:
        return problems
    source = next(
        (i for i in sources[step.source_region].images if i.image_id == step.source_image_id),
        None,
    )
    owned = classify_image(source, fmt) if source is not None else None
    if source is None or owned is None or not source.state.usable:
        problems.append(
            f"{where}: copy {step.image_name}: source {step.source_image_id} is not a NORMAL "
            f"managed image of {step.source_region}"
        )
    elif source.name != step.image_name:
        problems.append(f"{where}: copy {step.image_name} of {source.name}: names differ")
    return problems
