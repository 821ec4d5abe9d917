"""The error table, row by row: each code lands in the class that says what to do."""

from __future__ import annotations

import pytest

from cvmkeeper.cloud.errors import (
    ERROR_TABLE,
    AlreadyDoneError,
    AuthError,
    BusyError,
    CloudError,
    DryRunPassed,
    InternalServerError,
    NetworkError,
    NotFoundError,
    PermanentError,
    QuotaExceededError,
    RetryableError,
    ThrottledError,
    classify,
)

CASES = [
    # (action, code, expected class)
    ("CreateImage", "InvalidImageName.Duplicate", AlreadyDoneError),
    ("SyncImages", "InvalidImageName.Duplicate", AlreadyDoneError),
    ("DeleteImages", "InvalidImageId.NotFound", AlreadyDoneError),
    ("StopInstances", "UnsupportedOperation.InstanceStateStopped", AlreadyDoneError),
    ("StopInstances", "UnsupportedOperation.InstanceStateStopping", AlreadyDoneError),
    ("StartInstances", "UnsupportedOperation.InstanceStateRunning", AlreadyDoneError),
    ("StartInstances", "UnsupportedOperation.InstanceStateStarting", AlreadyDoneError),
    ("CreateImage", "DryRunOperation", DryRunPassed),
    ("CreateImage", "ImageQuotaLimitExceeded", QuotaExceededError),
    ("SyncImages", "ImageQuotaLimitExceeded", QuotaExceededError),
    ("DescribeImages", "RequestLimitExceeded", ThrottledError),
    ("CreateImage", "RequestLimitExceeded.UinLimitExceeded", ThrottledError),
    ("StartInstances", "RequestLimitExceeded.GlobalRegionUinLimitExceeded", ThrottledError),
    ("DescribeImages", "RequestLimitExceeded.IPLimitExceeded", ThrottledError),
    ("SyncImages", "RequestLimitExceeded.UinLimitExceeded", ThrottledError),
    # an instance in a transition: wait for it to settle (issue #18)
    ("StartInstances", "UnsupportedOperation.InstanceStateStopping", BusyError),
    ("StartInstances", "UnsupportedOperation.InstanceStatePending", BusyError),
    ("StartInstances", "UnsupportedOperation.InstanceStateRebooting", BusyError),
    ("StopInstances", "UnsupportedOperation.InstanceStateStarting", BusyError),
    ("StopInstances", "UnsupportedOperation.InstanceStatePending", BusyError),
    ("StopInstances", "UnsupportedOperation.InstanceStateRebooting", BusyError),
    ("CreateImage", "UnsupportedOperation.InstanceStateStopping", BusyError),
    ("CreateImage", "UnsupportedOperation.InstanceStateStarting", BusyError),
    ("CreateImage", "UnsupportedOperation.InstanceStateRebooting", BusyError),
    ("CreateImage", "UnsupportedOperation.InstanceStatePending", BusyError),
    ("TerminateInstances", "UnsupportedOperation.InstanceStatePending", BusyError),
    # ... while the settled states that cannot be waited out stay what they were
    ("CreateImage", "UnsupportedOperation.InstanceStateTerminating", PermanentError),
    ("StartInstances", "UnsupportedOperation.InstanceStateTerminated", PermanentError),
    # SyncImages' busy source image: retry later (issue #18)
    ("SyncImages", "FailedOperation.InvalidImageState", BusyError),
    ("SyncImages", "InvalidParameterValue.InvalidImageState", BusyError),
    # the same code refuses a launch from an image that is not NORMAL: not busy there
    ("RunInstances", "InvalidParameterValue.InvalidImageState", PermanentError),
    ("CreateImage", "FailedOperation.InvalidImageState", PermanentError),
    # a parameter over its limit is no throttling
    ("StartInstances", "InvalidParameterValue.LimitExceeded", PermanentError),
    ("DeleteImages", "ResourceInUse", BusyError),
    ("DeleteImages", "ResourceInUse.Image", BusyError),
    ("CreateImage", "ResourceUnavailable.Snapshot", BusyError),
    ("CreateImage", "MutexOperation.TaskRunning", BusyError),
    ("CreateImage", "OperationDenied.InstanceOperationInProgress", BusyError),
    ("CreateImage", "ClientNetworkError", NetworkError),
    ("CreateImage", "ServerNetworkError", NetworkError),
    ("CreateImage", "InternalError", InternalServerError),
    ("CreateImage", "InternalError.TradeUnknownError", InternalServerError),
    ("CreateImage", "AuthFailure.SignatureFailure", AuthError),
    ("DescribeImages", "AuthFailure.SecretIdNotFound", AuthError),
    ("CreateImage", "InvalidInstanceId.NotFound", NotFoundError),
    # the same codes on other actions are not "already done"
    ("CreateImage", "InvalidImageId.NotFound", NotFoundError),
    ("SyncImages", "InvalidImageId.NotFound", NotFoundError),
    ("StartInstances", "UnsupportedOperation.InstanceStateStopped", PermanentError),
    ("CreateImage", "InvalidInstance.NotSupported", PermanentError),
    ("CreateImage", "UnsupportedOperation", PermanentError),
    ("CreateImage", "InvalidParameter.ValueTooLarge", PermanentError),
    ("CreateImage", "InvalidParameterValue", PermanentError),
    ("DeleteImages", "InvalidImageId.IncorrectState", PermanentError),
    ("DeleteImages", "InvalidImageId.InShared", PermanentError),
    ("DeleteImages", "UnauthorizedOperation.ImageNotBelongToAccount", PermanentError),
    ("DescribeImages", "InvalidRegion.NotFound", PermanentError),
    ("DescribeImages", "UnsupportedRegion", PermanentError),
    ("DescribeImages", "UnknownParameter", PermanentError),
    ("DescribeImages", "MissingParameter", PermanentError),
    ("DescribeImages", "InvalidAction", PermanentError),
    # unknown codes are permanent: nothing unknown is ever retried blindly
    ("CreateImage", "SomethingNew.NeverSeen", PermanentError),
]


@pytest.mark.parametrize(("action", "code", "expected"), CASES)
def test_each_code_maps_to_what_to_do(action: str, code: str, expected: type) -> None:
    error = classify(code, "msg", action=action, region="ap-guangzhou", request_id="req-1")
    assert type(error) is expected
    assert (error.code, error.message, error.request_id) == (code, "msg", "req-1")
    assert (error.action, error.region) == (action, "ap-guangzhou")


def test_retryable_classes_share_one_base_and_permanent_ones_do_not() -> None:
    for cls in (ThrottledError, BusyError, NetworkError, InternalServerError):
        assert issubclass(cls, RetryableError)
    for cls in (AlreadyDoneError, QuotaExceededError, PermanentError, DryRunPassed):
        assert not issubclass(cls, RetryableError)
        assert issubclass(cls, CloudError)


def test_every_table_row_is_reachable() -> None:
    """No row is shadowed by an earlier, broader one (first match wins)."""
    for index, rule in enumerate(ERROR_TABLE):
        code = rule.pattern.rstrip("*") or rule.pattern
        action = next(iter(rule.actions)) if rule.actions else "DescribeImages"
        earlier = [r for r in ERROR_TABLE[:index] if r.matches(action, code)]
        assert not earlier, f"row {rule.pattern} is shadowed by {earlier[0].pattern}"


def test_message_keeps_code_request_id_and_where() -> None:
    error = classify(
        "RequestLimitExceeded",
        "slow down",
        action="CreateImage",
        region="ap-shanghai",
        request_id="abc-123",
    )
    assert str(error) == (
        "CreateImage in ap-shanghai failed: RequestLimitExceeded: slow down (RequestId abc-123)"
    )
