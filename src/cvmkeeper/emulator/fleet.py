"""The fleet file: what an emulated Tencent Cloud account holds when it starts.

A fleet seeds regions, quotas, instances, pre-existing images, timings, rate limits,
faults and the accepted key pair. Tests, the demo and the benchmark write such files, so
loading is forgiving about what is left out (every key but ``regions`` is optional) and
strict about what is wrong: every error names the file, the line and the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from cvmkeeper.emulator.profiles import DEFAULT_PROFILE, PROFILES, switches

#: Documented per-region, per-second limits of the actions the emulator serves.
DEFAULT_RATE_LIMITS: Mapping[str, float] = {
    "CreateImage": 10,
    "DeleteImages": 10,
    "SyncImages": 10,
    "StopInstances": 10,
    "StartInstances": 10,
    "DescribeImages": 40,
    "DescribeInstances": 40,
    "DescribeInstancesStatus": 40,
    # its own page: 10 requests/s (issue #18), not the 20/s of most Describe actions
    "DescribeImageQuota": 10,
    # restore and drills (issue #16): the API pages give 10 requests/s for each
    "RunInstances": 10,
    "TerminateInstances": 10,
    "ResetInstance": 10,
}

#: Every action the emulator serves.
ACTIONS: tuple[str, ...] = (
    "CreateImage",
    "DescribeImages",
    "DeleteImages",
    "DescribeImageQuota",
    "SyncImages",
    "DescribeInstances",
    "DescribeInstancesStatus",
    "StopInstances",
    "StartInstances",
    "RunInstances",
    "TerminateInstances",
    "ResetInstance",
    "TagResources",  # Tencent's Tag API (service tag): emulator/tagging.py
    "UnTagResources",
)

#: Fault kinds a fleet may inject, in the order they are drawn.
FAULT_KINDS: tuple[str, ...] = ("InternalError", "RequestLimitExceeded", "reset", "lost_response")

#: (name, description) length limits: the seed's CreateImage doc, and today's API.
LIMITS: Mapping[str, tuple[int, int]] = {"legacy": (20, 60), "current": (60, 256)}

INSTANCE_STATES = ("PENDING", "RUNNING", "STOPPING", "STOPPED", "STARTING", "REBOOTING")
IMAGE_STATES = ("CREATING", "NORMAL", "CREATEFAILED", "SYNCING", "IMPORTING", "IMPORTFAILED")
IMAGE_TYPES = ("PRIVATE_IMAGE", "PUBLIC_IMAGE", "SHARED_IMAGE")


PROFILE_NAMES = tuple(PROFILES)


class FleetError(ValueError):
    """A fleet file or mapping is invalid; the message names file, line and key."""


#: the UIN of the emulated account (the key pair's identity unless the fleet names another)
DEFAULT_UIN = "100000000001"


@dataclass(frozen=True)
class Credentials:
    """The one key pair the emulator accepts. The secret key never appears in a repr."""

    secret_id: str = "AKIDEMULATOR000000000000000000000000"  # noqa: S105 - public test id
    secret_key: str = field(default="emulator-secret-key", repr=False)
    token: str | None = field(default=None, repr=False)
    #: the account UIN of this key pair: what GetCallerIdentity answers and what the
    #: ImageCreator of every image this key creates says
    uin: str = DEFAULT_UIN


@dataclass(frozen=True)
class Timing:
    """How long lifecycles take, in seconds, and how often a create fails."""

    create_seconds: float = 2.0
    create_failed_probability: float = 0.0
    stop_seconds: float = 1.0
    start_seconds: float = 1.0
    sync_seconds: float = 3.0
    #: added per 100 GiB of the disks an image holds: imaging time grows with the disks
    create_seconds_per_100gib: float = 0.0
    #: RunInstances: PENDING -> RUNNING (or LAUNCH_FAILED, see ``Launch.outcome``)
    launch_seconds: float = 1.0
    #: TerminateInstances: TERMINATING -> gone
    terminate_seconds: float = 0.5
    #: ResetInstance: LatestOperationState OPERATING -> SUCCESS
    reset_seconds: float = 1.0


#: Local disk types: ``CreateImage`` refuses them in ``DataDiskIds``
#: (``InvalidParameter.LocalDataDiskNotSupport``; sdk-go cvm ``client.go``).
LOCAL_DISK_TYPES = ("LOCAL_BASIC", "LOCAL_SSD", "LOCAL_NVME", "LOCAL_PRO")
#: Every ``DataDisk.DiskType`` of the SDK's models (tencentcloud-sdk-python cvm ``models.py``).
DISK_TYPES = (
    *LOCAL_DISK_TYPES,
    "CLOUD_BASIC",
    "CLOUD_PREMIUM",
    "CLOUD_SSD",
    "CLOUD_HSSD",
    "CLOUD_TSSD",
    "CLOUD_BSSD",
)
SYNC_CHOICES = ("allowed", "refused")


@dataclass(frozen=True)
class DiskSpec:
    """One data disk attached to an instance (``DataDisks`` of ``DescribeInstances``)."""

    id: str
    type: str = "CLOUD_PREMIUM"
    size: int = 100


@dataclass(frozen=True)
class WholeMachine:
    """Switches for what Tencent does not document about whole-machine images (issue #15).

    ``sync``: whether ``SyncImages`` copies an image holding data disks. ``allowed`` is the
    convenient answer; ``refused`` answers ``InvalidParameter.InstanceImageNotSupport``
    ("this API does not support instance images"), a code in SyncImages' error list
    (sdk-go cvm ``client.go``). ``sync_max_gib``: images bigger than this are refused with
    ``InvalidImageId.TooLarge`` (same list; no size is documented); 0: no limit.
    ``snapshot_quota_per_disk``: CBS documents 64 snapshots per disk (tencentcloud.com
    document 362/32413) but not whether image snapshots count; when set, a ``CreateImage``
    that would give a disk more snapshots is refused with ``LimitExceeded.SnapshotQuota``
    (the code is a guess too); 0: not enforced.
    """

    sync: str = "allowed"
    sync_max_gib: int = 0
    snapshot_quota_per_disk: int = 0


INSTANCE_STATE_ANSWERS = ("in_progress", "specific_codes")
CREATE_RETRY_ORDERS = ("duplicate_first", "mutex_first")
IMAGE_ORDERS = ("newest_first", "shuffled")
#: the top-level switches of ``OpenPoints`` that are delays in seconds
LAG_SWITCHES = ("image_visibility_seconds", "tag_visibility_seconds", "delete_lag_seconds")
UNKNOWN_INSTANCE_STATUS = ("error", "omit")
SYNC_PER_CALL = ("many", "one")
#: the codes a disallowed (source, destination) pair of SyncImages is answered with: both
#: are in SyncImages' error list (sdk-go cvm ``client.go``); the first is the default
SYNC_PAIR_CODES = ("InvalidRegion.Unavailable", "UnsupportedOperation.Region")
FORCE_POWEROFF_LEAVES = ("running", "stopped")


@dataclass(frozen=True)
class OpenPoints:
    """Switches for behaviours Tencent leaves open (issue #18), each a plausible choice.

    ``instance_states``: what a Start/Stop/CreateImage on an instance in a transition
    (``PENDING``, ``STOPPING``, ``STARTING``, ``REBOOTING``) is answered. ``in_progress``
    (default): ``OperationDenied.InstanceOperationInProgress``; ``specific_codes``: the
    state's own code, ``UnsupportedOperation.InstanceState<State>`` (in the error lists of
    StartInstances, StopInstances and CreateImage, sdk-go cvm ``client.go``).
    ``create_retry_order``: which check comes first when a CreateImage repeats the name of
    an image still ``CREATING`` from the same instance (a retry after a lost answer):
    ``duplicate_first`` (default) ``InvalidImageName.Duplicate``, ``mutex_first``
    ``MutexOperation.TaskRunning`` (both are in CreateImage's list; the order is not).
    ``image_order``: DescribeImages lists ``newest_first`` (default) or ``shuffled`` (a
    seeded random order per call: the API documents no order).
    ``null_fields``: the SDK's ``Image`` model marks ``SyncPercent``, ``CreatedTime`` and
    ``Tags`` "may return null" (tencentcloud-sdk-python cvm ``models.py``). ``False``
    (default): always filled; ``True``: ``SyncPercent`` is null for every image,
    ``CreatedTime`` is null while an image is not ``NORMAL`` (``CREATING``, ``SYNCING``,
    ``CREATEFAILED``, ...) and for every seeded image whose fleet entry gives no
    ``created_time``, and ``Tags`` is left out of every image that has none.
    ``unknown_instance_status``: DescribeInstancesStatus naming an id that does not exist:
    ``error`` (default) fails the whole batch with ``InvalidInstanceId.NotFound`` (the code
    is in its error list, sdk-go cvm ``client.go``); ``omit`` answers the others and leaves
    the unknown id out (what Describe* actions with id lists commonly do; undocumented).

    Eventual consistency and deletion lag (seconds on the core's clock, so a ``ManualClock``
    simulation sees them too; 0, the default, is today's behaviour):
    ``image_visibility_seconds``: a new image (``CreateImage``, a ``SyncImages`` copy) is
    absent from ``DescribeImages`` for this long, though it exists and counts against the
    quota (Terraform's tencentcloud provider keeps polling while a just-created image is
    absent). ``tag_visibility_seconds``: a new image's ``TagSpecification`` tags show only
    after this long (the provider attaches tags with a comment that attachment is
    asynchronous). ``delete_lag_seconds``: after ``DeleteImages`` an image stays listed in
    state ``DELETING`` (a state older docs list) and keeps counting against the quota
    (``DescribeImageQuota`` / ``ImageQuotaLimitExceeded``) for this long; a second
    ``DeleteImages`` of a ``DELETING`` image is accepted and changes nothing.

    SyncImages (nothing documents what a copy inherits; ``SyncImagesRequest`` has no
    ``TagSpecification``, and neither the Terraform provider nor the Packer plugin tags a
    copy): ``sync_copies_tags`` / ``sync_copies_description``: whether a copy gets the
    source's tags / description (``true``, the default) or none (``false``).
    ``sync_images_per_call``: ``many`` (default) copies every ``ImageIds`` entry; ``one``
    refuses more than one with ``InvalidParameterValue.LimitExceeded`` (the SDK's SyncImages
    doc says "该接口每次调用只支持同步一个镜像", one image per call; the code is in its error
    list). ``sync_disallowed_pairs``: ``(source, destination, code)`` region pairs refused
    with ``code`` (``InvalidRegion.Unavailable`` or ``UnsupportedOperation.Region``, both in
    SyncImages' list); in the fleet file ``[source, destination]`` or
    ``[source, destination, code]``.

    ``force_poweroff_leaves``: the state a RUNNING instance is in after a CreateImage with
    ``ForcePoweroff="true"``. The API docs say the image is made after a forced shutdown
    ("关机之后制作镜像", tencentcloud-sdk-python cvm ``models.py`` ``CreateImageRequest``)
    and say nothing of a start afterwards: ``running`` (default: the instance runs on, as
    the emulator has always modelled it) or ``stopped`` (pessimistic: it is shut down at the
    create and stays ``STOPPED``; the history entry of the create says ``PoweredOff``).
    """

    instance_states: str = "in_progress"
    create_retry_order: str = "duplicate_first"
    image_order: str = "newest_first"
    image_visibility_seconds: float = 0.0
    tag_visibility_seconds: float = 0.0
    delete_lag_seconds: float = 0.0
    null_fields: bool = False
    unknown_instance_status: str = "error"
    sync_copies_tags: bool = True
    sync_copies_description: bool = True
    sync_images_per_call: str = "many"
    sync_disallowed_pairs: tuple[tuple[str, str, str], ...] = ()
    force_poweroff_leaves: str = "running"

    def sync_refusal(self, source: str, destination: str) -> str | None:
        """The code a SyncImages from ``source`` to ``destination`` is refused with, if any."""
        for pair_source, pair_destination, code in self.sync_disallowed_pairs:
            if (pair_source, pair_destination) == (source, destination):
                return code
        return None


LAUNCH_OUTCOMES = ("running", "launch_failed", "stuck_pending")
RESET_LEAVES = ("prior", "running")
DRY_RUN_ANSWERS = ("error", "request_id")


@dataclass(frozen=True)
class Launch:
    """Switches for RunInstances / ResetInstance (issue #16; ``emulator/launch.py``).

    ``outcome``: what a launched instance becomes after ``timing.launch_seconds``:
    ``running``, ``launch_failed`` (``LAUNCH_FAILED``, the documented failure state) or
    ``stuck_pending`` (stays ``PENDING``). ``private_ip``: the address new instances get
    (``127.0.0.1`` lets a test's TCP check reach a local listener); empty: a 10.x address.
    ``instance_quota``: at most this many instances per region (``LimitExceeded.InstanceQuota``);
    0: none. ``sold_out_types``: instance types answered with
    ``ResourceInsufficient.SpecifiedInstanceType``. ``dry_run_answer``: the RunInstances
    model says a passing DryRun "returns a RequestId" while other actions answer
    ``DryRunOperation``; ``error`` (default) or ``request_id`` (an empty success).
    ``reset_leaves``: the state an instance is in after ResetInstance (undocumented):
    ``prior`` (the state it had) or ``running``.
    """

    outcome: str = "running"
    private_ip: str = ""
    instance_quota: int = 0
    sold_out_types: tuple[str, ...] = ()
    dry_run_answer: str = "error"
    reset_leaves: str = "prior"


@dataclass(frozen=True)
class InstanceSpec:
    """One CVM instance as the fleet seeds it."""

    id: str
    name: str = ""
    state: str = "RUNNING"
    zone: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    not_supported: bool = False
    instance_type: str = "S5.MEDIUM4"
    os_name: str = "TencentOS Server 3.1 (TK4)"
    data_disks: tuple[DiskSpec, ...] = ()
    created_time: datetime | None = None
    #: GiB; RunInstances' default (models.py ``SystemDisk.DiskSize``: "默认值为 50")
    system_disk_size: int = 50

    @property
    def data_disk_ids(self) -> tuple[str, ...]:
        """The ids of ``data_disks``."""
        return tuple(disk.id for disk in self.data_disks)


@dataclass(frozen=True)
class ImageSpec:
    """One pre-existing image (a golden image, an old backup, ...)."""

    id: str
    name: str
    state: str = "NORMAL"
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    shared: bool = False
    image_type: str = "PRIVATE_IMAGE"
    instance_id: str = ""
    created_time: datetime | None = None
    #: the UIN that created it (``ImageCreator``); ``None``: the fleet's key pair did
    creator: str | None = None


@dataclass(frozen=True)
class RegionSpec:
    """One region: its custom-image quota, instances and pre-existing images."""

    name: str
    quota: int = 10
    instances: tuple[InstanceSpec, ...] = ()
    images: tuple[ImageSpec, ...] = ()


@dataclass(frozen=True)
class FleetSpec:
    """Everything an emulated account starts with.

    ``source`` keeps the mapping the spec was built from, so that the state file and
    ``/_emulator/reset`` can rebuild it exactly.
    """

    regions: Mapping[str, RegionSpec]
    credentials: Credentials = field(default_factory=Credentials)
    limits: str = "legacy"
    latency_ms: float = 0.0
    timing: Timing = field(default_factory=Timing)
    rate_limits: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    faults: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    seed: int | None = None
    whole_machine: WholeMachine = field(default_factory=WholeMachine)
    launch: Launch = field(default_factory=Launch)
    open_points: OpenPoints = field(default_factory=OpenPoints)
    source: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name_limit(self) -> int:
        """Longest accepted ``ImageName``."""
        return LIMITS[self.limits][0]

    @property
    def description_limit(self) -> int:
        """Longest accepted ``ImageDescription``."""
        return LIMITS[self.limits][1]

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        origin: str = "<fleet>",
        default_profile: str | None = None,
    ) -> FleetSpec:
        """Build a spec from a parsed mapping; errors name ``origin`` and the key path.

        ``default_profile`` applies when the mapping names no ``profile`` (a harness passes
        :func:`~cvmkeeper.emulator.profiles.env_profile`); ``None``: ``documented``.
        """
        return _Parser(origin, {}, default_profile).fleet(data)


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (``*name``).

    Nested aliases ("billion laughs") make a few hundred bytes expand into a tree that every
    walk of it (line numbers, validation, the state's deep copies) takes without bound: 6 GB
    in 60 s. A fleet file has no use for them, so the first alias is an error.
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                problem="aliases (*name) are not allowed in a fleet file; write the value out",
                problem_mark=mark,
            )
        return super().compose_node(parent, index)


def load_fleet(path: str | Path, *, default_profile: str | None = None) -> FleetSpec:
    """Read and validate a fleet YAML file; errors name the file, the line and the key.

    ``default_profile`` applies when the file names no ``profile`` (see ``from_mapping``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FleetError(f"{path}: cannot read fleet file: {exc.strerror}") from exc
    try:
        node = yaml.compose(text, Loader=_NoAliasLoader)
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise FleetError(f"{path}: not valid YAML: {exc}") from exc
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _record_lines(node, (), lines)
    return _Parser(str(path), lines, default_profile).fleet(data)


def parse_faults(data: Any, *, origin: str = "<faults>") -> dict[str, dict[str, float]]:
    """Validate a ``faults:`` mapping (as in the fleet file, or POSTed at runtime)."""
    return _Parser(origin, {}).faults(data, ("faults",))


def _record_lines(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    """Remember the 1-based line of every key path in a composed YAML tree."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, str(key_node.value))
            out[key] = key_node.start_mark.line + 1
            _record_lines(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*path, f"[{index}]"), out)


class _Parser:
    """Turns a plain mapping into a :class:`FleetSpec`, naming the place of every error."""

    def __init__(
        self,
        origin: str,
        lines: Mapping[tuple[str, ...], int],
        default_profile: str | None = None,
    ) -> None:
        self.origin = origin
        self.lines = lines
        self.default_profile = default_profile

    def fail(self, path: tuple[str, ...], message: str) -> FleetError:
        """Make an error that names the file, the line (when known) and the key path."""
        key = ".".join(path).replace(".[", "[") or "<top>"
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        where = f"{self.origin}:{line}" if line else self.origin
        return FleetError(f"{where}: {key}: {message}")

    def mapping(self, value: Any, path: tuple[str, ...]) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a mapping, got {type(value).__name__}")
        return value

    def known_keys(self, value: Mapping[str, Any], path: tuple[str, ...], keys: set[str]) -> None:
        for key in value:
            if key not in keys:
                known = ", ".join(sorted(keys))
                raise self.fail((*path, str(key)), f"unknown key (known: {known})")

    def string(self, value: Any, path: tuple[str, ...], *, allow_empty: bool = True) -> str:
        if not isinstance(value, str) or (not allow_empty and not value):
            raise self.fail(
                path, "must be a non-empty string" if not allow_empty else "must be a string"
            )
        return value

    def number(
        self, value: Any, path: tuple[str, ...], *, low: float = 0.0, high: float = math.inf
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"must be a number, got {value!r}")
        if not low <= float(value) <= high or math.isnan(float(value)):
            raise self.fail(path, f"must be between {low} and {high}, got {value!r}")
        return float(value)

    def integer(self, value: Any, path: tuple[str, ...], *, low: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(path, f"must be an integer >= {low}, got {value!r}")
        return value

    def boolean(self, value: Any, path: tuple[str, ...]) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, got {value!r}")
        return value

    def choice(self, value: Any, path: tuple[str, ...], options: Sequence[str]) -> str:
        if value not in options:
            raise self.fail(path, f"must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    def tags(self, value: Any, path: tuple[str, ...]) -> dict[str, str]:
        raw = self.mapping(value, path)
        out: dict[str, str] = {}
        for key, tag_value in raw.items():
            if not isinstance(key, str) or not key:
                raise self.fail(path, f"tag keys must be non-empty strings, got {key!r}")
            if isinstance(tag_value, bool) or not isinstance(tag_value, str | int | float):
                raise self.fail((*path, key), "tag values must be strings")
            out[key] = str(tag_value)
        return out

    def timestamp(self, value: Any, path: tuple[str, ...]) -> datetime:
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise self.fail(path, f"must be an ISO 8601 time, got {value!r}") from None
        else:
            raise self.fail(path, f"must be an ISO 8601 time, got {value!r}")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)

    def fleet(self, data: Any) -> FleetSpec:
        top = self.mapping(data, ())
        self.known_keys(
            top,
            (),
            {
                "credentials",
                "limits",
                "latency_ms",
                "timing",
                "rate_limits",
                "faults",
                "regions",
                "seed",
                "invalid_instances",
                "whole_machine",
                "launch",
                "instance_states",
                "create_retry_order",
                "image_order",
                *LAG_SWITCHES,
                "null_fields",
                "unknown_instance_status",
                "profile",
                "sync_copies_tags",
                "sync_copies_description",
                "sync_images_per_call",
                "sync_disallowed_pairs",
                "force_poweroff_leaves",
            },
        )
        profile = self.choice(
            top.get("profile", self.default_profile or DEFAULT_PROFILE), ("profile",), PROFILE_NAMES
        )
        # the profile's switches under the explicit ones; the source names the profile, so a
        # saved state reloads under the same one whatever the environment says then
        source = {**top, "profile": profile}
        top = switches(profile, source)
        if not top.get("regions"):
            raise self.fail(("regions",), "is required and must name at least one region")
        invalid = self.id_list(top.get("invalid_instances"), ("invalid_instances",))
        regions_raw = self.mapping(top["regions"], ("regions",))
        regions: dict[str, RegionSpec] = {}
        for name, region_raw in regions_raw.items():
            path = ("regions", str(name))
            regions[str(name)] = self.region(
                self.string(name, path, allow_empty=False), region_raw, path, invalid
            )
        self.unique_ids(regions)
        seed = top.get("seed")
        if seed is not None:
            seed = self.integer(seed, ("seed",))
        return FleetSpec(
            regions=regions,
            credentials=self.credentials(top.get("credentials"), ("credentials",)),
            limits=self.choice(top.get("limits", "legacy"), ("limits",), tuple(LIMITS)),
            latency_ms=self.number(top.get("latency_ms", 0), ("latency_ms",), high=60_000),
            timing=self.timing(top.get("timing"), ("timing",)),
            rate_limits=self.rate_limits(top.get("rate_limits"), ("rate_limits",)),
            faults=self.faults(top.get("faults"), ("faults",)),
            seed=seed,
            whole_machine=self.whole_machine(top.get("whole_machine"), ("whole_machine",)),
            launch=self.launch(top.get("launch"), ("launch",)),
            open_points=self.open_points(top),
            source=source,
        )

    def id_list(self, value: Any, path: tuple[str, ...]) -> frozenset[str]:
        if value is None:
            return frozenset()
        if not isinstance(value, list):
            raise self.fail(path, "must be a list of instance ids")
        return frozenset(
            self.string(item, (*path, f"[{i}]"), allow_empty=False) for i, item in enumerate(value)
        )

    def credentials(self, value: Any, path: tuple[str, ...]) -> Credentials:
        raw = self.mapping(value, path)
        self.known_keys(raw, path, {"secret_id", "secret_key", "token", "uin"})
        default = Credentials()
        token = raw.get("token")
        return Credentials(
            secret_id=self.string(
                raw.get("secret_id", default.secret_id), (*path, "secret_id"), allow_empty=False
            ),
            secret_key=self.string(
                raw.get("secret_key", default.secret_key), (*path, "secret_key"), allow_empty=False
            ),
            token=None if token is None else self.string(token, (*path, "token")),
            uin=self.string(str(raw.get("uin", default.uin)), (*path, "uin"), allow_empty=False),
        )

    def whole_machine(self, value: Any, path: tuple[str, ...]) -> WholeMachine:
        raw = self.mapping(value, path)
        self.known_keys(raw, path, {"sync", "sync_max_gib", "snapshot_quota_per_disk"})
        return WholeMachine(
            sync=self.choice(raw.get("sync", "allowed"), (*path, "sync"), SYNC_CHOICES),
            sync_max_gib=self.integer(raw.get("sync_max_gib", 0), (*path, "sync_max_gib")),
            snapshot_quota_per_disk=self.integer(
                raw.get("snapshot_quota_per_disk", 0), (*path, "snapshot_quota_per_disk")
            ),
        )

    def open_points(self, top: Mapping[str, Any]) -> OpenPoints:
        """The top-level switches of :class:`OpenPoints`."""
        return OpenPoints(
            instance_states=self.choice(
                top.get("instance_states", "in_progress"),
                ("instance_states",),
                INSTANCE_STATE_ANSWERS,
            ),
            create_retry_order=self.choice(
                top.get("create_retry_order", "duplicate_first"),
                ("create_retry_order",),
                CREATE_RETRY_ORDERS,
            ),
            image_order=self.choice(
                top.get("image_order", "newest_first"), ("image_order",), IMAGE_ORDERS
            ),
            null_fields=self.boolean(top.get("null_fields", False), ("null_fields",)),
            unknown_instance_status=self.choice(
                top.get("unknown_instance_status", "error"),
                ("unknown_instance_status",),
                UNKNOWN_INSTANCE_STATUS,
            ),
            sync_copies_tags=self.boolean(top.get("sync_copies_tags", True), ("sync_copies_tags",)),
            sync_copies_description=self.boolean(
                top.get("sync_copies_description", True), ("sync_copies_description",)
            ),
            sync_images_per_call=self.choice(
                top.get("sync_images_per_call", "many"), ("sync_images_per_call",), SYNC_PER_CALL
            ),
            sync_disallowed_pairs=self.sync_pairs(top.get("sync_disallowed_pairs")),
            image_visibility_seconds=self.lag(top, "image_visibility_seconds"),
            tag_visibility_seconds=self.lag(top, "tag_visibility_seconds"),
            delete_lag_seconds=self.lag(top, "delete_lag_seconds"),
            force_poweroff_leaves=self.choice(
                top.get("force_poweroff_leaves", "running"),
                ("force_poweroff_leaves",),
                FORCE_POWEROFF_LEAVES,
            ),
        )

    def lag(self, top: Mapping[str, Any], key: str) -> float:
        """One of :data:`LAG_SWITCHES`: seconds, 0 to a day."""
        return self.number(top.get(key, 0), (key,), high=86_400.0)

    def sync_pairs(self, value: Any) -> tuple[tuple[str, str, str], ...]:
        """``sync_disallowed_pairs``: ``[source, destination]`` or ``[source, destination,
        code]`` entries."""
        path = ("sync_disallowed_pairs",)
        pairs: list[tuple[str, str, str]] = []
        for index, item in enumerate(self.sequence(value, path)):
            where = (*path, f"[{index}]")
            if not isinstance(item, list) or len(item) not in (2, 3):
                raise self.fail(
                    where, "must be [source, destination] or [source, destination, code]"
                )
            source = self.string(item[0], (*where, "[0]"), allow_empty=False)
            destination = self.string(item[1], (*where, "[1]"), allow_empty=False)
            code = self.choice(
                item[2] if len(item) == 3 else SYNC_PAIR_CODES[0], (*where, "[2]"), SYNC_PAIR_CODES
            )
            pairs.append((source, destination, code))
        return tuple(pairs)

    def launch(self, value: Any, path: tuple[str, ...]) -> Launch:
        raw = self.mapping(value, path)
        self.known_keys(
            raw,
            path,
            {
                "outcome",
                "private_ip",
                "instance_quota",
                "sold_out_types",
                "dry_run_answer",
                "reset_leaves",
            },
        )
        sold = tuple(
            self.string(t, (*path, "sold_out_types", f"[{i}]"), allow_empty=False)
            for i, t in enumerate(
                self.sequence(raw.get("sold_out_types"), (*path, "sold_out_types"))
            )
        )
        return Launch(
            outcome=self.choice(raw.get("outcome", "running"), (*path, "outcome"), LAUNCH_OUTCOMES),
            private_ip=self.string(raw.get("private_ip", ""), (*path, "private_ip")),
            instance_quota=self.integer(raw.get("instance_quota", 0), (*path, "instance_quota")),
            sold_out_types=sold,
            dry_run_answer=self.choice(
                raw.get("dry_run_answer", "error"), (*path, "dry_run_answer"), DRY_RUN_ANSWERS
            ),
            reset_leaves=self.choice(
                raw.get("reset_leaves", "prior"), (*path, "reset_leaves"), RESET_LEAVES
            ),
        )

    def disks(self, raw: Mapping[str, Any], path: tuple[str, ...]) -> tuple[DiskSpec, ...]:
        """``data_disks: [{id, type, size}]``, or the older ``data_disk_ids: [id]``."""
        disks = [
            DiskSpec(self.string(d, (*path, "data_disk_ids", f"[{i}]"), allow_empty=False))
            for i, d in enumerate(self.sequence(raw.get("data_disk_ids"), (*path, "data_disk_ids")))
        ]
        for i, item in enumerate(self.sequence(raw.get("data_disks"), (*path, "data_disks"))):
            where = (*path, "data_disks", f"[{i}]")
            disk = self.mapping(item, where)
            self.known_keys(disk, where, {"id", "type", "size"})
            if "id" not in disk:
                raise self.fail((*where, "id"), "is required")
            disks.append(
                DiskSpec(
                    id=self.string(disk["id"], (*where, "id"), allow_empty=False),
                    type=self.choice(
                        disk.get("type", "CLOUD_PREMIUM"), (*where, "type"), DISK_TYPES
                    ),
                    size=self.integer(disk.get("size", 100), (*where, "size"), low=1),
                )
            )
        ids = [disk.id for disk in disks]
        for index, disk_id in enumerate(ids):
            if disk_id in ids[:index]:
                raise self.fail((*path, "data_disks"), f"disk {disk_id!r} is listed twice")
        return tuple(disks)

    def timing(self, value: Any, path: tuple[str, ...]) -> Timing:
        raw = self.mapping(value, path)
        fields = {
            "create_seconds",
            "create_failed_probability",
            "stop_seconds",
            "start_seconds",
            "sync_seconds",
            "create_seconds_per_100gib",
            "launch_seconds",
            "terminate_seconds",
            "reset_seconds",
        }
        self.known_keys(raw, path, fields)
        values: dict[str, float] = {}
        for key in fields & set(raw):
            high = 1.0 if key == "create_failed_probability" else 86_400.0
            values[key] = self.number(raw[key], (*path, key), high=high)
        return Timing(**values)

    def rate_limits(self, value: Any, path: tuple[str, ...]) -> dict[str, float]:
        raw = self.mapping(value, path)
        limits = dict(DEFAULT_RATE_LIMITS)
        for action, limit in raw.items():
            self.choice(action, (*path, str(action)), ACTIONS)
            limits[action] = 0.0 if limit is None else self.number(limit, (*path, action))
        return limits

    def faults(self, value: Any, path: tuple[str, ...]) -> dict[str, dict[str, float]]:
        raw = self.mapping(value, path)
        faults: dict[str, dict[str, float]] = {}
        for action, kinds in raw.items():
            action_path = (*path, str(action))
            self.choice(action, action_path, (*ACTIONS, "*"))
            kinds_raw = self.mapping(kinds, action_path)
            self.known_keys(kinds_raw, action_path, set(FAULT_KINDS))
            probabilities = {
                kind: self.number(p, (*action_path, kind), high=1.0)
                for kind, p in kinds_raw.items()
            }
            if sum(probabilities.values()) > 1.0 + 1e-9:
                raise self.fail(action_path, "fault probabilities add up to more than 1")
            faults[str(action)] = probabilities
        return faults

    def region(
        self, name: str, value: Any, path: tuple[str, ...], invalid: frozenset[str]
    ) -> RegionSpec:
        raw = self.mapping(value, path)
        self.known_keys(raw, path, {"quota", "instances", "images", "invalid_instances"})
        invalid = invalid | self.id_list(raw.get("invalid_instances"), (*path, "invalid_instances"))
        instances = tuple(
            self.instance(item, (*path, "instances", f"[{i}]"), name, invalid)
            for i, item in enumerate(self.sequence(raw.get("instances"), (*path, "instances")))
        )
        images = tuple(
            self.image(item, (*path, "images", f"[{i}]"))
            for i, item in enumerate(self.sequence(raw.get("images"), (*path, "images")))
        )
        return RegionSpec(
            name=name,
            quota=self.integer(raw.get("quota", 10), (*path, "quota")),
            instances=instances,
            images=images,
        )

    def sequence(self, value: Any, path: tuple[str, ...]) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, "must be a list")
        return value

    def instance(
        self, value: Any, path: tuple[str, ...], region: str, invalid: frozenset[str]
    ) -> InstanceSpec:
        raw = self.mapping(value, path)
        self.known_keys(
            raw,
            path,
            {
                "id",
                "name",
                "state",
                "zone",
                "tags",
                "not_supported",
                "instance_type",
                "os_name",
                "data_disk_ids",
                "data_disks",
                "created_time",
                "system_disk_size",
            },
        )
        if "id" not in raw:
            raise self.fail((*path, "id"), "is required")
        instance_id = self.string(raw["id"], (*path, "id"), allow_empty=False)
        created = raw.get("created_time")
        return InstanceSpec(
            id=instance_id,
            name=self.string(raw.get("name", instance_id), (*path, "name")),
            state=self.choice(raw.get("state", "RUNNING"), (*path, "state"), INSTANCE_STATES),
            zone=self.string(raw.get("zone", f"{region}-1"), (*path, "zone")),
            tags=self.tags(raw.get("tags"), (*path, "tags")),
            not_supported=self.boolean(raw.get("not_supported", False), (*path, "not_supported"))
            or instance_id in invalid,
            instance_type=self.string(
                raw.get("instance_type", "S5.MEDIUM4"), (*path, "instance_type")
            ),
            os_name=self.string(raw.get("os_name", InstanceSpec.os_name), (*path, "os_name")),
            data_disks=self.disks(raw, path),
            system_disk_size=self.integer(
                raw.get("system_disk_size", 50), (*path, "system_disk_size"), low=20
            ),
            created_time=None
            if created is None
            else self.timestamp(created, (*path, "created_time")),
        )

    def image(self, value: Any, path: tuple[str, ...]) -> ImageSpec:
        raw = self.mapping(value, path)
        self.known_keys(
            raw,
            path,
            {
                "id",
                "name",
                "state",
                "description",
                "tags",
                "shared",
                "type",
                "instance_id",
                "created_time",
                "creator",
            },
        )
        for key in ("id", "name"):
            if key not in raw:
                raise self.fail((*path, key), "is required")
        created = raw.get("created_time")
        return ImageSpec(
            id=self.string(raw["id"], (*path, "id"), allow_empty=False),
            name=self.string(raw["name"], (*path, "name"), allow_empty=False),
            state=self.choice(raw.get("state", "NORMAL"), (*path, "state"), IMAGE_STATES),
            description=self.string(raw.get("description", ""), (*path, "description")),
            tags=self.tags(raw.get("tags"), (*path, "tags")),
            shared=self.boolean(raw.get("shared", False), (*path, "shared")),
            image_type=self.choice(raw.get("type", "PRIVATE_IMAGE"), (*path, "type"), IMAGE_TYPES),
            instance_id=self.string(raw.get("instance_id", ""), (*path, "instance_id")),
            created_time=None
            if created is None
            else self.timestamp(created, (*path, "created_time")),
            creator=None
            if raw.get("creator") is None
            else self.string(str(raw["creator"]), (*path, "creator"), allow_empty=False),
        )

    def unique_ids(self, regions: Mapping[str, RegionSpec]) -> None:
        seen: set[str] = set()
        for region in regions.values():
            for index, instance in enumerate(region.instances):
                if instance.id in seen:
                    raise self.fail(
                        ("regions", region.name, "instances", f"[{index}]", "id"),
                        f"duplicate id {instance.id!r}",
                    )
                seen.add(instance.id)
            names: set[str] = set()
            for index, image in enumerate(region.images):
                path = ("regions", region.name, "images", f"[{index}]")
                if image.id in seen:
                    raise self.fail((*path, "id"), f"duplicate id {image.id!r}")
                if image.name in names and image.image_type == "PRIVATE_IMAGE":
                    raise self.fail((*path, "name"), f"duplicate image name {image.name!r}")
                seen.add(image.id)
                names.add(image.name)
