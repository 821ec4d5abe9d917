"""One ``CommonClient`` per region for a Tencent service other than CVM (STS, Tag).

The SDK's ``CommonClient`` signs for the service it is given, so each non-CVM service
(``cloud.identity``'s STS, ``cloud.tagging``'s Tag API) needs its own clients. They share
two things, kept here once: the endpoint swap (the configured endpoint is CVM's; the real
service lives on its own host, while a custom endpoint such as the emulator or a proxy
serves every service on one host) and the per-region client cache under a lock (the
daemon's regions run on several threads).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from tencentcloud.common.common_client import CommonClient

from cvmkeeper.cloud.credentials import CredentialProvider
from cvmkeeper.cloud.transport import DEFAULT_ENDPOINT, EndpointConfig, call_sdk, sdk_profile


class CommonServiceClients:
    """Per-region ``CommonClient``s of one service (``service``, ``version``), reached at
    ``default_host`` when the configured endpoint is Tencent's CVM host, else at that
    endpoint."""

    def __init__(
        self,
        service: str,
        version: str,
        default_host: str,
        credentials: CredentialProvider,
        endpoint: EndpointConfig,
    ) -> None:
        self._service = service
        self._version = version
        self._credentials = credentials
        host = default_host if endpoint.host == DEFAULT_ENDPOINT else endpoint.host
        self.endpoint = EndpointConfig(host, endpoint.scheme, endpoint.timeout_seconds)
        self._clients: dict[str, CommonClient] = {}
        self._lock = threading.Lock()

    def client(self, region: str) -> CommonClient:
        """The region's client, made once."""
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                client = CommonClient(
                    self._service,
                    self._version,
                    self._credentials,
                    region,
                    sdk_profile(self.endpoint),
                )
                self._clients[region] = client
            return client

    def call(self, region: str, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``action`` to the service in ``region``; failures are classified
        ``CloudError``s."""
        return call_sdk(self.client(region), region, action, params)
