"""The one interface through which cvmkeeper reaches Tencent Cloud, and its implementations.

Use :class:`CloudClient` (``CloudClient.over_http(credentials, endpoint)`` for Tencent Cloud
or the emulator's HTTP front; ``cvmkeeper.emulator.transport.in_process_client(core)`` for
simulations) and catch the exceptions of :mod:`cvmkeeper.cloud.errors`, which say what to do.
"""

from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.credentials import (
    Credentials,
    CredentialsConfig,
    CredentialsError,
    CredentialsNotFoundError,
    resolve_credentials,
)
from cvmkeeper.cloud.errors import (
    AlreadyDoneError,
    AuthError,
    CloudError,
    NotFoundError,
    PermanentError,
    QuotaExceededError,
    RetryableError,
)
from cvmkeeper.cloud.models import CreateImageRequest, CreateOutcome, DeleteResult, SyncResult
from cvmkeeper.cloud.ratelimit import RateLimitConfig, RateLimiter
from cvmkeeper.cloud.retry import RetryPolicy
from cvmkeeper.cloud.transport import EndpointConfig, SdkTransport, Transport

__all__ = [
    "AlreadyDoneError",
    "AuthError",
    "CloudClient",
    "CloudError",
    "CreateImageRequest",
    "CreateOutcome",
    "Credentials",
    "CredentialsConfig",
    "CredentialsError",
    "CredentialsNotFoundError",
    "DeleteResult",
    "EndpointConfig",
    "NotFoundError",
    "PermanentError",
    "QuotaExceededError",
    "RateLimitConfig",
    "RateLimiter",
    "RetryPolicy",
    "RetryableError",
    "SdkTransport",
    "SyncResult",
    "Transport",
    "resolve_credentials",
]
