"""What to do about a Tencent Cloud error: one table from error code to exception class.

The CVM API answers every failure with a code (``RequestLimitExceeded``,
``InvalidImageName.Duplicate``, ...). Callers should not parse codes; they should catch an
exception that already says what to do:

- :class:`RetryableError` — try again after a backoff (throttled, busy, network, a bounded
  number of ``InternalError``). The client's retry loop does this itself.
- :class:`AlreadyDoneError` — the thing asked for is already true (the image of this slot
  already exists; the image to delete is already gone). Go on.
- :class:`QuotaExceededError` — the region has no room for another image: re-plan once.
- :class:`PermanentError` — retrying cannot help; alert a human.

:data:`ERROR_TABLE` is the single place that maps codes to these classes. Rules are tried in
order and the first match wins, so action-specific rules come before general ones. A code
that matches no rule is permanent: an unknown failure is never retried blindly.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvmkeeper.textsafe import escape

#: Codes the client itself uses for failures that never reached a Tencent answer.
NETWORK_ERROR_CODES = frozenset({"ClientNetworkError", "ServerNetworkError"})


class CloudError(Exception):
    """A failed cloud call, with everything Tencent said about it (never a secret)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        action: str = "",
        region: str | None = None,
    ) -> None:
        # Text from the API (or a proxy in between) is escaped once, here, so that no
        # terminal sequence or newline in it reaches a terminal, a log line or an alert.
        self.code = escape(code)
        self.message = escape(message)
        self.request_id = escape(request_id) if request_id is not None else None
        self.action = action
        self.region = region
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"{self.action} in {self.region}" if self.region else self.action or "call"
        rid = f" (RequestId {self.request_id})" if self.request_id else ""
        return f"{where} failed: {self.code}: {self.message}{rid}"


class RetryableError(CloudError):
    """Transient: the same request may succeed after a backoff."""


class ThrottledError(RetryableError):
    """``RequestLimitExceeded*``: slow this (region, action) down, then retry."""


class BusyError(RetryableError):
    """The resource is busy with another operation (``ResourceInUse*``, ``MutexOperation``...)."""


class NetworkError(RetryableError):
    """No answer was received: the request may or may not have been carried out."""


class InternalServerError(RetryableError):
    """``InternalError*``: retried only a bounded few times (see ``RetryPolicy``)."""


class AlreadyDoneError(CloudError):
    """What was asked for is already true (created earlier, already deleted, already stopped)."""


class DryRunPassed(CloudError):
    """``DryRunOperation``: the dry run found nothing wrong; nothing was changed."""


class QuotaExceededError(CloudError):
    """The region's custom-image quota is full: re-plan (once), do not retry blindly."""


class PermanentError(CloudError):
    """Retrying cannot help: a human must look (bad request, unsupported, unknown code)."""


class CapacityError(PermanentError):
    """RunInstances: no stock of the type in the zone, or the account's instance quota is
    used up. Retrying the same request does not help; another zone or type may."""


class AuthError(PermanentError):
    """The credentials were refused (``AuthFailure.*``)."""


class NotFoundError(PermanentError):
    """The instance or image named in the request does not exist."""


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """One row of the table: a code (exact, or a prefix ending in ``*``) and what it means.

    ``actions`` limits the rule to some API actions; empty means every action.
    """

    pattern: str
    error_class: type[CloudError]
    actions: frozenset[str] = frozenset()
    reason: str = ""

    def matches(self, action: str, code: str) -> bool:
        """True when this rule applies to ``code`` answered to ``action``."""
        if self.actions and action not in self.actions:
            return False
        if self.pattern.endswith("*"):
            return code.startswith(self.pattern[:-1])
        return code == self.pattern


def _rule(
    pattern: str, error_class: type[CloudError], *actions: str, reason: str = ""
) -> ErrorRule:
    return ErrorRule(pattern, error_class, frozenset(actions), reason)


#: The one table. First match wins: action-specific rows first, then exact codes, then prefixes.
ERROR_TABLE: tuple[ErrorRule, ...] = (
    # -- already done: the deterministic name / id makes these safe to treat as success --
    _rule(
        "InvalidImageName.Duplicate",
        AlreadyDoneError,
        "CreateImage",
        reason="the image of this slot exists already (names are unique per region)",
    ),
    _rule(
        "InvalidImageName.Duplicate",
        AlreadyDoneError,
        "SyncImages",
        reason="a copy with this name exists in a destination region already",
    ),
    _rule(
        "InvalidImageId.NotFound",
        AlreadyDoneError,
        "DeleteImages",
        reason="the image to delete is already gone",
    ),
    _rule(
        "UnsupportedOperation.InstanceStateStopped",
        AlreadyDoneError,
        "StopInstances",
        reason="the instance is already stopped",
    ),
    _rule(
        "UnsupportedOperation.InstanceStateStopping",
        AlreadyDoneError,
        "StopInstances",
        reason="the instance is already stopping",
    ),
    _rule(
        "UnsupportedOperation.InstanceStateRunning",
        AlreadyDoneError,
        "StartInstances",
        reason="the instance is already running",
    ),
    _rule(
        "UnsupportedOperation.InstanceStateStarting",
        AlreadyDoneError,
        "StartInstances",
        reason="the instance is already starting",
    ),
    # -- an instance in a transition (issue #18): each state has its own code in the error
    # lists of StartInstances, StopInstances and CreateImage (tencentcloud-sdk-go
    # tencentcloud/cvm/v20170312/client.go; the codes in errors.go). The state passes, so
    # the call is retried: a StartInstances on a STOPPING instance waits for STOPPED rather
    # than giving up and leaving it stopped (rule 9). The rows above take the states that
    # already mean "done" (StopInstances on STOPPING, StartInstances on STARTING) first;
    # TerminateInstances on a PENDING instance (still being created) waits the same way.
    *(
        _rule(
            f"UnsupportedOperation.InstanceState{state}",
            BusyError,
            reason=f"the instance is {state.upper()}: wait for it to settle, then retry",
        )
        for state in ("Stopping", "Starting", "Rebooting", "Pending")
    ),
    # -- SyncImages while its source image is busy (issue #18): in SyncImages' error list
    # (client.go), and errors.go describes them as "the image is busy, retry later" and
    # "the image is taken by another operation, check and retry later".
    # Only for SyncImages: RunInstances answers the same code for an image that is not NORMAL.
    _rule(
        "FailedOperation.InvalidImageState",
        BusyError,
        "SyncImages",
        reason="the source image is busy: retry later",
    ),
    _rule(
        "InvalidParameterValue.InvalidImageState",
        BusyError,
        "SyncImages",
        reason="the source image is taken by another operation: retry later",
    ),
    _rule("DryRunOperation", DryRunPassed, reason="a dry run found nothing wrong"),
    # -- Tencent's Tag API (cloud/tagging.py): the codes of TagResources / UnTagResources in
    # tencentcloud-sdk-go tencentcloud/tag/v20180813/client.go, described in its errors.go.
    # "资源标签正在处理中" (the resource's tags are being processed) passes; a resource id the
    # Tag service does not know means the instance or image is gone. The other codes of the
    # lists (InvalidParameter*, LimitExceeded.*, AuthFailure.*, FailedOperation) are
    # permanent through the general rows below and the unknown-code default.
    _rule(
        "FailedOperation.ResourceTagProcessing",
        BusyError,
        "TagResources",
        "UnTagResources",
        reason="the resource's tags are being processed: retry later",
    ),
    _rule(
        "InvalidParameterValue.ResourceIdInvalid",
        NotFoundError,
        "TagResources",
        "UnTagResources",
        reason="no such resource",
    ),
    # -- restore and drills (issue #16): codes of RunInstances / TerminateInstances /
    # ResetInstance in tencentcloud-sdk-go tencentcloud/cvm/v20170312/client.go --
    _rule(
        "InvalidInstanceId.NotFound",
        AlreadyDoneError,
        "TerminateInstances",
        reason="the instance to terminate is already gone",
    ),
    _rule(
        "UnsupportedOperation.InstanceStateTerminating",
        AlreadyDoneError,
        "TerminateInstances",
        reason="the instance is already being terminated",
    ),
    _rule(
        "UnsupportedOperation.InstanceStateTerminated",
        AlreadyDoneError,
        "TerminateInstances",
        reason="the instance is already terminated",
    ),
    _rule("ResourceInsufficient*", CapacityError, reason="no stock in the zone"),
    _rule("ResourcesSoldOut*", CapacityError, reason="sold out in the zone"),
    _rule(
        "ResourceUnavailable.InstanceType",
        CapacityError,
        "RunInstances",
        reason="the instance type is not offered in the zone",
    ),
    _rule("LimitExceeded.InstanceQuota", CapacityError, reason="instance quota used up"),
    _rule("LimitExceeded.CvmInstanceQuota", CapacityError, reason="instance quota used up"),
    _rule("InstancesQuotaLimitExceeded", CapacityError, reason="instance quota used up"),
    _rule("InvalidZone*", PermanentError, reason="the zone is not in the region"),
    _rule("InvalidClientToken*", PermanentError, reason="bad ClientToken"),
    _rule("InvalidSecurityGroupId*", PermanentError, reason="unknown security group"),
    # -- quota --
    _rule("ImageQuotaLimitExceeded", QuotaExceededError, reason="custom-image quota is full"),
    # -- retry with backoff --
    # RequestLimitExceeded and its variants .UinLimitExceeded (per account; in sdk-go's
    # errors.go of cam and asr), .GlobalRegionUinLimitExceeded and .IPLimitExceeded (Tencent
    # Cloud API 3.0 common error codes): all are throttling, one prefix row.
    _rule("RequestLimitExceeded*", ThrottledError, reason="throttled: slow down and retry"),
    _rule("ResourceInUse*", BusyError, reason="resource busy"),
    _rule("ResourceUnavailable*", BusyError, reason="resource temporarily unavailable"),
    _rule("MutexOperation.TaskRunning", BusyError, reason="another task runs on the resource"),
    _rule(
        "OperationDenied.InstanceOperationInProgress",
        BusyError,
        reason="another operation runs on the instance",
    ),
    _rule("ClientNetworkError*", NetworkError, reason="no answer received"),
    _rule("ServerNetworkError*", NetworkError, reason="non-200 HTTP answer"),
    _rule("InternalError*", InternalServerError, reason="server fault: retry a few times"),
    # -- permanent: alert, never retry --
    _rule("AuthFailure*", AuthError, reason="credentials refused"),
    _rule("InvalidInstanceId.NotFound", NotFoundError, reason="no such instance"),
    _rule("InvalidImageId.NotFound", NotFoundError, reason="no such image"),
    _rule("InvalidInstance.NotSupported", PermanentError, reason="instance cannot be imaged"),
    _rule("UnsupportedOperation*", PermanentError, reason="operation not supported"),
    _rule("UnauthorizedOperation*", PermanentError, reason="not allowed for this account"),
    _rule("InvalidParameter*", PermanentError, reason="bad parameter"),
    _rule("InvalidImageName*", PermanentError, reason="bad image name"),
    _rule("InvalidImageId*", PermanentError, reason="image in a state that forbids this"),
    _rule("InvalidRegion*", PermanentError, reason="unknown region"),
    _rule("UnsupportedRegion", PermanentError, reason="unknown region"),
    _rule("UnknownParameter", PermanentError, reason="bad request"),
    _rule("MissingParameter", PermanentError, reason="bad request"),
    _rule("InvalidAction", PermanentError, reason="bad request"),
)

#: Used for codes no rule matches: safe, because nothing unknown is retried.
UNKNOWN_CODE_CLASS: type[CloudError] = PermanentError


def rule_for(action: str, code: str) -> ErrorRule | None:
    """The first rule of :data:`ERROR_TABLE` that matches, or ``None`` for an unknown code."""
    return next((r for r in ERROR_TABLE if r.matches(action, code)), None)


def classify(
    code: str,
    message: str,
    *,
    action: str,
    region: str | None,
    request_id: str | None = None,
) -> CloudError:
    """Build the exception that says what to do about ``code`` answered to ``action``."""
    rule = rule_for(action, code)
    error_class = rule.error_class if rule else UNKNOWN_CODE_CLASS
    return error_class(code, message, request_id=request_id, action=action, region=region)
