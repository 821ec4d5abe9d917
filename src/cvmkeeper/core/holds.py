"""Managed images the planner must keep whatever the rules say, and say so (rule 7).

Two kinds of managed image would otherwise end a backup, or retention, in silence:

- a *future-dated* image, whose name carries a slot after ``now`` (a host clock that was
  ahead, ``run --at`` in the future). Retention orders by slot, so such an image would
  look newest, cover every later slot ("a newer image covers it") and stop the backups
  until real time caught up. It is held (kept, counted by no rule, never covering a slot)
  and warned about on every run: freshness rests on when images were really made
  (docs/design.md rule 7, docs/trust.md "the slot in a name").
- an image whose ``cvmkeeper:policy`` tag names only policies that no longer exist (a
  policy file removed, or renamed to an extension the loader ignores). Its retention went
  with the policy; deleting it under the remaining rules would be a silent loss. Like an
  orphan it is held and warned about, unless the daemon config's ``orphans:`` rules are
  set: then it is rotated by the rules that remain, with a warning naming the policy.
- while a policy file cannot be used (``hold_unknown``, issue #19: a typo in one file),
  every image of an instance that has an image whose ``cvmkeeper:policy`` tag names a
  policy not loaded is held, whatever ``orphans:`` says: the broken file may be that
  policy, and its rules (which OR with the others of the instance) are unknown. So a
  typo never turns into deleted backups; the hold ends when the file is fixed.

Also reported, not held (they are never deleted anyway): managed images in a state
cvmkeeper never cleans up (``IMPORTFAILED``, a state the API added), which would otherwise
use quota unnoticed; and *look-alikes*, images that carry cvmkeeper's marker but were made
by another identity (docs/trust.md): unmanaged, counted, never deleted, and alerted as a
warning (not only logged), since someone forged or copied our marks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from cvmkeeper.core.inventory import Image, ImageState
from cvmkeeper.core.naming import TAG_INSTANCE, TAG_POLICY, read_policy_tag, slot_tag_value
from cvmkeeper.core.ownership import OWN_IMAGE_TYPE, ManagedImage, looks_managed
from cvmkeeper.core.plan import PlanWarning, WarningKind
from cvmkeeper.core.policy import Policy

#: States of a managed image that no step of cvmkeeper ever leaves or cleans up.
NEVER_CLEANED = (ImageState.IMPORTFAILED, ImageState.UNKNOWN)


@dataclass(frozen=True, slots=True)
class Holds:
    """The managed images with holds applied (same order), and the warnings about them."""

    managed: tuple[ManagedImage, ...]
    notices: tuple[PlanWarning, ...]


def tagged_policies(owned: ManagedImage) -> tuple[str, ...]:
    """The policies named by the image's ``cvmkeeper:policy`` tag (empty when it has none),
    and ``+<n>`` last when the tag had no room for ``n`` more (``core.naming.policy_tag_value``):
    those could be any policy, so a hold that asks "does it name only policies that are not
    loaded?" counts them as not loaded: it holds (keeps) rather than rotate on a guess."""
    tag = read_policy_tag(owned.image.tags.get(TAG_POLICY, ""))
    return (*tag.names, f"+{tag.omitted}") if tag.omitted else tag.names


def hold_images(
    managed: Sequence[ManagedImage],
    policies: Sequence[Policy],
    targeted: Mapping[str, tuple[Policy, ...]],
    now: datetime,
    *,
    rotate_removed: bool,
    hold_unknown: str = "",
) -> Holds:
    """Hold future-dated images and images of removed policies; warn about both, and about
    managed images in a state that is never cleaned. ``rotate_removed`` (the config's
    ``orphans:`` rules are set) lets images of removed policies be rotated, with a warning.
    ``hold_unknown`` (why some policy file cannot be used; empty when all can) holds every
    image of an instance with an image of a policy not loaded, with a warning."""
    known = {policy.name for policy in policies}
    notices: list[PlanWarning] = []
    removed: dict[str, list[ManagedImage]] = defaultdict(list)
    unknown = _unknown_instances(managed, known) if hold_unknown else {}
    broken: dict[str, list[ManagedImage]] = defaultdict(list)
    result: list[ManagedImage] = []
    for owned in managed:
        concerns = tuple(sorted(p.name for p in targeted.get(owned.instance_id, ())))
        if owned.image.state in NEVER_CLEANED:
            notices.append(_stuck_notice(owned, concerns))
        hold = ""
        if owned.slot > now:
            notices.append(_future_notice(owned, concerns))
            hold = f"held: named for slot {slot_tag_value(owned.slot)}, after now"
        elif owned.instance_id in unknown:
            names = unknown[owned.instance_id]
            broken[",".join(names)].append(owned)
            hold = f"held: policy {_quoted(names)} is not loaded while {hold_unknown}"
        elif gone := _removed_policies(owned, known):
            removed[",".join(gone)].append(owned)
            if not rotate_removed:
                hold = f"held: policy {_quoted(gone)} no longer exists"
        result.append(_held(owned, hold) if hold else owned)
    notices += [
        _removed_notice(names, images, rotate_removed) for names, images in sorted(removed.items())
    ]
    notices += [
        _broken_notice(names, images, hold_unknown) for names, images in sorted(broken.items())
    ]
    return Holds(tuple(result), tuple(notices))


def _unknown_instances(
    managed: Sequence[ManagedImage], known: Collection[str]
) -> dict[str, tuple[str, ...]]:
    """Instance id -> the policies not loaded that any of its images names."""
    found: dict[str, set[str]] = defaultdict(set)
    for owned in managed:
        found[owned.instance_id].update(n for n in tagged_policies(owned) if n not in known)
    return {instance: tuple(sorted(names)) for instance, names in found.items() if names}


def _broken_notice(names: str, images: Sequence[ManagedImage], why: str) -> PlanWarning:
    listed = ", ".join(owned.image_id for owned in images[:10])
    more = f" and {len(images) - 10} more" if len(images) > 10 else ""
    return PlanWarning(
        WarningKind.RETENTION,
        f"{len(images)} image(s) held (kept, never rotated) while {why}: their instance has "
        f"images of policy {_quoted(names.split(','))}, which is not loaded, so its "
        f"retention is unknown; fix the file to end the hold: {listed}{more}",
        tuple(name for name in names.split(",") if not name.startswith("+")),
    )


def removed_policy_images(
    managed: Sequence[ManagedImage], policies: Sequence[Policy]
) -> dict[str, list[ManagedImage]]:
    """Managed images whose ``cvmkeeper:policy`` tag names only policies that are not in
    ``policies``, by those names (comma-joined): what ``validate --online`` reports."""
    known = {policy.name for policy in policies}
    found: dict[str, list[ManagedImage]] = defaultdict(list)
    for owned in managed:
        if gone := _removed_policies(owned, known):
            found[",".join(gone)].append(owned)
    return dict(found)


def _held(owned: ManagedImage, reason: str) -> ManagedImage:
    if owned.pinned:
        return owned  # a pin already keeps it
    return replace(owned, pinned=True, hold=reason)


def _removed_policies(owned: ManagedImage, known: Collection[str]) -> tuple[str, ...]:
    """The image's policies when none of them is configured any more (else empty)."""
    names = tagged_policies(owned)
    if not names or any(name in known for name in names):
        return ()
    return names


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(
        f"{name[1:]} more its tag had no room for" if name.startswith("+") else repr(name)
        for name in names
    )


def _future_notice(owned: ManagedImage, concerns: tuple[str, ...]) -> PlanWarning:
    when = owned.image.created_time
    made = (
        "at a time the cloud does not report"
        if when is None
        else when.strftime("%Y-%m-%d %H:%M:%SZ")
    )
    return PlanWarning(
        WarningKind.FUTURE,
        f"{owned.image.name} ({owned.image_id}) of {owned.instance_id} is named for slot "
        f"{slot_tag_value(owned.slot)}, after now, but was made {made} (a clock that was "
        "ahead, or run --at in the future): it is kept and covers no slot; delete it by "
        "hand once a newer backup exists",
        concerns,
        owned.instance_id,
    )


def _stuck_notice(owned: ManagedImage, concerns: tuple[str, ...]) -> PlanWarning:
    return PlanWarning(
        WarningKind.STATE,
        f"{owned.image.name} ({owned.image_id}) of {owned.instance_id} is "
        f"{owned.image.state.value}, a state cvmkeeper never cleans up: it uses quota and is "
        "no backup; delete it by hand",
        concerns,
        owned.instance_id,
    )


def _removed_notice(
    names: str, images: Sequence[ManagedImage], rotate_removed: bool
) -> PlanWarning:
    listed = ", ".join(owned.image_id for owned in images[:10])
    more = f" and {len(images) - 10} more" if len(images) > 10 else ""
    fate = (
        "they are rotated by the rules that remain (orphans: is set) and may be deleted"
        if rotate_removed
        else "they are held (kept, never rotated) until deleted by hand or orphans: is set"
    )
    return PlanWarning(
        WarningKind.RETENTION,
        f"{len(images)} image(s) kept by policy {_quoted(names.split(','))}, which no longer "
        f"exists: {fate}: {listed}{more}",
        tuple(name for name in names.split(",") if not name.startswith("+")),
    )


def lookalike_notices(
    unmanaged: Sequence[Image], targeted: Mapping[str, tuple[Policy, ...]]
) -> list[PlanWarning]:
    """A warning per image that carries cvmkeeper's marker but another creator."""
    notices: list[PlanWarning] = []
    for image in unmanaged:
        if image.image_type != OWN_IMAGE_TYPE or image.creator_trusted:
            continue
        if not looks_managed(image):
            continue
        instance_id = image.tags.get(TAG_INSTANCE) or None
        concerns = tuple(sorted(p.name for p in targeted.get(instance_id or "", ())))
        notices.append(
            PlanWarning(
                WarningKind.OWNERSHIP,
                f"{image.name} ({image.image_id}) carries cvmkeeper's marker but was created by "
                f"{image.creator or 'an unknown creator'}, not by this identity: treated as not "
                "ours (counted, never deleted); check who made or retagged it",
                concerns,
                instance_id,
            )
        )
    return notices
