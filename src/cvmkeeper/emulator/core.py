"""The emulator's state machine: every CVM action we use, with no HTTP in sight.

``EmulatorCore.call(action, region, params)`` takes the request body the SDK sends and
returns the ``Response`` body without ``RequestId``, or raises :class:`ApiError` /
:class:`ConnectionFault`. Time comes only from the injected clock and chance only from a
seeded ``random.Random``, so an in-process simulation on a ``ManualClock`` is exactly
repeatable. Lifecycles (``CREATING -> NORMAL``, ``STOPPING -> STOPPED``, ...) are applied
lazily: every call first advances the state to the clock's ``now``.

History. Every write (CreateImage, DeleteImages, SyncImages, StopInstances,
StartInstances, RunInstances, TerminateInstances, ResetInstance of ``launch.py``, and the Tag
API's TagResources, UnTagResources of ``tagging.py``) is
appended in order, whatever its outcome, as
``{"seq", "time", "region", "action", "params", "result", "request_id", "ImageIds",
"InstanceIds"}`` where ``result`` is ``"ok"``, an error code, or ``"reset"`` for an injected
connection reset (not processed). A lost response adds ``"lost_response": true`` to an
entry that did take effect. Lifecycle changes are entries with ``"action": "_transition"``,
``"from"`` and ``"to"`` states, and ``time`` = the moment it happened (e.g. an image
becoming ``NORMAL`` or ``CREATEFAILED``, an instance becoming ``STOPPED``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import string
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cvmkeeper.emulator import params as p
from cvmkeeper.emulator.clock import Clock
from cvmkeeper.emulator.errors import ApiError, ConnectionFault
from cvmkeeper.emulator.fleet import DISK_TYPES, FAULT_KINDS, FleetSpec, parse_faults
from cvmkeeper.emulator.launch import TERMINATED, LaunchActions
from cvmkeeper.emulator.records import (
    SYSTEM_DISK_GIB,
    DiskRecord,
    ImageRecord,
    InstanceRecord,
    RegionState,
    SnapshotRecord,
    api_time,
)
from cvmkeeper.emulator.tagging import TagActions

__all__ = ["ApiError", "ConnectionFault", "EmulatorCore"]

LAUNCH_ACTIONS = ("RunInstances", "TerminateInstances", "ResetInstance")
#: Tencent's Tag API (service ``tag``, 2018-08-13; emulator/tagging.py)
TAG_ACTIONS = ("TagResources", "UnTagResources")
WRITE_ACTIONS = frozenset(
    {
        *TAG_ACTIONS,
        "CreateImage",
        "DeleteImages",
        "SyncImages",
        "StopInstances",
        "StartInstances",
        *LAUNCH_ACTIONS,
    }
)
BUSY_IMAGE_STATES = frozenset({"CREATING", "SYNCING", "IMPORTING"})
#: an image ``DeleteImages`` accepted while ``delete_lag_seconds`` holds it (older docs'
#: state); when its ``ready_at`` comes it is gone (a ``_transition`` to ``DELETED``)
DELETING = "DELETING"
DELETED = "DELETED"
TRANSITIONAL_INSTANCE_STATES = frozenset({"PENDING", "STOPPING", "STARTING", "REBOOTING"})
STATE_FILE_VERSION = 1
_REGION_SHAPE = "abcdefghijklmnopqrstuvwxyz-0123456789"

Handler = Callable[[RegionState, Mapping[str, Any], datetime, str], "Outcome"]


class Outcome:
    """What a handler produced: the response body and the ids a write touched."""

    __slots__ = ("body", "extra", "image_ids", "instance_ids")

    def __init__(
        self,
        body: dict[str, Any],
        *,
        image_ids: list[str] | None = None,
        instance_ids: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.body = body
        self.image_ids = image_ids
        self.instance_ids = instance_ids
        self.extra = extra or {}


@dataclass(frozen=True)
class _CreateRequest:
    """CreateImage's parameters once each has been checked on its own."""

    name: str
    instance_id: str
    description: str
    data_disks: list[str]
    dry_run: bool
    tags: dict[str, str]


class EmulatorCore:
    """The state of one emulated Tencent Cloud account, driven by API calls.

    Thread-safe: one lock serialises every call, so concurrent clients see the same
    atomic check-then-act the cloud gives (e.g. exactly one create wins the last quota slot).
    """

    _faults: dict[str, dict[str, float]]
    _calls: Counter[str]
    _errors: Counter[str]
    _injected: Counter[str]
    _history: list[dict[str, Any]]
    _windows: dict[tuple[str, str], deque[datetime]]
    _regions: dict[str, RegionState]

    def __init__(self, fleet: FleetSpec, clock: Clock) -> None:
        """Seed the account from ``fleet``; all time is read from ``clock``."""
        self._fleet = fleet
        self._clock = clock
        self._lock = threading.RLock()
        self._handlers: dict[str, Handler] = {
            "CreateImage": self._create_image,
            "DescribeImages": self._describe_images,
            "DeleteImages": self._delete_images,
            "DescribeImageQuota": self._describe_image_quota,
            "SyncImages": self._sync_images,
            "DescribeInstances": self._describe_instances,
            "DescribeInstancesStatus": self._describe_instances_status,
            "StopInstances": self._stop_instances,
            "StartInstances": self._start_instances,
            "GetCallerIdentity": self._get_caller_identity,  # STS, 2018-08-13
            # restore and drills (issue #16): emulator/launch.py
            **LaunchActions(lambda: self._fleet, self._new_id, Outcome).handlers(),
            # Tencent's Tag API (issue #18): emulator/tagging.py
            **TagActions(
                lambda: self._regions, lambda: self._fleet.credentials.uin, Outcome
            ).handlers(),
        }
        self._seed_from_fleet()

    # ------------------------------------------------------------------ public API

    @property
    def fleet(self) -> FleetSpec:
        """The fleet this core was seeded from (``reset`` returns to it)."""
        return self._fleet

    @property
    def clock(self) -> Clock:
        """The injected clock."""
        return self._clock

    def call(
        self, action: str, region: str | None, params: Mapping[str, Any], *, request_id: str = ""
    ) -> dict[str, Any]:
        """Run one API call and return its ``Response`` body without ``RequestId``.

        Raises :class:`ApiError` for every API error and :class:`ConnectionFault` for
        injected network faults (``committed`` tells whether the call took effect).
        """
        with self._lock:
            now = self._clock.now()
            self._calls[action] += 1
            fault = ""
            try:
                handler = self._handlers.get(action)
                if handler is None:
                    raise ApiError("InvalidAction", f"The action `{action}` is not supported.")
                fault = self._draw_fault(action)
                if fault:
                    self._injected[fault] += 1
                if fault == "reset":
                    self._record_write(
                        action, region, params, now, "reset", request_id=request_id, outcome=None
                    )
                    raise ConnectionFault(committed=False)
                if fault in ("InternalError", "RequestLimitExceeded"):
                    raise ApiError(fault, f"Injected fault: {fault}.")
                state = self._region(region)
                self._advance(now)
                self._check_rate(state.name, action, now)
                p.check_known(action, params)
                outcome = handler(state, params, now, request_id)
            except ApiError as error:
                self._errors[error.code] += 1
                self._record_write(
                    action,
                    region,
                    params,
                    now,
                    error.code,
                    request_id=request_id,
                    outcome=None,
                    lost=fault == "lost_response",
                )
                if fault == "lost_response":
                    raise ConnectionFault(committed=True) from error
                raise
            self._record_write(
                action,
                region,
                params,
                now,
                "ok",
                request_id=request_id,
                outcome=outcome,
                lost=fault == "lost_response",
            )
            if fault == "lost_response":
                raise ConnectionFault(committed=True)
            return outcome.body

    def record_rejected(self, action: str, code: str) -> None:
        """Count a request the HTTP front rejected before the core saw it (e.g. auth)."""
        with self._lock:
            if action and len(action) <= 64:
                self._calls[action] += 1
            self._errors[code] += 1

    def state(self, *, history_since: int = 0) -> dict[str, Any]:
        """Return the ``/_emulator/state`` document: regions, call/error counts, the
        injected faults by kind (``injected``), history.

        ``history_since``: only the history entries whose ``seq`` is above it (a checker
        that reads the state after every run replays only what is new; copying a long
        history each time would cost more than the run).
        """
        if history_since < 0:
            raise ValueError(f"history_since must be >= 0, not {history_since}")
        with self._lock:
            now = self._clock.now()
            self._advance(now)
            regions = {
                name: {
                    "quota": region.quota,
                    "quota_used": region.quota_used(),
                    "instances": [i.to_api() for i in region.instances.values()],
                    "images": [i.to_api() for i in self._images_sorted(region)],
                    "shared_image_ids": sorted(
                        i.image_id for i in region.images.values() if i.shared
                    ),
                    "leftover_snapshots": list(region.leftover_snapshots),
                }
                for name, region in self._regions.items()
            }
            return {
                "now": api_time(now),
                "caller_uin": self._fleet.credentials.uin,  # GetCallerIdentity's UIN
                "regions": regions,
                "calls": dict(self._calls),
                "errors": dict(self._errors),
                "injected": dict(self._injected),
                "faults": copy.deepcopy(self._faults),
                "history": copy.deepcopy(self._history[history_since:]),  # entry n: seq n+1
            }

    def change_disks(
        self,
        instance_id: str,
        *,
        attach: Mapping[str, Any] | None = None,
        detach: str | None = None,
    ) -> dict[str, Any]:
        """Attach a data disk to, or detach one from, an instance at runtime (what a person
        does in the console between two slots). ``attach`` is ``{"id", "type", "size"}``.
        Returns the instance's ``DataDisks``; raises ``ValueError`` for a bad request."""
        with self._lock:
            instance = next(
                (
                    r.instances[instance_id]
                    for r in self._regions.values()
                    if instance_id in r.instances
                ),
                None,
            )
            if instance is None:
                raise ValueError(f"no instance {instance_id!r}")
            attached = {disk.disk_id for disk in instance.data_disks}
            if detach is not None:
                if detach not in attached:
                    raise ValueError(f"{detach!r} is not attached to {instance_id}")
                instance.data_disks = [d for d in instance.data_disks if d.disk_id != detach]
            if attach is not None:
                disk_id = attach.get("id")
                if not isinstance(disk_id, str) or not disk_id.startswith("disk-"):
                    raise ValueError("attach needs an id such as disk-1a2b3c4d")
                if disk_id in attached:
                    raise ValueError(f"{disk_id!r} is already attached to {instance_id}")
                disk_type = attach.get("type", "CLOUD_PREMIUM")
                size = attach.get("size", 100)
                if disk_type not in DISK_TYPES or not isinstance(size, int) or size < 1:
                    raise ValueError(f"bad disk type or size: {disk_type!r}, {size!r}")
                instance.data_disks.append(DiskRecord(disk_id, disk_type, size))
            return {
                "InstanceId": instance_id,
                "DataDisks": [disk.to_api() for disk in instance.data_disks],
            }

    def set_faults(self, mapping: Mapping[str, Any]) -> None:
        """Replace the injected faults (the fleet file's ``faults:`` mapping, or
        ``{"faults": {...}}``). Raises ``FleetError`` naming the bad key."""
        raw: Any = mapping.get("faults", mapping) if set(mapping) == {"faults"} else mapping
        faults = parse_faults(raw)
        with self._lock:
            self._faults = faults

    def reset(self) -> None:
        """Return to the fleet's initial state: state, counters, history, faults, RNG."""
        with self._lock:
            self._seed_from_fleet()

    def save(self, path: str | Path) -> None:
        """Write the whole state as JSON (atomically). The secret key is not written."""
        with self._lock:
            self._advance(self._clock.now())
            source = copy.deepcopy(dict(self._fleet.source))
            if isinstance(source.get("credentials"), dict):
                source["credentials"] = {"secret_id": self._fleet.credentials.secret_id}
            document = {
                "version": STATE_FILE_VERSION,
                "fleet": source,
                "regions": [r.to_json() for r in self._regions.values()],
                "calls": dict(self._calls),
                "errors": dict(self._errors),
                "injected": dict(self._injected),
                "faults": self._faults,
                "history": self._history,
                "rng": _rng_state(self._rng),
                "ids_rng": _rng_state(self._ids),
            }
            text = json.dumps(document, indent=1, default=str)
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, clock: Clock, fleet: FleetSpec | None = None) -> EmulatorCore:
        """Rebuild a core saved by :meth:`save`.

        The state file holds no secret key: pass the ``fleet`` (e.g. the ``--fleet`` file)
        to accept its key pair; without it the key pair is the fleet default.
        """
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        if document.get("version") != STATE_FILE_VERSION:
            raise ValueError(f"{path}: unsupported emulator state file version")
        if fleet is None:
            fleet = FleetSpec.from_mapping(document["fleet"], origin=f"{path}:fleet")
        core = cls(fleet, clock)
        with core._lock:
            core._regions = {r["name"]: RegionState.from_json(r) for r in document["regions"]}
            core._calls = Counter(document.get("calls", {}))
            core._errors = Counter(document.get("errors", {}))
            core._injected = Counter(document.get("injected", {}))
            core._faults = parse_faults(document.get("faults", {}))
            core._history = list(document.get("history", []))
            core._rng.setstate(_rng_from_json(document["rng"]))
            core._ids.setstate(_rng_from_json(document["ids_rng"]))
        return core

    # ------------------------------------------------------------------ machinery

    def _seed_from_fleet(self) -> None:
        fleet = self._fleet
        now = self._clock.now()
        self._rng = random.Random(fleet.seed)
        self._ids = random.Random(None if fleet.seed is None else fleet.seed + 1)
        self._faults = {k: dict(v) for k, v in fleet.faults.items()}
        self._calls = Counter()
        self._errors = Counter()
        self._injected = Counter()
        self._history = []
        self._windows = {}
        self._regions = {}
        for index, (name, spec) in enumerate(fleet.regions.items()):
            region = RegionState(name=name, quota=spec.quota)
            for n, inst in enumerate(spec.instances):
                region.instances[inst.id] = InstanceRecord(
                    instance_id=inst.id,
                    name=inst.name,
                    region=name,
                    zone=inst.zone,
                    state=inst.state,
                    created_time=inst.created_time or now - timedelta(days=30),
                    tags=dict(inst.tags),
                    not_supported=inst.not_supported,
                    instance_type=inst.instance_type,
                    os_name=inst.os_name,
                    data_disks=[DiskRecord(d.id, d.type, d.size) for d in inst.data_disks],
                    system_disk_id=self._new_id("disk"),
                    system_disk_size=inst.system_disk_size,
                    private_ip=f"10.{index % 250}.{n // 250}.{n % 250 + 2}",
                )
            for n, img in enumerate(spec.images):
                created = img.created_time or now - timedelta(days=60, minutes=n)
                region.images[img.id] = ImageRecord(
                    image_id=img.id,
                    name=img.name,
                    region=name,
                    state=img.state,
                    created_time=created,
                    description=img.description,
                    image_type=img.image_type,
                    source="OFFICIAL" if img.image_type == "PUBLIC_IMAGE" else "CREATE_IMAGE",
                    instance_id=img.instance_id,
                    tags=dict(img.tags),
                    shared=img.shared,
                    creator=img.creator or fleet.credentials.uin,
                    created_time_known=img.created_time is not None,
                    snapshots=[SnapshotRecord(self._new_id("snap"), "SYSTEM_DISK", SYSTEM_DISK_GIB)]
                    if img.image_type == "PRIVATE_IMAGE"
                    else [],
                    # a seeded in-flight image finishes like a fresh one
                    ready_at=now + timedelta(seconds=fleet.timing.create_seconds)
                    if img.state in BUSY_IMAGE_STATES
                    else None,
                )
            self._regions[name] = region

    def _new_id(self, prefix: str) -> str:
        alphabet = string.ascii_lowercase + string.digits
        regions: dict[str, RegionState] = getattr(self, "_regions", {})
        taken = {i for r in regions.values() for i in (*r.images, *r.instances)}
        for _ in range(1000):
            candidate = f"{prefix}-" + "".join(self._ids.choice(alphabet) for _ in range(8))
            if candidate not in taken:
                return candidate
        raise RuntimeError("could not find a free id")  # pragma: no cover - 36**8 ids

    def _region(self, region: str | None) -> RegionState:
        if not region:
            raise ApiError(
                "MissingParameter", "The request is missing a required parameter `Region`."
            )
        state = self._regions.get(region)
        if state is None:
            if all(c in _REGION_SHAPE for c in region) and region.count("-") >= 1:
                raise ApiError(
                    "UnsupportedRegion",
                    f"The region `{region}` is not supported (not in this fleet).",
                )
            raise ApiError("InvalidRegion.NotFound", f"The region `{region}` does not exist.")
        return state

    def _draw_fault(self, action: str) -> str:
        probabilities = self._faults.get(action) or self._faults.get("*")
        if not probabilities:
            return ""
        draw = self._rng.random()
        threshold = 0.0
        for kind in FAULT_KINDS:
            threshold += probabilities.get(kind, 0.0)
            if draw < threshold:
                return kind
        return ""

    def _check_rate(self, region: str, action: str, now: datetime) -> None:
        limit = self._fleet.rate_limits.get(action, 0.0)
        if limit <= 0:
            return
        window = self._windows.setdefault((region, action), deque())
        horizon = now - timedelta(seconds=1)
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= limit:
            raise ApiError(
                "RequestLimitExceeded",
                f"{action} is limited to {limit:g} requests per second in {region}.",
            )
        window.append(now)

    def _advance(self, now: datetime) -> None:
        """Apply every lifecycle transition due at or before ``now``, oldest first."""
        due: list[tuple[datetime, str, RegionState, ImageRecord | InstanceRecord]] = []
        for region in self._regions.values():
            for image in region.images.values():
                if image.ready_at is not None and image.ready_at <= now:
                    due.append((image.ready_at, image.image_id, region, image))
            for instance in region.instances.values():
                if instance.ready_at is not None and instance.ready_at <= now:
                    due.append((instance.ready_at, instance.instance_id, region, instance))
        due.sort(key=lambda item: (item[0], item[1]))
        for when, _, region, record in due:
            before = record.state
            record.ready_at = None
            entry: dict[str, Any] = {
                "time": _history_time(when),
                "region": region.name,
                "action": "_transition",
                "params": {},
                "result": "ok",
                "from": before,
            }
            if isinstance(record, ImageRecord):
                self._image_transition(region, record, entry)
            else:
                self._instance_transition(region, record, entry)
            entry["to"] = record.state
            self._append_history(entry)

    @staticmethod
    def _image_transition(region: RegionState, image: ImageRecord, entry: dict[str, Any]) -> None:
        """An image's due transition: a lagging delete ends (gone), a create ends
        ``CREATEFAILED`` or ``NORMAL``, a sync ends ``NORMAL``; ``entry`` names it."""
        before = image.state
        if before == DELETING:
            region.images.pop(image.image_id, None)
            image.state = DELETED
        elif before == "CREATING" and image.will_fail:
            image.state = "CREATEFAILED"
            image.snapshots = []
        else:
            image.state = "NORMAL"
        entry["ImageIds"] = [image.image_id]
        if image.instance_id:
            entry["InstanceIds"] = [image.instance_id]

    @staticmethod
    def _instance_transition(
        region: RegionState, instance: InstanceRecord, entry: dict[str, Any]
    ) -> None:
        """An instance's due transition to its next state (a terminated one is gone)."""
        before = instance.state
        instance.state = instance.next_state or {
            "STOPPING": "STOPPED",
            "STARTING": "RUNNING",
        }.get(before, "RUNNING")
        instance.next_state = ""
        instance.latest_operation_state = (
            "FAILED" if instance.state == "LAUNCH_FAILED" else "SUCCESS"
        )
        entry["InstanceIds"] = [instance.instance_id]
        if instance.state == TERMINATED:  # TerminateInstances: the instance is gone
            region.instances.pop(instance.instance_id, None)

    def _append_history(self, entry: dict[str, Any]) -> None:
        entry["seq"] = len(self._history) + 1
        self._history.append(entry)

    def _record_write(
        self,
        action: str,
        region: str | None,
        params: Mapping[str, Any],
        now: datetime,
        result: str,
        *,
        request_id: str,
        outcome: Outcome | None,
        lost: bool = False,
    ) -> None:
        if action not in WRITE_ACTIONS:
            return
        entry: dict[str, Any] = {
            "time": _history_time(now),
            "region": region,
            "action": action,
            "params": json.loads(json.dumps(params, default=str)),
            "result": result,
            "request_id": request_id,
        }
        requested_images = params.get("ImageIds")
        requested_instances = params.get("InstanceIds") or (
            [params["InstanceId"]] if isinstance(params.get("InstanceId"), str) else None
        )
        if outcome is not None and outcome.image_ids is not None:
            entry["ImageIds"] = outcome.image_ids
        elif isinstance(requested_images, list):
            entry["ImageIds"] = [i for i in requested_images if isinstance(i, str)]
        elif action in ("CreateImage", "DeleteImages", "SyncImages"):
            entry["ImageIds"] = []
        if outcome is not None and outcome.instance_ids is not None:
            entry["InstanceIds"] = outcome.instance_ids
        elif isinstance(requested_instances, list):
            entry["InstanceIds"] = [i for i in requested_instances if isinstance(i, str)]
        if outcome is not None:
            entry.update(outcome.extra)
        if lost:
            entry["lost_response"] = True
        self._append_history(entry)

    @staticmethod
    def _images_sorted(region: RegionState) -> list[ImageRecord]:
        return sorted(
            region.images.values(), key=lambda i: (i.created_time, i.image_id), reverse=True
        )

    # ------------------------------------------------------------------ actions

    def _create_image(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Outcome:
        """CreateImage: every check in the API's documented order (the first failing one is
        the error), then the new ``CREATING`` image."""
        request = self._create_request(params)
        instance, disks = self._create_target(region, request)
        if request.dry_run:
            raise ApiError("DryRunOperation", "The request would have succeeded.")
        image = self._new_image(region, request, instance, disks, now)
        region.images[image.image_id] = image
        # what was attached when the image was made: the invariant checker compares it with
        # the disks the image holds (no disk left out without an alert)
        extra: dict[str, Any] = {"AttachedDataDisks": [d.disk_id for d in instance.data_disks]}
        if self._powers_off(instance, params):
            instance.state = "STOPPED"  # "关机之后制作镜像", and no start (the switch)
            extra["PoweredOff"] = True  # the invariant checker owes it a start (rule 9)
        return Outcome(
            {"ImageId": image.image_id},
            image_ids=[image.image_id],
            instance_ids=[request.instance_id],
            extra=extra,
        )

    def _create_request(self, params: Mapping[str, Any]) -> _CreateRequest:
        """CreateImage's parameters, each checked on its own (types, flags, lengths)."""
        name = p.string(params, "ImageName", need=True)
        instance_id = p.string(params, "InstanceId", need=True)
        description = p.string(params, "ImageDescription")
        for key in ("ForcePoweroff", "Sysprep"):
            value = params.get(key)
            if value is not None and value not in ("true", "false"):
                raise ApiError(
                    "InvalidParameterValue",
                    f'The parameter `{key}` must be the string "true" or "false".',
                )
        data_disks = p.string_list(params, "DataDiskIds")
        if p.string_list(params, "SnapshotIds"):
            raise ApiError(
                "UnsupportedOperation", "Creating an image from SnapshotIds is not emulated."
            )
        dry_run = p.boolean(params, "DryRun")
        tags = p.tag_specification(params.get("TagSpecification"), "image", action="CreateImage")
        if not name.strip():
            raise ApiError("InvalidParameterValue", "The parameter `ImageName` must not be empty.")
        if len(name) > self._fleet.name_limit:
            raise ApiError(
                "InvalidParameter.ValueTooLarge",
                f"ImageName is longer than {self._fleet.name_limit} characters.",
            )
        if len(description) > self._fleet.description_limit:
            raise ApiError(
                "InvalidParameter.ValueTooLarge",
                f"ImageDescription is longer than {self._fleet.description_limit} characters.",
            )
        return _CreateRequest(name, instance_id, description, data_disks, dry_run, tags)

    def _create_target(
        self, region: RegionState, request: _CreateRequest
    ) -> tuple[InstanceRecord, list[DiskRecord]]:
        """The instance and data disks a CreateImage would image, after the checks against
        the region's state: the instance and its state, the disks, the name and a busy
        instance, the image quota, the snapshot quota."""
        instance = region.instances.get(request.instance_id)
        if instance is None:
            raise ApiError(
                "InvalidInstanceId.NotFound",
                f"The instance `{request.instance_id}` does not exist in {region.name}.",
            )
        if instance.not_supported:
            raise ApiError(
                "InvalidInstance.NotSupported",
                f"The instance `{request.instance_id}` does not support creating images.",
            )
        if instance.state in TRANSITIONAL_INSTANCE_STATES:
            raise self._in_transition(instance)
        disks = self._image_disks(instance, request.data_disks)
        self._check_name_and_mutex(region, request.name, request.instance_id)
        if region.quota_used() >= region.quota:
            raise ApiError(
                "ImageQuotaLimitExceeded",
                f"The custom-image quota of {region.name} ({region.quota}) is used up.",
            )
        self._check_snapshot_quota(region, instance, disks)
        return instance, disks

    def _new_image(
        self,
        region: RegionState,
        request: _CreateRequest,
        instance: InstanceRecord,
        disks: list[DiskRecord],
        now: datetime,
    ) -> ImageRecord:
        """The ``CREATING`` image of one CreateImage: one snapshot per disk, ready after the
        fleet's timing (longer for bigger disks), failing with the fleet's probability."""
        will_fail = self._rng.random() < self._fleet.timing.create_failed_probability
        snapshots = [
            SnapshotRecord(
                self._new_id("snap"),
                "SYSTEM_DISK",
                instance.system_disk_size,
                instance.system_disk_id,
            )
        ]
        snapshots += [
            SnapshotRecord(self._new_id("snap"), "DATA_DISK", d.size, d.disk_id) for d in disks
        ]
        timing = self._fleet.timing
        total_gib = sum(snapshot.disk_size for snapshot in snapshots)
        seconds = timing.create_seconds + timing.create_seconds_per_100gib * total_gib / 100
        image = ImageRecord(
            image_id=self._new_id("img"),
            name=request.name,
            region=region.name,
            state="CREATING",
            created_time=now,
            description=request.description,
            instance_id=request.instance_id,
            os_name=instance.os_name,
            tags=request.tags,
            snapshots=snapshots,
            will_fail=will_fail,
            ready_at=now + timedelta(seconds=seconds),
            creator=self._fleet.credentials.uin,
        )
        self._apply_lags(image, now)
        return image

    def _powers_off(self, instance: InstanceRecord, params: Mapping[str, Any]) -> bool:
        """True when this CreateImage leaves the instance STOPPED (``ForcePoweroff`` on a
        running instance under ``force_poweroff_leaves: stopped``)."""
        return (
            params.get("ForcePoweroff") == "true"
            and instance.state == "RUNNING"
            and self._fleet.open_points.force_poweroff_leaves == "stopped"
        )

    def _apply_lags(self, image: ImageRecord, now: datetime) -> None:
        """Set a new image's ``visible_at`` and ``tags_visible_at`` (``fleet.OpenPoints``)."""
        switches = self._fleet.open_points
        if switches.image_visibility_seconds > 0:
            image.visible_at = now + timedelta(seconds=switches.image_visibility_seconds)
        if switches.tag_visibility_seconds > 0:
            image.tags_visible_at = now + timedelta(seconds=switches.tag_visibility_seconds)

    def _check_name_and_mutex(self, region: RegionState, name: str, instance_id: str) -> None:
        """The two CreateImage refusals a retry after a lost answer meets, in the order of
        the ``create_retry_order`` switch (``fleet.OpenPoints``): the name is taken, and the
        instance already has an image ``CREATING``."""

        def duplicate() -> None:
            if any(i.name == name and i.counts_against_quota for i in region.images.values()):
                raise ApiError(
                    "InvalidImageName.Duplicate",
                    f"The image name `{name}` already exists in {region.name}.",
                )

        def mutex() -> None:
            if any(
                i.instance_id == instance_id and i.state == "CREATING"
                for i in region.images.values()
            ):
                raise ApiError(
                    "MutexOperation.TaskRunning",
                    f"The instance `{instance_id}` already has an image being created.",
                )

        checks = (duplicate, mutex)
        if self._fleet.open_points.create_retry_order == "mutex_first":
            checks = (mutex, duplicate)
        for check in checks:
            check()

    def _in_transition(self, instance: InstanceRecord) -> ApiError:
        """The refusal of an action on an instance in a transition, as the
        ``instance_states`` switch says (``fleet.OpenPoints``)."""
        if self._fleet.open_points.instance_states == "specific_codes":
            return ApiError(
                f"UnsupportedOperation.InstanceState{instance.state.title()}",
                f"The instance `{instance.instance_id}` is {instance.state}.",
            )
        return ApiError(
            "OperationDenied.InstanceOperationInProgress",
            f"The instance `{instance.instance_id}` is {instance.state}.",
        )

    @staticmethod
    def _image_disks(instance: InstanceRecord, data_disk_ids: list[str]) -> list[DiskRecord]:
        """The disks of ``DataDiskIds``, checked with the codes of CreateImage's error list
        (tencentcloud-sdk-go ``tencentcloud/cvm/v20170312/client.go``)."""
        attached = {disk.disk_id: disk for disk in instance.data_disks}
        disks: list[DiskRecord] = []
        for disk_id in dict.fromkeys(data_disk_ids):
            if disk_id == instance.system_disk_id:
                raise ApiError(
                    "InvalidParameter.DataDiskIdContainsRootDisk",
                    f"DataDiskIds must not contain the system disk `{disk_id}`.",
                )
            disk = attached.get(disk_id)
            if disk is None:
                raise ApiError(
                    "InvalidParameter.DataDiskNotBelongSpecifiedInstance",
                    f"The data disk `{disk_id}` does not belong to the instance "
                    f"`{instance.instance_id}`.",
                )
            if disk.local:
                raise ApiError(
                    "InvalidParameter.LocalDataDiskNotSupport",
                    f"The data disk `{disk_id}` is a local disk ({disk.disk_type}); "
                    "local data disks cannot be used to create instance images.",
                )
            disks.append(disk)
        return disks

    def _check_snapshot_quota(
        self, region: RegionState, instance: InstanceRecord, disks: list[DiskRecord]
    ) -> None:
        """The ``snapshot_quota_per_disk`` switch (``fleet.WholeMachine``)."""
        quota = self._fleet.whole_machine.snapshot_quota_per_disk
        if quota <= 0:
            return
        for disk_id in (instance.system_disk_id, *(d.disk_id for d in disks)):
            if region.snapshots_of(disk_id) >= quota:
                raise ApiError(
                    "LimitExceeded.SnapshotQuota",
                    f"The disk `{disk_id}` already has {quota} snapshots.",
                )

    def _get_caller_identity(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Outcome:
        """STS ``GetCallerIdentity`` for the fleet's key pair: a root account's answer."""
        uin = self._fleet.credentials.uin
        return Outcome(
            {
                "Arn": f"qcs::cam::uin/{uin}:uin/{uin}",
                "AccountId": uin,
                "UserId": uin,
                "PrincipalId": uin,
                "Type": "RootAccount",
            }
        )

    def _describe_images(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Outcome:
        ids = p.string_list(params, "ImageIds")
        filters = p.filters(
            params,
            frozenset(
                {
                    "image-id",
                    "image-type",
                    "image-name",
                    "image-state",
                    "platform",
                    "tag-key",
                    "tag-value",
                    "tag:",
                }
            ),
        )
        p.string(params, "InstanceType")
        if ids and filters:
            raise ApiError(
                "InvalidParameter.InvalidParameterCoexistImageIdsFilters",
                "ImageIds and Filters cannot be given together.",
            )
        offset, limit = p.paging(params)
        if ids:
            wanted = dict.fromkeys(ids)
            matching = [region.images[i] for i in wanted if i in region.images]
        else:
            matching = [
                i
                for i in self._images_listed(region)
                if all(_image_matches(i, name, values, now) for name, values in filters)
            ]
        matching = [i for i in matching if i.listed(now)]  # image_visibility_seconds
        page = matching[offset : offset + limit]
        nulled = self._fleet.open_points.null_fields  # issue #18: "may return null"
        answer = [i.to_api_nulled(now) if nulled else i.to_api(now) for i in page]
        return Outcome({"ImageSet": answer, "TotalCount": len(matching)})

    def _images_listed(self, region: RegionState) -> list[ImageRecord]:
        """The order DescribeImages lists images in (the ``image_order`` switch).

        ``shuffled`` is a seeded order unrelated to age, the same on every call (so that
        paging neither repeats nor skips an image): a client must not depend on the order,
        which the API does not document.
        """
        if self._fleet.open_points.image_order != "shuffled":
            return self._images_sorted(region)
        seed = self._fleet.seed or 0
        return sorted(
            region.images.values(),
            key=lambda i: hashlib.sha256(f"{seed}:{i.image_id}".encode()).hexdigest(),
        )

    def _delete_images(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Outcome:
        ids = list(dict.fromkeys(p.string_list(params, "ImageIds", need=True)))
        delete_snapshots = p.boolean(params, "DeleteBindedSnap")
        dry_run = p.boolean(params, "DryRun")
        for image_id in ids:
            image = region.images.get(image_id)
            if image is None:
                raise ApiError(
                    "InvalidImageId.NotFound",
                    f"The image `{image_id}` does not exist in {region.name}.",
                )
            if not image.counts_against_quota:
                raise ApiError(
                    "UnauthorizedOperation.ImageNotBelongToAccount",
                    f"The image `{image_id}` is not a custom image of this account.",
                )
            if image.state in BUSY_IMAGE_STATES:
                raise ApiError(
                    "InvalidImageId.IncorrectState",
                    f"The image `{image_id}` is {image.state} and cannot be deleted.",
                )
            if image.shared:
                raise ApiError(
                    "InvalidImageId.InShared",
                    f"The image `{image_id}` is shared; cancel sharing first.",
                )
        if dry_run:
            raise ApiError("DryRunOperation", "The request would have succeeded.")
        lag = self._fleet.open_points.delete_lag_seconds
        for image_id in ids:
            image = region.images[image_id]
            if image.state == DELETING:
                continue  # already being deleted: accepted, nothing changes
            if lag > 0:  # delete_lag_seconds: listed DELETING, counted, until ready_at
                image.state = DELETING
                image.ready_at = now + timedelta(seconds=lag)
            else:
                region.images.pop(image_id)
            if not delete_snapshots:
                region.leftover_snapshots.extend(s.snapshot_id for s in image.snapshots)
                region.leftover_disks.update({s.snapshot_id: s.disk_id for s in image.snapshots})
        return Outcome({}, image_ids=ids, extra={"deleting": True} if lag > 0 else None)

    def _describe_image_quota(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Outcome:
        return Outcome({"ImageNumQuota": region.quota})

    def _sync_images(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Outcome:
        """SyncImages: the parameters, each source image, then each destination, checked in
        the documented order (the first failing check is the error); then one ``CREATING``
        copy per source and destination, the sources ``SYNCING`` meanwhile."""
        ids = list(dict.fromkeys(p.string_list(params, "ImageIds", need=True)))
        destinations = list(dict.fromkeys(p.string_list(params, "DestinationRegions", need=True)))
        dry_run = p.boolean(params, "DryRun")
        copy_name = p.string(params, "ImageName")
        set_required = p.boolean(params, "ImageSetRequired")
        p.boolean(params, "Encrypt")
        p.string(params, "KmsKeyId")
        if copy_name and len(copy_name) > self._fleet.name_limit:
            raise ApiError(
                "InvalidParameter.ValueTooLarge",
                f"ImageName is longer than {self._fleet.name_limit} characters.",
            )
        self._check_sync_open_points(region.name, ids, destinations)
        sources = self._sync_sources(region, ids)
        targets = self._sync_targets(region, destinations, sources, copy_name)
        if dry_run:
            raise ApiError("DryRunOperation", "The request would have succeeded.")
        copies = self._make_copies(sources, targets, copy_name, now)
        body: dict[str, Any] = {"ImageSet": copies} if set_required else {}
        return Outcome(body, image_ids=ids, extra={"copies": copies})

    def _sync_sources(self, region: RegionState, ids: list[str]) -> list[ImageRecord]:
        """The images ``ids`` of ``region``, each one this account's, ``NORMAL`` and
        syncable (the ``whole_machine`` switches)."""
        sources: list[ImageRecord] = []
        for image_id in ids:
            image = region.images.get(image_id)
            if image is None:
                raise ApiError(
                    "InvalidImageId.NotFound",
                    f"The image `{image_id}` does not exist in {region.name}.",
                )
            if not image.counts_against_quota:
                raise ApiError(
                    "UnauthorizedOperation.ImageNotBelongToAccount",
                    f"The image `{image_id}` is not a custom image of this account.",
                )
            if image.state != "NORMAL":
                raise ApiError(
                    "InvalidImageId.IncorrectState",
                    f"The image `{image_id}` is {image.state}; only NORMAL images can be synced.",
                )
            self._check_whole_machine_sync(image)
            sources.append(image)
        return sources

    def _sync_targets(
        self,
        region: RegionState,
        destinations: list[str],
        sources: list[ImageRecord],
        copy_name: str,
    ) -> list[RegionState]:
        """The destination regions, each existing, not the source, with quota for every
        copy and none of the copies' names taken."""
        targets: list[RegionState] = []
        for name in destinations:
            target = self._regions.get(name)
            if target is None:
                raise ApiError("InvalidRegion.NotFound", f"The region `{name}` does not exist.")
            if target is region:
                raise ApiError(
                    "InvalidParameterValue",
                    "DestinationRegions must not contain the source region.",
                )
            if target.quota_used() + len(sources) > target.quota:
                raise ApiError(
                    "ImageQuotaLimitExceeded",
                    f"The custom-image quota of {name} ({target.quota}) is used up.",
                )
            for source in sources:
                wanted = copy_name or source.name
                if any(i.name == wanted and i.counts_against_quota for i in target.images.values()):
                    raise ApiError(
                        "InvalidImageName.Duplicate",
                        f"The image name `{wanted}` already exists in {name}.",
                    )
            targets.append(target)
        return targets

    def _make_copies(
        self,
        sources: list[ImageRecord],
        targets: list[RegionState],
        copy_name: str,
        now: datetime,
    ) -> list[dict[str, str]]:
        """Mark each source ``SYNCING`` and add its ``CREATING`` copy to each target (what
        the copy carries over follows the ``sync_copies_*`` switches); return the
        ``{ImageId, Region}`` of every copy."""
        ready = now + timedelta(seconds=self._fleet.timing.sync_seconds)
        open_points = self._fleet.open_points
        copies: list[dict[str, str]] = []
        for source in sources:
            source.state = "SYNCING"
            source.ready_at = ready
            for target in targets:
                image = ImageRecord(
                    image_id=self._new_id("img"),
                    name=copy_name or source.name,
                    region=target.name,
                    state="CREATING",
                    created_time=now,
                    description=source.description if open_points.sync_copies_description else "",
                    instance_id=source.instance_id,
                    os_name=source.os_name,
                    tags=dict(source.tags) if open_points.sync_copies_tags else {},
                    snapshots=[
                        SnapshotRecord(self._new_id("snap"), s.disk_usage, s.disk_size, s.disk_id)
                        for s in source.snapshots
                    ],
                    ready_at=ready,
                    creator=self._fleet.credentials.uin,
                )
                self._apply_lags(image, now)
                target.images[image.image_id] = image
                copies.append({"ImageId": image.image_id, "Region": target.name})
        return copies

    def _check_sync_open_points(self, source: str, ids: list[str], destinations: list[str]) -> None:
        """The SyncImages switches of ``fleet.OpenPoints``: one image per call, and region
        pairs that cannot copy."""
        open_points = self._fleet.open_points
        if open_points.sync_images_per_call == "one" and len(ids) > 1:
            raise ApiError(
                "InvalidParameterValue.LimitExceeded",
                f"ImageIds holds {len(ids)} images; SyncImages copies one image per call.",
            )
        for destination in destinations:
            code = open_points.sync_refusal(source, destination)
            if code is not None:
                raise ApiError(code, f"Images cannot be synced from {source} to {destination}.")

    def _check_whole_machine_sync(self, image: ImageRecord) -> None:
        """The ``whole_machine`` sync switches (``fleet.WholeMachine``)."""
        switches = self._fleet.whole_machine
        data = [s for s in image.snapshots if s.disk_usage == "DATA_DISK"]
        if data and switches.sync == "refused":
            raise ApiError(
                "InvalidParameter.InstanceImageNotSupport",
                f"The image `{image.image_id}` is an instance image (it holds data "
                "disks); this API does not support instance images.",
            )
        size = sum(s.disk_size for s in image.snapshots)
        if switches.sync_max_gib and size > switches.sync_max_gib:
            raise ApiError(
                "InvalidImageId.TooLarge",
                f"The image `{image.image_id}` ({size} GiB) exceeds the size limit "
                f"of {switches.sync_max_gib} GiB.",
            )

    def _instances_in_order(
        self, region: RegionState, ids: list[str], strict: bool
    ) -> list[InstanceRecord]:
        if not ids:
            return list(region.instances.values())
        found: list[InstanceRecord] = []
        for instance_id in dict.fromkeys(ids):
            instance = region.instances.get(instance_id)
            if instance is not None:
                found.append(instance)
            elif strict:
                raise ApiError(
                    "InvalidInstanceId.NotFound",
                    f"The instance `{instance_id}` does not exist in {region.name}.",
                )
        return found

    def _describe_instances(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Outcome:
        ids = p.string_list(params, "InstanceIds")
        filters = p.filters(
            params,
            frozenset(
                {
                    "instance-id",
                    "instance-name",
                    "instance-state",
                    "zone",
                    "tag-key",
                    "tag-value",
                    "tag:",
                }
            ),
        )
        if ids and filters:
            raise ApiError(
                "InvalidParameterCoexistInstanceIdsFilters",
                "InstanceIds and Filters cannot be given together.",
            )
        offset, limit = p.paging(params)
        matching = [
            i
            for i in self._instances_in_order(region, ids, strict=False)
            if all(_instance_matches(i, name, values) for name, values in filters)
        ]
        page = matching[offset : offset + limit]
        return Outcome({"TotalCount": len(matching), "InstanceSet": [i.to_api() for i in page]})

    def _describe_instances_status(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Outcome:
        ids = p.string_list(params, "InstanceIds")
        offset, limit = p.paging(params)
        # unknown ids: the batch fails, or (switch ``omit``) they are left out (issue #18)
        strict = self._fleet.open_points.unknown_instance_status == "error"
        matching = self._instances_in_order(region, ids, strict=strict)
        page = matching[offset : offset + limit]
        return Outcome(
            {
                "TotalCount": len(matching),
                "InstanceStatusSet": [
                    {"InstanceId": i.instance_id, "InstanceState": i.state} for i in page
                ],
            }
        )

    def _stop_instances(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Outcome:
        ids = p.string_list(params, "InstanceIds", need=True)
        stop_type = p.string(params, "StopType", default="SOFT")
        mode = p.string(params, "StoppedMode", default="KEEP_CHARGING")
        p.boolean(params, "ForceStop")
        if stop_type not in ("SOFT", "HARD", "SOFT_FIRST"):
            raise ApiError("InvalidParameterValue", "StopType must be SOFT, HARD or SOFT_FIRST.")
        if mode not in ("KEEP_CHARGING", "STOP_CHARGING"):
            raise ApiError(
                "InvalidParameterValue", "StoppedMode must be KEEP_CHARGING or STOP_CHARGING."
            )
        return self._transition_instances(
            region,
            ids,
            now,
            request_id=request_id,
            operation="StopInstances",
            moving="STOPPING",
            seconds=self._fleet.timing.stop_seconds,
        )

    def _start_instances(
        self, region: RegionState, params: Mapping[str, Any], now: datetime, request_id: str
    ) -> Outcome:
        ids = p.string_list(params, "InstanceIds", need=True)
        return self._transition_instances(
            region,
            ids,
            now,
            request_id=request_id,
            operation="StartInstances",
            moving="STARTING",
            seconds=self._fleet.timing.start_seconds,
        )

    def _transition_instances(
        self,
        region: RegionState,
        ids: list[str],
        now: datetime,
        *,
        request_id: str,
        operation: str,
        moving: str,
        seconds: float,
    ) -> Outcome:
        instances = self._instances_in_order(region, ids, strict=True)
        settled = "RUNNING" if moving == "STOPPING" else "STOPPED"
        for instance in instances:
            if instance.state in TRANSITIONAL_INSTANCE_STATES:
                raise self._in_transition(instance)
            if instance.latest_operation_state == "OPERATING":  # e.g. a ResetInstance
                raise ApiError(
                    "OperationDenied.InstanceOperationInProgress",
                    f"The instance `{instance.instance_id}` is {instance.state}.",
                )
            if instance.state != settled:
                raise ApiError(
                    f"UnsupportedOperation.InstanceState{instance.state.title()}",
                    f"The instance `{instance.instance_id}` is already {instance.state}.",
                )
        for instance in instances:
            instance.state = moving
            instance.ready_at = now + timedelta(seconds=seconds)
            instance.latest_operation = operation
            instance.latest_operation_state = "OPERATING"
            instance.latest_operation_request_id = request_id
        return Outcome({}, instance_ids=[i.instance_id for i in instances])


def _image_matches(image: ImageRecord, name: str, values: list[str], now: datetime) -> bool:
    tag_result = p.tags_match(image.tags_at(now), name, values)
    if tag_result is not None:
        return tag_result
    if name == "image-id":
        return image.image_id in values
    if name == "image-type":
        return image.image_type in values
    if name == "image-name":
        return any(value in image.name for value in values)
    if name == "image-state":
        return image.state in values
    return any(value.lower() in "tencentos" for value in values)  # platform


def _instance_matches(instance: InstanceRecord, name: str, values: list[str]) -> bool:
    tag_result = p.tags_match(instance.tags, name, values)
    if tag_result is not None:
        return tag_result
    if name == "instance-id":
        return instance.instance_id in values
    if name == "instance-name":
        return any(value in instance.name for value in values)
    if name == "instance-state":
        return instance.state in values
    return instance.zone in values  # zone


def _history_time(when: datetime) -> str:
    """History times keep milliseconds so that sub-second lifecycles stay ordered."""
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_json(raw: list[Any]) -> tuple[Any, ...]:
    return (raw[0], tuple(raw[1]), raw[2])
