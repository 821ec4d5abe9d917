"""How one API call reaches a CVM API: over HTTP with the official SDK, or in-process.

A :class:`Transport` sends one request and returns the ``Response`` body, or raises the
:class:`~cvmkeeper.cloud.errors.CloudError` subclass that the error table gives for the
answer. It neither retries nor rate-limits: :class:`~cvmkeeper.cloud.client.CloudClient`
wraps every transport the same way, so both behave identically.

- :class:`SdkTransport` uses ``tencentcloud-sdk-python-cvm`` (one ``CvmClient`` per region,
  its generic ``call_json`` path) against Tencent Cloud or the emulator's HTTP front. The
  SDK's own retryer and region breaker stay off: the breaker swallows errors and the
  retryer re-sends after a success.
- :class:`InProcessTransport` calls the emulator core directly, for fast simulations. Its
  requests and answers are copied as a JSON round trip would (tuples become lists, what
  JSON cannot carry is a ``TypeError``), so neither side shares state with the other.
"""

from __future__ import annotations

import json
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


def _wire_copy(value: Any) -> Any:
    """``value`` as it comes out of the wire: ``json.loads(json.dumps(value))``, computed
    without the text for the plain types requests and answers are made of (``dict`` with
    ``str`` keys, ``list``, ``tuple``, ``str``, ``int``, ``float``, ``bool``, ``None``).
    Anything else (subclasses, other keys) takes the real round trip, so the result and the
    ``TypeError`` for what JSON cannot carry are exactly JSON's (for acyclic values)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        if all(type(key) is str for key in value):
            return {key: _wire_copy(item) for key, item in value.items()}
    elif kind is list or kind is tuple:
        return [_wire_copy(item) for item in value]
    return json.loads(json.dumps(value))


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
                # The SDK reads its HttpProfile once, at construction: build it complete.
                http = HttpProfile(
                    protocol=self._endpoint.scheme,
                    endpoint=self._endpoint.host,
                    reqTimeout=self._endpoint.timeout_seconds,
                )
                profile = ClientProfile(
                    httpProfile=http, language="en-US", disable_region_breaker=True, retryer=None
                )
                client = CvmClient(self._credentials, region, profile)
                self._clients[region] = client
            return client

    def call(self, region: str, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``action`` to ``region``; SDK exceptions become classified ``CloudError``s."""
        client = self._client(region)
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
                "ClientNetworkError.BadResponse", f"unreadable answer: {exc}", action=action,
                region=region,
            ) from None
        response = body.get("Response") if isinstance(body, dict) else None
        if not isinstance(response, dict):
            raise NetworkError(
                "ClientNetworkError.BadResponse", "answer without a Response object",
                action=action, region=region,
            )
        return response


def _short(message: object, limit: int = 500) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    return text if len(text) <= limit else text[:limit] + "..."


class InProcessTransport:
    """Calls an emulator core directly (no HTTP); for fast simulations and tests.

    ``core`` is a ``cvmkeeper.emulator.core.EmulatorCore`` (or anything with its ``call``);
    the emulator is imported lazily so that the cloud layer does not depend on it.
    """

    def __init__(self, core: Any) -> None:
        self.core = core

    def call(self, region: str, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``action`` in the core; its errors and faults become classified errors."""
        # Imported here: the cloud layer must not need the emulator unless it is used.
        from cvmkeeper.emulator.core import ApiError, ConnectionFault  # noqa: PLC0415

        try:
            answer = self.core.call(action, region, _wire_copy(dict(params)))
        except ApiError as exc:
            raise classify(exc.code, exc.message, action=action, region=region) from None
        except ConnectionFault:
            raise NetworkError(
                "ClientNetworkError", "connection closed without an answer",
                action=action, region=region,
            ) from None
        result: dict[str, Any] = _wire_copy(answer)
        return result


__all__ = [
    "DEFAULT_ENDPOINT",
    "EndpointConfig",
    "InProcessTransport",
    "SdkTransport",
    "Transport",
]
