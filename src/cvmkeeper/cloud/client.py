"""The one interface through which cvmkeeper talks to Tencent Cloud CVM.

:class:`CloudClient` offers typed methods for what the planner and executor need (list
images and instances, quota, create / delete / copy images, stop / start instances) and
hides the wire: every call is rate-limited per (region, action), retried under a
:class:`~cvmkeeper.cloud.retry.RetryPolicy` and failed with an exception from
:mod:`cvmkeeper.cloud.errors` that says what to do. It runs over any
:class:`~cvmkeeper.cloud.transport.Transport`: the SDK over HTTP, or the emulator core.

Writes are made idempotent here, because a request whose answer was lost may have been
carried out:

- ``create_image``: the image name is deterministic (one slot, one name). Before re-sending
  after a lost answer, and when the cloud answers ``InvalidImageName.Duplicate``, the image
  is looked up by its exact name and adopted instead of created twice.
- ``delete_images``: an image that is already gone counts as done.
- ``sync_image``: before re-sending after a lost answer, destination regions that already
  hold a copy (same name) are adopted and left out of the retry.
- ``stop_instances`` / ``start_instances``: "already stopped / running" counts as done.
- ``tag_resources`` / ``untag_resources`` (Tencent's Tag API, ``cloud.tagging``): setting a
  tag to the value it has, or removing one that is absent, is the same request again.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from cvmkeeper.cloud.credentials import CredentialProvider
from cvmkeeper.cloud.errors import (
    AlreadyDoneError,
    CloudError,
    DryRunPassed,
    NetworkError,
    NotFoundError,
    PermanentError,
    ThrottledError,
)
from cvmkeeper.cloud.identity import ACTION as IDENTITY_ACTION
from cvmkeeper.cloud.identity import IdentityReader, SdkIdentityReader, identity_from_api
from cvmkeeper.cloud.launch_models import (
    InstanceDetails,
    LaunchRequest,
    instance_details_from_api,
    is_new_operation,
)
from cvmkeeper.cloud.models import (
    CreateImageRequest,
    CreateOutcome,
    DeleteResult,
    ResponseFormatError,
    SyncResult,
    image_from_api,
    instance_from_api,
)
from cvmkeeper.cloud.ratelimit import RateLimiter
from cvmkeeper.cloud.retry import RetryPolicy, call_with_retries
from cvmkeeper.cloud.tagging import (
    MAX_RESOURCES_PER_CALL,
    MAX_TAGS_PER_CALL,
    TAG_ACTIONS,
    TAG_RESOURCES,
    UNTAG_RESOURCES,
    SdkTagTransport,
    raise_failed,
    resource_name,
    tag_params,
    untag_params,
)
from cvmkeeper.cloud.transport import (
    EndpointConfig,
    SdkTransport,
    Transport,
)
from cvmkeeper.core.inventory import Image, ImageState, Instance
from cvmkeeper.core.naming import MARKER_TAG
from cvmkeeper.core.ownership import CallerIdentity, creator_is_us, looks_managed
from cvmkeeper.core.plan import DELETE_BATCH_SIZE  # ids per DeleteImages call

log = logging.getLogger(__name__)

#: The API's maximum page size for DescribeImages / DescribeInstances(Status).
PAGE_SIZE = 100
#: A listing whose pages disagree with its TotalCount (changed while paging) is re-read.
_LISTING_ATTEMPTS = 3
_PRIVATE_IMAGES = {"Name": "image-type", "Values": ["PRIVATE_IMAGE"]}


class CallStats:
    """Thread-safe counts of what the client sent: attempts per action, errors per code,
    and errors per (action, code) for the metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.attempts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.action_errors: Counter[tuple[str, str]] = Counter()

    def record(self, action: str, error: CloudError | None) -> None:
        """Count one attempt of ``action``, and its error code if it failed."""
        with self._lock:
            self.attempts[action] += 1
            if error is not None:
                self.errors[error.code] += 1
                self.action_errors[(action, error.code)] += 1

    def snapshot(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        """A consistent copy: (attempts per action, errors per (action, code))."""
        with self._lock:
            return dict(self.attempts), dict(self.action_errors)


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class CloudClient:
    """Typed, rate-limited, retrying access to the CVM API over one transport."""

    def __init__(
        self,
        transport: Transport,
        *,
        limiter: RateLimiter | None = None,
        retry_policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        delete_batch_size: int = DELETE_BATCH_SIZE,
        identity_reader: IdentityReader | None = None,
        tag_transport: Transport | None = None,
    ) -> None:
        self.transport = transport
        # Tag API actions (``cloud.tagging``): through ``tag_transport`` (the Tag service over
        # the SDK), else through the transport (an emulator core answers them in process).
        self.tag_transport = tag_transport
        # GetCallerIdentity: through ``identity_reader`` (STS over the SDK), else through the
        # transport (an emulator core answers it in process). Read once per client.
        self._identity_reader: IdentityReader = identity_reader or (
            lambda region: self.transport.call(region, IDENTITY_ACTION, {})
        )
        self._identity: CallerIdentity | None = None
        self._identity_lock = threading.Lock()
        self.limiter = limiter or RateLimiter(clock=clock, sleep=sleep)
        self.retry_policy = retry_policy or RetryPolicy()
        self.stats = CallStats()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._delete_batch_size = delete_batch_size

    @classmethod
    def over_http(
        cls,
        credentials: CredentialProvider,
        endpoint: EndpointConfig | None = None,
        **options: Any,
    ) -> CloudClient:
        """A client using the official SDK; ``credentials`` from ``resolve_credentials``."""
        endpoint = endpoint or EndpointConfig()
        options.setdefault("identity_reader", SdkIdentityReader(credentials, endpoint))
        options.setdefault("tag_transport", SdkTagTransport(credentials, endpoint))
        return cls(SdkTransport(credentials, endpoint), **options)

    def bound_identity_reader(self, wrap: Callable[[IdentityReader], IdentityReader]) -> None:
        """Replace the identity reader by ``wrap(reader)`` (``cloud.deadline`` bounds it)."""
        self._identity_reader = wrap(self._identity_reader)

    # -- one logical call ------------------------------------------------------------------

    def call(
        self,
        region: str,
        action: str,
        params: Mapping[str, Any],
        *,
        before_retry: Callable[[], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """Send ``action``: rate-limited, retried, failing with a classified ``CloudError``.

        ``before_retry`` runs before every re-send once an answer was lost (a
        :class:`NetworkError`: the request may have been carried out); if it returns a body,
        that ends the call. It may also change ``params`` (a dict) to ask only for what is
        still missing. It keeps running after a later refusal too: after a lost CreateImage
        the cloud may answer ``MutexOperation.TaskRunning`` before
        ``InvalidImageName.Duplicate`` (the order is undocumented, issue #18), and that
        busy answer is then about the request's own image, which the look-up adopts.
        """
        last_error: list[CloudError | None] = [None]
        lost = [False]

        def attempt() -> dict[str, Any]:
            lost[0] = lost[0] or isinstance(last_error[0], NetworkError)
            if lost[0] and before_retry is not None:
                settled = before_retry()
                if settled is not None:
                    return settled
            self.limiter.acquire(region, action)
            transport = self.transport
            if action in TAG_ACTIONS and self.tag_transport is not None:
                transport = self.tag_transport
            try:
                body = transport.call(region, action, params)
            except CloudError as error:
                self.stats.record(action, error)
                last_error[0] = error
                if isinstance(error, ThrottledError):
                    self.limiter.throttled(region, action)
                raise
            self.stats.record(action, None)
            self.limiter.succeeded(region, action)
            return body

        return call_with_retries(
            attempt,
            policy=self.retry_policy,
            action=action,
            region=region,
            sleep=self._sleep,
            clock=self._clock,
            rng=self._rng,
        )

    def _paged(
        self, region: str, action: str, params: Mapping[str, Any], set_key: str, id_key: str
    ) -> list[dict[str, Any]]:
        """Every item of a paged Describe* action (``Offset``/``Limit`` 100), de-duplicated.

        A listing that changed while it was paged (its items disagree with ``TotalCount``)
        is read again, a bounded number of times.
        """
        items: dict[str, dict[str, Any]] = {}
        for _ in range(_LISTING_ATTEMPTS):
            items, total = {}, 0
            offset = 0
            while True:
                body = self.call(region, action, {**params, "Offset": offset, "Limit": PAGE_SIZE})
                page = body.get(set_key) or []
                total = int(body.get("TotalCount", 0))
                max_items = (math.ceil(total / PAGE_SIZE) + 1) * PAGE_SIZE  # bounds the loop
                for item in page:
                    key = item.get(id_key)
                    if not key:
                        raise ResponseFormatError(f"{action} item without an id: {sorted(item)}")
                    items[str(key)] = item
                offset += len(page)
                if not page or offset >= total or offset > max_items:
                    break
            if len(items) == total:
                break
            log.info(
                "%s in %s changed while paging (%d of %d); reading again",
                action,
                region,
                len(items),
                total,
            )
        return list(items.values())

    # -- who we are ------------------------------------------------------------------------

    def caller_identity(self, region: str) -> CallerIdentity:
        """The identity these credentials call the API as (STS ``GetCallerIdentity``), read
        once per client (rate-limited and retried like every call) and remembered."""
        with self._identity_lock:
            if self._identity is None:

                def attempt() -> Mapping[str, Any]:
                    self.limiter.acquire(region, IDENTITY_ACTION)
                    try:
                        body = self._identity_reader(region)
                    except CloudError as error:
                        self.stats.record(IDENTITY_ACTION, error)
                        raise
                    self.stats.record(IDENTITY_ACTION, None)
                    return body

                body = call_with_retries(
                    attempt,
                    policy=self.retry_policy,
                    action=IDENTITY_ACTION,
                    region=region,
                    sleep=self._sleep,
                    clock=self._clock,
                    rng=self._rng,
                )
                self._identity = identity_from_api(body)
                log.info(
                    "calling the API as %s (account %s)",
                    self._identity.arn or self._identity.user_id,
                    self._identity.account_id,
                )
            return self._identity

    def _checked(self, region: str, images: Iterable[Image]) -> tuple[Image, ...]:
        """``images`` with ``creator_trusted`` set from their ``ImageCreator``: only an image
        this identity created may ever be managed (docs/trust.md). An image that carries
        cvmkeeper's marker but another creator is reported here, at WARNING, once per read."""
        identity = self.caller_identity(region)
        checked: list[Image] = []
        for image in images:
            trusted = creator_is_us(image.creator, identity)
            if not trusted and looks_managed(image):
                log.warning(
                    "%s: image %s (%s) carries cvmkeeper's marker but was created by %s, "
                    "not by %s: treated as unmanaged, never deleted",
                    region,
                    image.image_id,
                    image.name,
                    image.creator or "an unknown creator",
                    ", ".join(sorted(identity.creator_ids)),
                )
            checked.append(image if trusted else replace(image, creator_trusted=False))
        return tuple(checked)

    # -- reading ---------------------------------------------------------------------------

    def list_images(self, region: str) -> tuple[Image, ...]:
        """Every custom image of ``region`` (``PRIVATE_IMAGE``, all states, all pages), each
        checked against the caller's identity (``_checked``)."""
        params = {"Filters": [_PRIVATE_IMAGES]}
        items = self._paged(region, "DescribeImages", params, "ImageSet", "ImageId")
        return self._checked(region, (image_from_api(item, region) for item in items))

    def get_images(self, region: str, image_ids: Iterable[str]) -> tuple[Image, ...]:
        """The images with these ids that exist (in few calls: 100 ids each); unknown ids are
        simply absent. For polling many in-flight images at once."""
        wanted = list(dict.fromkeys(image_ids))
        found: list[Image] = []
        for chunk in _chunks(wanted, PAGE_SIZE):
            try:
                body = self.call(region, "DescribeImages", {"ImageIds": chunk, "Limit": PAGE_SIZE})
            except NotFoundError:
                if len(chunk) == 1:
                    continue
                found.extend(self.get_images(region, chunk[: len(chunk) // 2]))
                found.extend(self.get_images(region, chunk[len(chunk) // 2 :]))
                continue
            found.extend(image_from_api(i, region) for i in body.get("ImageSet") or [])
        return self._checked(region, found)

    def find_image_by_name(self, region: str, name: str) -> Image | None:
        """The custom image named exactly ``name`` (the API's ``image-name`` filter is fuzzy)."""
        params = {"Filters": [_PRIVATE_IMAGES, {"Name": "image-name", "Values": [name]}]}
        items = self._paged(region, "DescribeImages", params, "ImageSet", "ImageId")
        exact = [image_from_api(i, region) for i in items if i.get("ImageName") == name]
        return self._checked(region, exact[:1])[0] if exact else None

    def _find_holder(self, region: str, name: str) -> Image | None:
        """The image holding ``name`` after ``InvalidImageName.Duplicate``. DescribeImages
        may not list a just-created image yet (issue #18), so an absent holder is looked
        for again with the retry backoff, within the retry policy's deadline."""
        policy = self.retry_policy
        deadline = self._clock() + policy.deadline_seconds
        for attempt in range(1, policy.max_attempts + 1):
            existing = self.find_image_by_name(region, name)
            if existing is not None or self._clock() >= deadline:
                return existing
            if attempt < policy.max_attempts:
                self._sleep(max(0.0, min(policy.backoff_window(attempt), deadline - self._clock())))
        return None

    def image_quota(self, region: str) -> int:
        """``DescribeImageQuota``: how many custom images the account may hold in ``region``."""
        body = self.call(region, "DescribeImageQuota", {})
        if "ImageNumQuota" not in body:
            raise ResponseFormatError("DescribeImageQuota answer without ImageNumQuota")
        return int(body["ImageNumQuota"])

    def list_instances(
        self, region: str, ids: Iterable[str] = (), tags: Mapping[str, str] | None = None
    ) -> tuple[Instance, ...]:
        """Instances of ``region``: those with ``ids`` (if given) carrying all ``tags``.

        The API takes either ids or filters, so with both the tags are checked here.
        """
        tags = dict(tags or {})
        id_list = list(dict.fromkeys(ids))
        items: list[dict[str, Any]] = []
        if id_list:
            for chunk in _chunks(id_list, PAGE_SIZE):
                items.extend(
                    self._paged(
                        region,
                        "DescribeInstances",
                        {"InstanceIds": chunk},
                        "InstanceSet",
                        "InstanceId",
                    )
                )
        else:
            filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
            params: dict[str, Any] = {"Filters": filters} if filters else {}
            items = self._paged(region, "DescribeInstances", params, "InstanceSet", "InstanceId")
        instances = (instance_from_api(item, region) for item in items)
        return tuple(i for i in instances if all(i.tags.get(k) == v for k, v in tags.items()))

    def instance_states(self, region: str, ids: Iterable[str]) -> dict[str, str]:
        """``DescribeInstancesStatus``: instance id -> state (RUNNING, STOPPED, ...).

        An instance that does not exist is absent from the result, whichever way the cloud
        says so (undocumented, issue #18): left out of the answer, or the whole batch refused
        with ``InvalidInstanceId.NotFound``, in which case each id is asked on its own so
        that one gone instance does not hide the state of the others. Callers treat an
        absent instance as missing (a failed slot, rule 7), never as ``RUNNING``.
        """
        states: dict[str, str] = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), PAGE_SIZE):
            try:
                states.update(self._status_batch(region, chunk))
            except NotFoundError:
                if len(chunk) == 1:
                    continue
                for instance_id in chunk:
                    try:
                        states.update(self._status_batch(region, [instance_id]))
                    except NotFoundError:
                        continue
        return states

    def _status_batch(self, region: str, ids: list[str]) -> dict[str, str]:
        """One ``DescribeInstancesStatus`` call for at most ``PAGE_SIZE`` ids."""
        body = self.call(
            region, "DescribeInstancesStatus", {"InstanceIds": ids, "Limit": PAGE_SIZE}
        )
        return {
            str(item["InstanceId"]): str(item.get("InstanceState") or "")
            for item in body.get("InstanceStatusSet") or []
        }

    # -- writing ---------------------------------------------------------------------------

    def create_image(self, region: str, request: CreateImageRequest) -> CreateOutcome:
        """Create the image of one slot, exactly once however often the call is retried.

        Returns the new image id, or the id of the image that already has this exact name
        (``adopted=True``). Raises ``QuotaExceededError``, ``PermanentError`` (bad instance,
        unsupported...) or the last ``RetryableError`` when retries are exhausted.
        """

        def adopt_if_made() -> dict[str, Any] | None:
            try:
                existing = self.find_image_by_name(region, request.name)
            except CloudError:
                return None  # cannot tell: re-send; a duplicate answer is handled below
            if existing is None or not _adoptable(existing, request):
                return None  # re-send: a foreign holder of the name is refused below
            log.info(
                "CreateImage %s in %s: answer was lost but image %s exists; adopting",
                request.name,
                region,
                existing.image_id,
            )
            return {"ImageId": existing.image_id, "Adopted": True}

        try:
            body = self.call(region, "CreateImage", request.to_params(), before_retry=adopt_if_made)
        except DryRunPassed:
            return CreateOutcome("", adopted=False)
        except AlreadyDoneError as error:
            existing = self._find_holder(region, request.name)
            if existing is None:
                raise
            if not _adoptable(existing, request):
                raise PermanentError(
                    error.code,
                    f"the name {request.name} is held by {existing.image_id}, created by "
                    f"{existing.creator or 'an unknown creator'}, which is not this "
                    "identity's image: not adopted as the slot's backup",
                    request_id=error.request_id,
                    action="CreateImage",
                    region=region,
                ) from error
            log.info(
                "CreateImage %s in %s: image %s already exists; adopting",
                request.name,
                region,
                existing.image_id,
            )
            return CreateOutcome(existing.image_id, adopted=True)
        image_id = body.get("ImageId")
        if not image_id:
            raise ResponseFormatError("CreateImage answer without ImageId")
        return CreateOutcome(str(image_id), adopted=bool(body.get("Adopted")))

    def delete_images(
        self, region: str, image_ids: Iterable[str], *, delete_snapshots: bool = True
    ) -> DeleteResult:
        """Delete images in batches (``DeleteBindedSnap`` by default, so no snapshot is left
        to bill). Images that are already gone are reported, not raised."""
        deleted: list[str] = []
        gone: list[str] = []
        for batch in _chunks(list(dict.fromkeys(image_ids)), self._delete_batch_size):
            self._delete_batch(region, batch, delete_snapshots, deleted, gone)
        return DeleteResult(tuple(deleted), tuple(gone))

    def _delete_batch(
        self,
        region: str,
        batch: list[str],
        snapshots: bool,
        deleted: list[str],
        gone: list[str],
    ) -> None:
        try:
            self.call(region, "DeleteImages", {"ImageIds": batch, "DeleteBindedSnap": snapshots})
        except AlreadyDoneError:
            if len(batch) == 1:
                gone.extend(batch)
                return
            # One id of the batch is gone; delete the rest, which still exist.
            present = {image.image_id for image in self.get_images(region, batch)}
            gone.extend(i for i in batch if i not in present)
            for image_id in batch:
                if image_id in present:
                    self._delete_batch(region, [image_id], snapshots, deleted, gone)
            return
        deleted.extend(batch)

    def sync_image(
        self, region: str, image_id: str, destination_regions: Iterable[str]
    ) -> SyncResult:
        """Copy an image to other regions (``SyncImages``, ``ImageSetRequired``): returns
        destination region -> id of the copy there. Copies are found by the source's name."""
        destinations = list(dict.fromkeys(destination_regions))
        sources = self.get_images(region, [image_id])
        if not sources:
            raise NotFoundError(
                "InvalidImageId.NotFound",
                f"image {image_id} does not exist",
                action="SyncImages",
                region=region,
            )
        name = sources[0].name
        adopted: dict[str, str] = {}
        params: dict[str, Any] = {
            "ImageIds": [image_id],
            "DestinationRegions": destinations,
            "ImageSetRequired": True,
            # The copy's name is the key that makes copying idempotent: say it explicitly
            # rather than rely on the cloud's default name for copies.
            "ImageName": name,
        }

        def adopt_existing_copies() -> dict[str, Any] | None:
            for dest in list(params["DestinationRegions"]):
                try:
                    copy = self.find_image_by_name(dest, name)
                except CloudError:
                    continue
                if copy is not None:
                    adopted[dest] = copy.image_id
                    params["DestinationRegions"].remove(dest)
            return {"ImageSet": []} if not params["DestinationRegions"] else None

        try:
            body = self.call(region, "SyncImages", params, before_retry=adopt_existing_copies)
        except AlreadyDoneError:
            # A copy with this name exists (an earlier attempt made it): adopt every copy
            # that is there; a destination still missing one is an error worth raising.
            adopt_existing_copies()
            if params["DestinationRegions"]:
                raise
            body = {"ImageSet": []}
        copies = dict(adopted)
        for item in body.get("ImageSet") or []:
            copies[str(item["Region"])] = str(item["ImageId"])
        return SyncResult(image_id, copies, tuple(sorted(adopted)))

    def sync_dry_run(self, region: str, image_id: str, destination: str) -> None:
        """``SyncImages`` of ``image_id`` to ``destination`` with ``DryRun``: returns when
        the cloud would copy it, raises the refusal's ``CloudError`` otherwise (a region
        pair that cannot copy, for ``validate --online``). Nothing is copied."""
        params = {"ImageIds": [image_id], "DestinationRegions": [destination], "DryRun": True}
        try:
            self.call(region, "SyncImages", params)
        except DryRunPassed:
            return

    def stop_instances(
        self, region: str, instance_ids: Iterable[str], *, stop_type: str = "SOFT_FIRST"
    ) -> None:
        """Stop instances (``SOFT_FIRST``: shut down cleanly, force after a timeout).
        Instances already stopped or stopping count as done; poll ``instance_states``."""
        self._instances_action(region, "StopInstances", list(instance_ids), {"StopType": stop_type})

    def start_instances(self, region: str, instance_ids: Iterable[str]) -> None:
        """Start instances; instances already running or starting count as done."""
        self._instances_action(region, "StartInstances", list(instance_ids), {})

    def _instances_action(
        self, region: str, action: str, ids: list[str], extra: Mapping[str, Any]
    ) -> None:
        for chunk in _chunks(list(dict.fromkeys(ids)), PAGE_SIZE):
            try:
                self.call(region, action, {"InstanceIds": chunk, **extra})
            except AlreadyDoneError:
                if len(chunk) > 1:  # one was done already: do the others one by one
                    for instance_id in chunk:
                        self._instances_action(region, action, [instance_id], extra)

    # -- tags through Tencent's Tag API (issue #18) -----------------------------------------

    def tag_resources(
        self, region: str, kind: str, ids: Iterable[str], tags: Mapping[str, str]
    ) -> None:
        """Set ``tags`` on the ``kind`` (``instance`` / ``image``) resources ``ids`` of
        ``region`` (``TagResources``; an existing key takes the new value). The account uin of
        the six-segment names is the caller's (``caller_identity``). A resource the answer
        lists in ``FailedResources`` raises the classified error of its code."""
        tag_map = dict(tags)
        if not tag_map or len(tag_map) > MAX_TAGS_PER_CALL:
            raise ValueError(f"give 1 to {MAX_TAGS_PER_CALL} tags, not {len(tag_map)}")
        for chunk in self._resource_chunks(region, kind, ids):
            body = self.call(region, TAG_RESOURCES, tag_params(chunk, tag_map))
            raise_failed(TAG_RESOURCES, region, body)

    def untag_resources(
        self, region: str, kind: str, ids: Iterable[str], keys: Iterable[str]
    ) -> None:
        """Remove the tag ``keys`` from the ``kind`` resources ``ids`` of ``region``
        (``UnTagResources``); a key the resource does not carry is no error."""
        key_list = list(dict.fromkeys(keys))
        if not key_list or len(key_list) > MAX_TAGS_PER_CALL:
            raise ValueError(f"give 1 to {MAX_TAGS_PER_CALL} tag keys, not {len(key_list)}")
        for chunk in self._resource_chunks(region, kind, ids):
            body = self.call(region, UNTAG_RESOURCES, untag_params(chunk, key_list))
            raise_failed(UNTAG_RESOURCES, region, body)

    def _resource_chunks(self, region: str, kind: str, ids: Iterable[str]) -> Iterator[list[str]]:
        """Six-segment names of ``ids``, at most 10 per Tag API call."""
        uin = self.caller_identity(region).account_id
        names = [resource_name(region, uin, kind, i) for i in dict.fromkeys(ids)]
        return _chunks(names, MAX_RESOURCES_PER_CALL)

    # -- restore and drills (issue #16) -----------------------------------------------------

    def describe_instance(self, region: str, instance_id: str) -> InstanceDetails | None:
        """DescribeInstances of one instance, with its placement and network (for restore);
        ``None`` when it does not exist."""
        body = self.call(region, "DescribeInstances", {"InstanceIds": [instance_id]})
        items = [i for i in body.get("InstanceSet") or [] if i.get("InstanceId") == instance_id]
        return instance_details_from_api(items[0], region) if items else None

    def instances_tagged(self, region: str, key: str) -> tuple[InstanceDetails, ...]:
        """Every instance of ``region`` carrying the tag ``key`` (``tag-key`` filter)."""
        params = {"Filters": [{"Name": "tag-key", "Values": [key]}]}
        items = self._paged(region, "DescribeInstances", params, "InstanceSet", "InstanceId")
        return tuple(
            instance_details_from_api(i, region)
            for i in items
            if any(t.get("Key") == key for t in i.get("Tags") or ())
        )

    def run_instances(self, region: str, request: LaunchRequest) -> tuple[str, ...]:
        """RunInstances: the new instance ids (empty for a passing dry run). Retries are safe:
        the request's ``ClientToken`` makes the cloud answer the same ids again."""
        try:
            body = self.call(region, "RunInstances", request.to_params())
        except DryRunPassed:
            return ()
        ids = tuple(str(i) for i in body.get("InstanceIdSet") or ())
        if not ids and not request.dry_run:
            raise ResponseFormatError("RunInstances answer without InstanceIdSet")
        return ids

    def terminate_instances(self, region: str, instance_ids: Iterable[str]) -> None:
        """TerminateInstances; instances already gone or terminating count as done."""
        self._instances_action(region, "TerminateInstances", list(instance_ids), {})

    def reset_instance(
        self,
        region: str,
        instance_id: str,
        image_id: str,
        *,
        keep_image_login: bool = True,
        prior_request_id: str = "",
    ) -> None:
        """ResetInstance: re-install the system disk from ``image_id`` (data disks are not
        touched). Before re-sending after a lost answer, an instance already resetting (or
        reset) to this image *by this call* counts as done, so one restore never resets twice.

        ``prior_request_id`` is the instance's ``LatestOperationRequestId`` read before the
        call: an earlier reset to the same image (a second restore to one image) carries it
        and is not this call's; a dropped request must be sent again, never taken as done."""

        def already_resetting() -> dict[str, Any] | None:
            try:
                details = self.describe_instance(region, instance_id)
            except CloudError:
                return None
            if (
                details
                and details.latest_operation == "ResetInstance"
                and details.image_id == image_id
                and is_new_operation(details, prior_request_id)
            ):
                return {}
            return None

        self.call(
            region,
            "ResetInstance",
            {
                "InstanceId": instance_id,
                "ImageId": image_id,
                "LoginSettings": {"KeepImageLogin": "TRUE" if keep_image_login else "FALSE"},
            },
            before_retry=already_resetting,
        )


def _adoptable(existing: Image, request: CreateImageRequest) -> bool:
    """True when an image that already holds ``request``'s name may be taken as the
    request's image (rule 5): this identity created it (docs/trust.md, ``ImageCreator``)
    and, when the request carries cvmkeeper's marker, so does the image. Anything else
    would let a look-alike make a slot look covered."""
    if not existing.creator_trusted or existing.state is ImageState.DELETING:
        return False
    # no tags at all: listed before its tags show (issue #18); the creator is this identity
    return MARKER_TAG not in request.tags or looks_managed(existing) or not existing.tags
