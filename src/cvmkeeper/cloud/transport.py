"""How one API call reaches a CVM API: the ``Transport`` protocol and the SDK transport.

A :class:`Transport` sends one request and returns the ``Response`` body, or raises the
:class:`~cvmkeeper.cloud.errors.CloudError` subclass that the error table gives for the
answer. It neither retries nor rate-limits: :class:`~cvmkeeper.cloud.client.CloudClient`
wraps every transport the same way, so both behave identically.

- :class:`SdkTransport` uses ``tencentcloud-sdk-python-cvm`` (one ``CvmClient`` per region,
  its generic ``call_json`` path) against Tencent Cloud or the emulator's HTTP front. The
  SDK's own retryer and region breaker stay off: the breaker swallows errors and the
  retryer re-sends after a success.
- ``cvmkeeper.emulator.transport.InProcessTransport`` calls the emulator core directly, for
  fast simulations; it lives with the emulator, which depends on this layer and never the
  reverse.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.cvm.v20170312.cvm_client import CvmClient

from cvmkeeper.cloud.errors import NetworkError, classify

if TYPE_CHECKING:
    from cvmkeeper.cloud.credentials import CredentialProvider

#: Where Tencent Cloud's CVM API lives; the emulator is given as ``127.0.0.1:PORT``.
DEFAULT_ENDPOINT = "cvm.tencentcloudapi.com"


class Transport(Protocol):
    """Sends one CVM API call; raises a classified ``CloudError`` on failure."""

    def call(self, region: str, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Return the ``Response`` object of ``action`` (``RequestId`` included when known)."""
        ...


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """Where and how to reach the API: host (``[host][:port]``, no scheme), scheme, timeout."""

    host: str = DEFAULT_ENDPOINT
    scheme: str = "https"
    timeout_seconds: int = 30

    def __post_init__(self) -> None:
        if "://" in self.host:
            raise ValueError(f"endpoint host {self.host!r} must not carry a scheme; use scheme=")
        if self.scheme not in ("http", "https"):
            raise ValueError(f"endpoint scheme must be http or https, not {self.scheme!r}")
        if self.timeout_seconds <= 0:
            raise ValueError("endpoint timeout_seconds must be positive")


class SdkTransport:
    """Calls the CVM API through the official SDK over HTTP(S)."""

    def __init__(self, credentials: CredentialProvider, endpoint: EndpointConfig) -> None:
        self._credentials = credentials
        self._endpoint = endpoint
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SdkTransport({self._endpoint.scheme}://{self._endpoint.host})"

    def _client(self, region: str) -> Any:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                client = CvmClient(self._credentials, region, sdk_profile(self._endpoint))
                self._clients[region] = client
            return client

    def call(self, region: str, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``action`` to ``region``; SDK exceptions become classified ``CloudError``s."""
        return call_sdk(self._client(region), region, action, params)


def _short(message: object, limit: int = 500) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = [
    "DEFAULT_ENDPOINT",
    "EndpointConfig",
    "SdkTransport",
    "Transport",
]


def sdk_profile(endpoint: EndpointConfig) -> ClientProfile:
    """The SDK client profile for ``endpoint``. The SDK reads its ``HttpProfile`` once, at
    construction, so it is built complete here; the SDK's own retryer stays off (it re-sends
    after a success; cvmkeeper retries itself)."""
    http = HttpProfile(
        protocol=endpoint.scheme,
        endpoint=endpoint.host,
        reqTimeout=endpoint.timeout_seconds,
    )
    return ClientProfile(
        httpProfile=http, language="en-US", disable_region_breaker=True, retryer=None
    )


def call_sdk(client: Any, region: str, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``client.call_json(action, params)`` (any SDK client: ``CvmClient``, ``CommonClient``);
    SDK exceptions become classified ``CloudError``s, an answer that is not JSON or has no
    ``Response`` object a ``NetworkError``."""
    try:
        body = client.call_json(action, dict(params))
    except TencentCloudSDKException as exc:
        raise classify(
            str(exc.code or "ClientNetworkError"),
            _short(exc.message),
            action=action,
            region=region,
            request_id=exc.requestId or None,
        ) from None
    except ValueError as exc:  # the answer was not JSON
        raise NetworkError(
            "ClientNetworkError.BadResponse",
            f"unreadable answer: {exc}",
            action=action,
            region=region,
        ) from None
    response = body.get("Response") if isinstance(body, dict) else None
    if not isinstance(response, dict):
        raise NetworkError(
            "ClientNetworkError.BadResponse",
            "answer without a Response object",
            action=action,
            region=region,
        )
    return response
