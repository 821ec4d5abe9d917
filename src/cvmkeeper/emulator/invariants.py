"""The rules that are never broken, checked against what the emulator saw happen.

``check_invariants(state, initial)`` replays the write history of an emulator state
document (``/_emulator/state`` or ``EmulatorCore.state()``) on top of the images and
instances of an earlier state document ``initial`` (taken before the runs under test), in
``seq`` order: creates, deletes, copies, stops, starts and the ``_transition`` entries of
the lifecycles. At every step it checks the rules of docs/design.md and returns every
:class:`Violation` it found (an empty list means every rule held). It is pure: it reads two
dicts and returns values, so the reliability tests, the benchmark and the simulated year
can all call it after every run.

What each rule means here:

- ``unmanaged_touched`` (rule 1): a ``DeleteImages`` call *naming* an image that is not
  managed (``core.ownership.classify_image``: the marker, the description prefix and a name
  that parses, on a private image), whatever the cloud answered.
- ``quota_exceeded`` (rule 2): after any create or copy, a region holds more images than
  its quota (every private image counts, in any state: a ``DELETING`` one until its
  ``_transition`` to ``DELETED``, with the emulator's ``delete_lag_seconds``).
- ``create_into_full_quota`` (rule 2, the send itself): a ``CreateImage`` (not a
  ``DryRun``) that the cloud refused, sent while the region held its quota's worth of
  images: the client counted wrong, whatever the cloud's answer (a quota refusal is only
  the visible part). A successful one beyond the quota is ``quota_exceeded``. A re-send of
  a name the region already holds is not counted: it is refused for the name and cannot
  add an image (a retry after a lost answer, or a lost race, adopted by rule 5).
- ``newest_normal_deleted`` (rule 3): a ``DeleteImages`` call naming the newest ``NORMAL``
  image (by slot) of an instance in that region, at the moment of the call.
- ``busy_deleted`` (rule 4): a ``DeleteImages`` call naming an image that was ``CREATING``,
  ``SYNCING`` or ``IMPORTING`` at that moment (cvmkeeper sees those states, so even asking
  is a bug); ``shared_deleted``: a shared image that really was deleted (sharing is not
  visible through ``DescribeImages``, so an attempt that the cloud refuses is allowed).
- ``duplicate_slot`` (rule 5): a create for an (instance, slot) while another image of that
  slot exists, or after an image of that slot was ever ``NORMAL`` (a failed image that was
  cleaned up may be made again; a backup that existed must not be).
- ``not_restarted`` (rule 9): an instance that a ``StopInstances`` call stopped (or a
  ``CreateImage`` with ``ForcePoweroff`` powered off: ``"PoweredOff"`` in its entry, under
  ``force_poweroff_leaves: stopped``) has no later successful ``StartInstances`` (instances
  stopped before are never stopped by cvmkeeper: the call would be refused).
- ``orphaned_snapshots`` (rule 10, deletion): a successful ``DeleteImages`` of managed
  images without ``DeleteBindedSnap=true``: their snapshots stay behind, billed, with no
  image to show for them.
- ``disk_left_out_silently`` (rule 10): a successful ``CreateImage`` whose ``DataDiskIds``
  leave out a data disk attached at that moment (a local one included: it cannot be imaged,
  so it must be alerted) (the emulator records them as
  ``AttachedDataDisks``) for an instance that is not in ``disk_alerts`` (the instances for
  which a disk warning was alerted, or whose policy asks for fewer disks). Checked only
  when ``disk_alerts`` is given.
- ``slot_missed_silently`` (rule 7): a due (region, instance, slot) of ``due`` whose image
  was never ``NORMAL`` in the replay, and that no error alert named (``alerted``: the
  (region, instance, slot) of every error alert). A region-wide alert does not count: the
  missed slot itself must be named. Checked only when ``due`` is given.
- ``drill_not_terminated`` (issue #16): an instance that a ``RunInstances`` tagged
  ``cvmkeeper:drill`` launched has no later successful ``TerminateInstances`` and still
  exists at the end (a drill instance is always terminated: by its drill, or by the lease
  sweep of a later run).
- ``restore_changed_image`` (issue #16): checked by :func:`check_restore_untouched` around
  restore commands and drills: an image that existed before is gone (or ``DELETING``) or
  changed after (name, state, tags, description), or an image write (create, delete, copy)
  was sent meanwhile.
- ``history_gap``: the replay does not end with the images the state holds (nor with the
  same ones ``DELETING``, under ``delete_lag_seconds``): the history lacks something, so the
  other answers cannot be trusted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cvmkeeper.core.inventory import Image, ImageState
from cvmkeeper.core.naming import DEFAULT_FORMAT, TAG_INSTANCE, NameFormat
from cvmkeeper.core.ownership import classify_image

__all__ = [
    "RULES",
    "DueKey",
    "Violation",
    "check_invariants",
    "check_restore_untouched",
    "format_violations",
]

#: Every rule the checker knows, in docs/design.md's order.
RULES: tuple[str, ...] = (
    "unmanaged_touched",
    "quota_exceeded",
    "create_into_full_quota",
    "newest_normal_deleted",
    "busy_deleted",
    "shared_deleted",
    "duplicate_slot",
    "not_restarted",
    "orphaned_snapshots",
    "disk_left_out_silently",
    "slot_missed_silently",
    "drill_not_terminated",
    "restore_changed_image",
    "history_gap",
)

#: A due slot as rule 7 checks it: (region, instance id, aware UTC slot).
DueKey = tuple[str, str, datetime]

#: The tag of drill instances (``core.drill.DRILL_TAG``; spelled here to keep the checker
#: free of the product's drill code, so a bug there cannot hide from it).
_DRILL_TAG = "cvmkeeper:drill"
_IMAGE_WRITES = frozenset({"CreateImage", "DeleteImages", "SyncImages"})

BUSY_STATES = frozenset({"CREATING", "SYNCING", "IMPORTING"})
_DELETING = "DELETING"
_OWN_TYPE = "PRIVATE_IMAGE"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Violation:
    """One broken rule: which, where, at which history entry, and what happened."""

    rule: str
    region: str
    seq: int | None
    message: str

    def __str__(self) -> str:
        where = f" (history #{self.seq})" if self.seq is not None else ""
        return f"{self.rule} in {self.region}{where}: {self.message}"


@dataclass
class _Image:
    """An image as the replay knows it."""

    image_id: str
    name: str
    state: str
    image_type: str
    shared: bool
    managed: bool
    instance_id: str
    slot: datetime | None


@dataclass
class _Region:
    """One region during the replay."""

    name: str
    quota: int
    images: dict[str, _Image] = field(default_factory=dict)
    #: instance id -> seq of the StopInstances that stopped it, until it is started again
    stopped_by_call: dict[str, int] = field(default_factory=dict)
    #: (instance, slot) -> [(image id, was ever NORMAL)] for every image of the slot
    slot_images: dict[tuple[str, datetime], list[list[Any]]] = field(default_factory=dict)

    def used(self) -> int:
        return sum(1 for image in self.images.values() if image.image_type == _OWN_TYPE)


def check_invariants(
    state: Mapping[str, Any],
    initial: Mapping[str, Any],
    *,
    name_format: NameFormat = DEFAULT_FORMAT,
    disk_alerts: Collection[str] | None = None,
    due: Iterable[DueKey] | None = None,
    alerted: Collection[DueKey] = (),
) -> list[Violation]:
    """Replay ``state``'s history after ``initial`` and return every broken rule.

    ``initial`` is a state document taken before the runs under test (its images and
    instances are the starting point; history entries it already holds are skipped).
    ``name_format`` is the config's image-name format (the default one unless configured).
    ``due`` (the (region, instance, slot) the runs under test were due to make) and
    ``alerted`` (those an error alert named) check rule 7: every due slot ends ``NORMAL``
    or alerted.

    Each history entry goes to the step of its action (``_STEPS``), which checks the rules
    that entry can break; the rules about how the replay ends are checked after it.
    """
    replay = _Replay(_start(initial, state, name_format), name_format, disk_alerts)
    violations: list[Violation] = []
    for entry in _entries_after(state, initial):
        region = replay.regions.get(str(entry.get("region")))
        step = _STEPS.get(str(entry.get("action")))
        if region is not None and step is not None:
            violations += step(replay, region, entry)
    violations += _drills_not_terminated(replay.drills, state)
    for region in replay.regions.values():
        violations += _not_restarted(region)
        violations += _compare_end(region, state)
    if due is not None:
        violations += _silent_misses(replay.regions, due, alerted)
    return violations


@dataclass
class _Replay:
    """What the replay carries from entry to entry besides the regions' images."""

    regions: dict[str, _Region]
    name_format: NameFormat
    disk_alerts: Collection[str] | None
    #: (region, drill instance) -> seq of its launch, until it is terminated
    drills: dict[tuple[str, str], int] = field(default_factory=dict)


def _entries_after(state: Mapping[str, Any], initial: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``state``'s history entries that ``initial`` does not hold yet, in ``seq`` order."""
    start_seq = max((int(e.get("seq", 0)) for e in initial.get("history", [])), default=0)
    return sorted(
        (e for e in state.get("history", []) if int(e.get("seq", 0)) > start_seq),
        key=lambda e: int(e["seq"]),
    )


def _ok_instances(entry: Mapping[str, Any]) -> list[str]:
    """The instances a successful call named (none for a failed one)."""
    return list(entry.get("InstanceIds", [])) if entry.get("result") == "ok" else []


def _step_transition(replay: _Replay, region: _Region, entry: Mapping[str, Any]) -> list[Violation]:
    _transition(region, entry)
    return []


def _step_create(replay: _Replay, region: _Region, entry: Mapping[str, Any]) -> list[Violation]:
    """Rule 2 (a create sent into a full quota; ``_create``: one beyond it), rule 5,
    rule 9's power-off, rule 10's disks."""
    violations = _create_into_full_quota(region, entry)
    violations += _create(region, entry, replay.name_format)
    if entry.get("PoweredOff"):
        for instance_id in _ok_instances(entry):  # ForcePoweroff stopped it
            region.stopped_by_call[instance_id] = int(entry["seq"])
    if replay.disk_alerts is not None:
        violations += _disks_left_out(region, entry, replay.disk_alerts)
    return violations


def _step_delete(replay: _Replay, region: _Region, entry: Mapping[str, Any]) -> list[Violation]:
    return _delete(region, entry)


def _step_sync(replay: _Replay, region: _Region, entry: Mapping[str, Any]) -> list[Violation]:
    return _sync(replay.regions, region, entry)


def _step_stop(replay: _Replay, region: _Region, entry: Mapping[str, Any]) -> list[Violation]:
    """Rule 9: an instance this call stopped is owed a start."""
    for instance_id in _ok_instances(entry):
        region.stopped_by_call[instance_id] = int(entry["seq"])
    return []


def _step_start(replay: _Replay, region: _Region, entry: Mapping[str, Any]) -> list[Violation]:
    for instance_id in _ok_instances(entry):
        region.stopped_by_call.pop(instance_id, None)
    return []


def _step_run(replay: _Replay, region: _Region, entry: Mapping[str, Any]) -> list[Violation]:
    """Issue #16: a drill instance launched is owed a terminate."""
    if _is_drill(entry):
        for instance_id in _ok_instances(entry):
            replay.drills[(region.name, instance_id)] = int(entry["seq"])
    return []


def _step_terminate(replay: _Replay, region: _Region, entry: Mapping[str, Any]) -> list[Violation]:
    for instance_id in _ok_instances(entry):
        replay.drills.pop((region.name, instance_id), None)
    return []


_Step = Callable[[_Replay, _Region, Mapping[str, Any]], list[Violation]]

#: The replay step of each action of the history; other actions change nothing it checks.
_STEPS: dict[str, _Step] = {
    "_transition": _step_transition,
    "CreateImage": _step_create,
    "DeleteImages": _step_delete,
    "SyncImages": _step_sync,
    "StopInstances": _step_stop,
    "StartInstances": _step_start,
    "RunInstances": _step_run,
    "TerminateInstances": _step_terminate,
}


def _drills_not_terminated(
    drills: Mapping[tuple[str, str], int], state: Mapping[str, Any]
) -> list[Violation]:
    """Issue #16: a drill instance never terminated that still exists at the end."""
    existing = {
        (name, str(i.get("InstanceId")))
        for name, r in state.get("regions", {}).items()
        for i in r.get("instances", [])
    }
    return [
        Violation(
            "drill_not_terminated",
            region_name,
            seq,
            f"drill instance {instance_id} was never terminated",
        )
        for (region_name, instance_id), seq in sorted(drills.items())
        if (region_name, instance_id) in existing
    ]


def _not_restarted(region: _Region) -> list[Violation]:
    """Rule 9: every instance a call stopped was started again by the end."""
    return [
        Violation(
            "not_restarted",
            region.name,
            seq,
            f"{instance_id} was stopped by this call and never started again",
        )
        for instance_id, seq in sorted(region.stopped_by_call.items())
    ]


def _silent_misses(
    regions: Mapping[str, _Region], due: Iterable[DueKey], alerted: Collection[DueKey]
) -> list[Violation]:
    """Rule 7: every due slot's image was ``NORMAL`` at some point, or an alert named it."""
    violations: list[Violation] = []
    for key in sorted(set(due)):
        region_name, instance_id, slot = key
        region = regions.get(region_name)
        records = region.slot_images.get((instance_id, slot), []) if region else []
        if any(ever_normal for _image_id, ever_normal in records) or key in alerted:
            continue
        violations.append(
            Violation(
                "slot_missed_silently",
                region_name,
                None,
                f"slot {slot.isoformat()} of {instance_id} has no NORMAL image and no alert "
                "names it",
            )
        )
    return violations


def check_restore_untouched(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Violation]:
    """``restore_changed_image``: between two state documents taken around restores or
    drills (with no backup run in between), every image of ``before`` is still there,
    unchanged, and no image write was sent."""
    violations: list[Violation] = []
    start_seq = max((int(e.get("seq", 0)) for e in before.get("history", [])), default=0)
    for entry in after.get("history", []):
        if int(entry.get("seq", 0)) > start_seq and entry.get("action") in _IMAGE_WRITES:
            violations.append(
                Violation(
                    "restore_changed_image",
                    str(entry.get("region")),
                    int(entry["seq"]),
                    f"{entry['action']} was sent ({entry.get('ImageIds')})",
                )
            )
    keys = ("ImageName", "Tags", "ImageDescription", "SnapshotSet")
    for name, region in before.get("regions", {}).items():
        now = {i["ImageId"]: i for i in after.get("regions", {}).get(name, {}).get("images", [])}
        for image in region.get("images", []):
            later = now.get(image["ImageId"])
            if later is None or (
                later.get("ImageState") == _DELETING and image.get("ImageState") != _DELETING
            ):  # a DELETING image (delete_lag_seconds) is as gone as one no longer listed
                suffix = "" if later is None else " (DELETING)"
                violations.append(
                    Violation(
                        "restore_changed_image", name, None, f"{image['ImageId']} is gone{suffix}"
                    )
                )
                continue
            changed = [k for k in keys if image.get(k) != later.get(k)]
            if image.get("ImageState") == "NORMAL" and later.get("ImageState") != "NORMAL":
                changed.append("ImageState")  # a lifecycle (CREATING -> NORMAL) is not ours
            if changed:
                violations.append(
                    Violation(
                        "restore_changed_image",
                        name,
                        None,
                        f"{image['ImageId']} changed: {changed}",
                    )
                )
    return violations


def _is_drill(entry: Mapping[str, Any]) -> bool:
    specs = (entry.get("params") or {}).get("TagSpecification") or []
    return any(
        isinstance(spec, Mapping)
        and any(
            isinstance(tag, Mapping) and tag.get("Key") == _DRILL_TAG
            for tag in spec.get("Tags") or []
        )
        for spec in specs
    )


def format_violations(violations: Iterable[Violation]) -> str:
    """One line per violation, for assertion messages and logs."""
    return "\n".join(str(v) for v in violations) or "no violations"


# ---------------------------------------------------------------------- replay steps


def _start(
    initial: Mapping[str, Any], state: Mapping[str, Any], name_format: NameFormat
) -> dict[str, _Region]:
    regions: dict[str, _Region] = {}
    # Images someone else created are never managed (issue 19): the caller's UIN decides.
    caller = state.get("caller_uin") or initial.get("caller_uin")
    for name, raw in initial.get("regions", {}).items():
        quota = int(state.get("regions", {}).get(name, raw).get("quota", raw.get("quota", 0)))
        region = _Region(name=name, quota=quota)
        shared = set(raw.get("shared_image_ids", []))
        for api in raw.get("images", []):
            image = _image(
                api, name, name_format, shared=str(api["ImageId"]) in shared, caller=caller
            )
            region.images[image.image_id] = image
            _remember_slot(region, image)
        regions[name] = region
    return regions


def _image(
    api: Mapping[str, Any],
    region: str,
    name_format: NameFormat,
    *,
    shared: bool = False,
    instance_id: str = "",
    caller: str | None = None,
) -> _Image:
    """The replay's view of an image given as a ``DescribeImages`` entry; with ``caller``
    (the daemon's UIN), an image whose ``ImageCreator`` is another is never managed."""
    image_id = str(api["ImageId"])
    name = str(api.get("ImageName", ""))
    state = str(api.get("ImageState", ""))
    image_type = str(api.get("ImageType", _OWN_TYPE))
    tags = _tags(api.get("Tags"))
    view = Image(
        image_id=image_id,
        name=name,
        state=ImageState.parse(state),
        created_time=_time(api.get("CreatedTime")),
        region=region,
        description=str(api.get("ImageDescription", "")),
        image_type=image_type,
        tags=tags,
        creator_trusted=caller is None or api.get("ImageCreator", caller) == caller,
    )
    owned = classify_image(view, name_format)
    return _Image(
        image_id=image_id,
        name=name,
        state=state,
        image_type=image_type,
        shared=shared,
        managed=owned is not None,
        instance_id=owned.instance_id if owned else (instance_id or tags.get(TAG_INSTANCE, "")),
        slot=owned.slot if owned else None,
    )


def _remember_slot(region: _Region, image: _Image) -> None:
    if image.slot is None:
        return
    key = (image.instance_id, image.slot)
    region.slot_images.setdefault(key, []).append([image.image_id, image.state == "NORMAL"])


def _transition(region: _Region, entry: Mapping[str, Any]) -> None:
    to = str(entry.get("to", ""))
    for image_id in entry.get("ImageIds") or []:
        image = region.images.get(image_id)
        if image is None:
            continue
        if to == "DELETED":  # the end of a DELETING image's lag: gone, no longer counted
            del region.images[image_id]
            continue
        image.state = to
        if to == "NORMAL" and image.slot is not None:
            for record in region.slot_images.get((image.instance_id, image.slot), []):
                if record[0] == image_id:
                    record[1] = True


def _create(region: _Region, entry: Mapping[str, Any], name_format: NameFormat) -> list[Violation]:
    if entry.get("result") != "ok" or not entry.get("ImageIds"):
        return []
    params: Mapping[str, Any] = entry.get("params") or {}
    tags: list[Any] = []
    for spec in params.get("TagSpecification") or []:
        if isinstance(spec, dict) and isinstance(spec.get("Tags"), list):
            tags += spec["Tags"]
    seq = int(entry["seq"])
    api = {
        "ImageId": entry["ImageIds"][0],
        "ImageName": params.get("ImageName", ""),
        "ImageState": "CREATING",
        "ImageType": _OWN_TYPE,
        "Tags": tags,
        "ImageDescription": params.get("ImageDescription", ""),
        "CreatedTime": entry.get("time"),
    }
    image = _image(api, region.name, name_format, instance_id=str(params.get("InstanceId", "")))
    violations: list[Violation] = []
    if image.slot is not None:
        earlier = region.slot_images.get((image.instance_id, image.slot), [])
        live = [image_id for image_id, _ in earlier if image_id in region.images]
        made = [image_id for image_id, normal in earlier if normal]
        if live or made:
            violations.append(
                Violation(
                    "duplicate_slot",
                    region.name,
                    seq,
                    f"{image.name} ({image.image_id}) made for {image.instance_id} slot "
                    f"{image.slot:%Y-%m-%dT%H:%MZ}, which already has {sorted(set(live + made))}",
                )
            )
    region.images[image.image_id] = image
    _remember_slot(region, image)
    violations += _quota(region, seq)
    return violations


def _create_into_full_quota(region: _Region, entry: Mapping[str, Any]) -> list[Violation]:
    """Rule 2's send: a refused ``CreateImage`` (not a ``DryRun``) while the region was full,
    other than a re-send of a name it holds (refused for the name; it cannot add an image).
    Checked before the entry is replayed (a successful one is ``_create``'s to count)."""
    params: Mapping[str, Any] = entry.get("params") or {}
    if entry.get("result") == "ok" or str(params.get("DryRun", "")).lower() == "true":
        return []
    name = params.get("ImageName", "")
    if region.used() < region.quota or any(i.name == name for i in region.images.values()):
        return []
    return [
        Violation(
            "create_into_full_quota",
            region.name,
            int(entry["seq"]),
            f"CreateImage of {name} sent while the region held {region.used()} images, its "
            f"quota {region.quota} (answered {entry.get('result')})",
        )
    ]


def _delete(region: _Region, entry: Mapping[str, Any]) -> list[Violation]:
    seq = int(entry["seq"])
    ok = entry.get("result") == "ok"
    named = [region.images[i] for i in entry.get("ImageIds") or [] if i in region.images]
    newest = _newest_normal(region)
    violations: list[Violation] = []
    for image in named:
        label = f"{image.name} ({image.image_id})"
        if not image.managed:
            violations.append(
                Violation(
                    "unmanaged_touched",
                    region.name,
                    seq,
                    f"DeleteImages named unmanaged image {label}",
                )
            )
        if image.state in BUSY_STATES:
            violations.append(
                Violation(
                    "busy_deleted",
                    region.name,
                    seq,
                    f"DeleteImages named {label} while {image.state}",
                )
            )
        if image.shared and ok:
            violations.append(
                Violation("shared_deleted", region.name, seq, f"shared image {label} was deleted")
            )
        if image.managed and newest.get(image.instance_id) == image.image_id:
            violations.append(
                Violation(
                    "newest_normal_deleted",
                    region.name,
                    seq,
                    f"DeleteImages named {label}, the newest NORMAL image of {image.instance_id}",
                )
            )
    managed = [image for image in named if image.managed]
    if ok and managed and (entry.get("params") or {}).get("DeleteBindedSnap") is not True:
        violations.append(
            Violation(
                "orphaned_snapshots",
                region.name,
                seq,
                f"DeleteImages of {', '.join(i.image_id for i in managed)} without "
                "DeleteBindedSnap=true left their snapshots behind",
            )
        )
    if ok:
        for image in named:
            if entry.get("deleting"):  # delete_lag_seconds: it counts until its transition
                image.state = "DELETING"
            else:
                del region.images[image.image_id]
    return violations


def _disks_left_out(
    region: _Region, entry: Mapping[str, Any], alerted: Collection[str]
) -> list[Violation]:
    if entry.get("result") != "ok" or not entry.get("ImageIds"):
        return []
    params: Mapping[str, Any] = entry.get("params") or {}
    instance_id = str(params.get("InstanceId", ""))
    asked = set(params.get("DataDiskIds") or [])
    missing = [d for d in entry.get("AttachedDataDisks") or [] if d not in asked]
    if not missing or instance_id in alerted:
        return []
    return [
        Violation(
            "disk_left_out_silently",
            region.name,
            int(entry["seq"]),
            f"image {entry['ImageIds'][0]} of {instance_id} leaves out attached data disks "
            f"{', '.join(missing)} and no alert named the instance",
        )
    ]


def _sync(
    regions: Mapping[str, _Region], region: _Region, entry: Mapping[str, Any]
) -> list[Violation]:
    if entry.get("result") != "ok":
        return []
    seq = int(entry["seq"])
    for image_id in entry.get("ImageIds") or []:
        if image_id in region.images:
            region.images[image_id].state = "SYNCING"
    violations: list[Violation] = []
    sources = [region.images[i] for i in entry.get("ImageIds") or [] if i in region.images]
    copy_name = (entry.get("params") or {}).get("ImageName")
    copies = list(entry.get("copies") or [])
    per_source = max(1, len(copies) // max(1, len(sources)))
    for index, copy in enumerate(copies):  # the emulator lists them source by source
        target = regions.get(str(copy.get("Region")))
        if target is None or index // per_source >= len(sources):
            continue
        source = sources[index // per_source]
        target.images[str(copy["ImageId"])] = _Image(
            image_id=str(copy["ImageId"]),
            name=str(copy_name or source.name),
            state="CREATING",
            image_type=_OWN_TYPE,
            shared=False,
            managed=source.managed,
            instance_id=source.instance_id,
            slot=source.slot,
        )
        violations += _quota(target, seq)
    return violations


def _quota(region: _Region, seq: int) -> list[Violation]:
    used = region.used()
    if used <= region.quota:
        return []
    return [
        Violation(
            "quota_exceeded",
            region.name,
            seq,
            f"{used} images in a region whose quota is {region.quota}",
        )
    ]


def _newest_normal(region: _Region) -> dict[str, str]:
    """instance id -> id of its newest NORMAL managed image (by slot, then id)."""
    newest: dict[str, tuple[datetime, str]] = {}
    for image in region.images.values():
        if not image.managed or image.state != "NORMAL" or image.slot is None:
            continue
        key = (image.slot, image.image_id)
        if image.instance_id not in newest or key > newest[image.instance_id]:
            newest[image.instance_id] = key
    return {instance: image_id for instance, (_, image_id) in newest.items()}


def _compare_end(region: _Region, state: Mapping[str, Any]) -> list[Violation]:
    raw = state.get("regions", {}).get(region.name)
    if raw is None:
        return []
    actual = {str(i["ImageId"]) for i in raw.get("images", [])}
    replayed = set(region.images)
    # under delete_lag_seconds a deleted image is still held, DELETING: the replay must
    # have seen its DeleteImages too, or the history lacks it just as if it were gone
    deleting = {
        str(i["ImageId"]) for i in raw.get("images", []) if i.get("ImageState") == _DELETING
    }
    replayed_deleting = {i for i, image in region.images.items() if image.state == _DELETING}
    if actual == replayed and deleting == replayed_deleting:
        return []
    unseen = sorted((deleting ^ replayed_deleting) & actual & replayed)
    return [
        Violation(
            "history_gap",
            region.name,
            None,
            f"the replay ends with {sorted(replayed - actual)} extra and "
            f"{sorted(actual - replayed)} missing"
            + (f", and disagrees on which are DELETING: {unseen}" if unseen else ""),
        )
    ]


def _tags(raw: Any) -> dict[str, str]:
    if not isinstance(raw, list):
        return {}
    return {
        str(t["Key"]): str(t.get("Value", "")) for t in raw if isinstance(t, dict) and "Key" in t
    }


def _time(raw: Any) -> datetime:
    if not isinstance(raw, str) or not raw:
        return _EPOCH
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return _EPOCH
