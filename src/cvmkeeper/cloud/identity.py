"""Who the daemon is: STS ``GetCallerIdentity``, over the official SDK or an emulator core.

The answer decides which images cvmkeeper may treat as its own (``ImageCreator`` must be
this identity; see ``core.ownership`` and docs/trust.md). STS is another service
(``sts``, version ``2018-08-13``, endpoint ``sts.tencentcloudapi.com``) than CVM, so it
has its own small reader here, over
:class:`~cvmkeeper.cloud.common_clients.CommonServiceClients` (the SDK's ``CommonClient``
signs for the service it is given; a custom endpoint serves every service).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cvmkeeper.cloud.common_clients import CommonServiceClients
from cvmkeeper.cloud.credentials import CredentialProvider
from cvmkeeper.cloud.errors import PermanentError
from cvmkeeper.cloud.transport import EndpointConfig
from cvmkeeper.core.ownership import CallerIdentity

ACTION = "GetCallerIdentity"
SERVICE = "sts"
VERSION = "2018-08-13"
STS_ENDPOINT = "sts.tencentcloudapi.com"

#: reads the raw ``Response`` of GetCallerIdentity in a region
IdentityReader = Callable[[str], Mapping[str, Any]]


def identity_from_api(body: Mapping[str, Any]) -> CallerIdentity:
    """Build a ``CallerIdentity`` from a ``GetCallerIdentity`` response; one without the
    caller's ids is a ``PermanentError`` (nothing is trusted on a guess)."""
    account = str(body.get("AccountId") or "")
    user = str(body.get("UserId") or "")
    principal = str(body.get("PrincipalId") or "")
    if not (account and (user or principal)):
        raise PermanentError(
            "InvalidResponse.CallerIdentity",
            f"{ACTION} answered without AccountId/UserId: {sorted(body)}",
            action=ACTION,
        )
    return CallerIdentity(
        account_id=account,
        user_id=user,
        principal_id=principal,
        arn=str(body.get("Arn") or ""),
        kind=str(body.get("Type") or ""),
    )


class SdkIdentityReader:
    """``GetCallerIdentity`` through the SDK's ``CommonClient`` (service ``sts``)."""

    def __init__(self, credentials: CredentialProvider, endpoint: EndpointConfig) -> None:
        self._clients = CommonServiceClients(SERVICE, VERSION, STS_ENDPOINT, credentials, endpoint)

    def __call__(self, region: str) -> Mapping[str, Any]:
        """The ``Response`` of ``GetCallerIdentity``; failures are classified ``CloudError``s."""
        return self._clients.call(region, ACTION, {})
