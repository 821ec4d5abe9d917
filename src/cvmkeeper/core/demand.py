"""What a plan is built from: the instance sets of a region and the demands on it.

An *instance set* is every managed image of one instance in the region, with the keep
rules of every policy that targets (or copies) it; a *demand* is one image the run wants
there: a due slot to create, or a source image to copy. Creates and copies are one type,
because they share the quota and are resolved together (``core.rotation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cvmkeeper.core.ownership import ManagedImage
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.retention import RuleSet

ORPHAN_RULES = "orphans"


def new_id(instance_id: str, slot: datetime) -> str:
    """The id a planned image has inside retention (never a real id, never deleted)."""
    return f"new:{instance_id}:{slot.isoformat()}"


def age_key(image: ManagedImage) -> tuple[datetime, datetime, str]:
    """Oldest first: by slot, then creation time; an unknown creation time (null
    ``CreatedTime``) sorts as the newest of its slot, so it is never the first to go."""
    made = image.image.created_time or datetime.max.replace(tzinfo=UTC)
    return (image.slot, made, image.image_id)


@dataclass(slots=True)
class Demand:
    """One image the run wants in this region: a due (instance, slot) to create, or
    (``source`` set) a source region's image to copy here. Both go through the same quota
    resolution; ``priority`` orders them (stalest instance first)."""

    instance_id: str
    slot: datetime
    name: str
    policies: tuple[Policy, ...]
    priority: tuple[datetime, float, str]
    source: ManagedImage | None = None

    @property
    def policy_names(self) -> tuple[str, ...]:
        """The names of the policies wanting it, sorted."""
        return tuple(sorted(policy.name for policy in self.policies))

    @property
    def may_evict(self) -> bool:
        """True when every policy wanting it says ``on_quota_full: evict``."""
        return all(policy.on_quota_full == "evict" for policy in self.policies)

    @property
    def what(self) -> str:
        """``make`` or ``copy from <region>``, for messages."""
        return "make" if self.source is None else f"copy from {self.source.image.region}"


@dataclass(slots=True)
class InstanceSet:
    """The managed images of one instance and the rules that apply to them."""

    instance_id: str
    images: list[ManagedImage]
    rules: tuple[RuleSet, ...]
    orphan: bool
    waited: frozenset[str] = frozenset()  # ids of in-flight images of due slots
    newest_usable: ManagedImage | None = None
    held: bool = False  # maybe copies whose source region was not read: keep all

    @property
    def policy_names(self) -> tuple[str, ...]:
        """The policies whose rules keep this set (orphan rules excluded)."""
        return tuple(sorted({r.policy for r in self.rules if r.policy != ORPHAN_RULES}))
