"""TC3-HMAC-SHA256 request verification, computed exactly as the Tencent SDK signs.

The canonical request is ``POST\\n/\\n\\ncontent-type:<ct>\\nhost:<host>\\n\\n
content-type;host\\n<sha256(body)>``; the string to sign adds the algorithm, the
``X-TC-Timestamp`` and the credential scope ``<date>/cvm/tc3_request``; the key is derived
from ``"TC3" + SecretKey`` through the date, the service and ``tc3_request``.

Official SDKs differ in what they sign as ``host:``: the Python SDK signs the Host
header as sent (``127.0.0.1:PORT`` against a local endpoint), Tencent's Node.js SDK signs
the host name without the port (``Sign.sign3`` in ``tencentcloud-sdk-nodejs-common`` writes
``host:${urlObj.hostname}``). Both are accepted (:func:`host_variants`), so either official
client can talk to the emulator.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cvmkeeper.emulator.errors import ApiError
from cvmkeeper.emulator.fleet import Credentials

ALGORITHM = "TC3-HMAC-SHA256"
MAX_SKEW_SECONDS = 300
_AUTHORIZATION = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/\s]+)/(?P<date>\d{4}-\d{2}-\d{2})"
    r"/(?P<service>[a-z0-9]+)/tc3_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+),"
    r" ?Signature=(?P<sig>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an HTTP request a TC3 signature covers (header names lower-case)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


def signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    """Return the hex TC3 signature of ``string_to_sign`` for one date and service."""

    def _hmac(key: bytes, message: str) -> bytes:
        return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()

    signing_key = _hmac(
        _hmac(_hmac(("TC3" + secret_key).encode("utf-8"), date), service), "tc3_request"
    )
    return hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def string_to_sign(request: SignedRequest, signed_headers: str, timestamp: str, scope: str) -> str:
    """Build the TC3 string to sign for ``request`` (canonical request hashed inside)."""
    names = signed_headers.split(";")
    canonical_headers = "".join(
        f"{name}:{request.headers.get(name, '').strip()}\n" for name in names
    )
    payload = request.body
    if request.headers.get("x-tc-content-sha256") == "UNSIGNED-PAYLOAD":
        payload = b"UNSIGNED-PAYLOAD"
    canonical = "\n".join(
        [
            request.method,
            request.path,
            request.query,
            canonical_headers,
            signed_headers,
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def host_variants(request: SignedRequest) -> list[SignedRequest]:
    """``request`` as sent, then (when its Host header has a port) with the port left out.

    Why: the Node.js SDK signs ``host:127.0.0.1`` while it sends ``Host: 127.0.0.1:PORT``.
    Only the port is dropped: any other change to the host still fails the signature.
    """
    host = request.headers.get("host", "").strip()
    name, sep, port = host.rpartition(":")
    if not sep or not port.isdigit() or not name or name.endswith(":"):
        return [request]  # no port (or a bare IPv6 address): one reading only
    without_port = {**request.headers, "host": name}
    return [request, replace(request, headers=without_port)]


def signature_matches(
    request: SignedRequest, secret_key: str, signed: str, timestamp: str, *, service: str
) -> bool:
    """True when the request's signature is right for the Host header with or without port."""
    given = _AUTHORIZATION.match(request.headers.get("authorization", ""))
    if given is None:
        return False
    date = datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    return any(
        hmac.compare_digest(
            signature(secret_key, date, service, string_to_sign(variant, signed, timestamp, scope)),
            given["sig"],
        )
        for variant in host_variants(request)
    )


def verify(
    request: SignedRequest, credentials: Credentials, now: datetime, service: str = "cvm"
) -> None:
    """Check the request's signature, its age and its token; raise ``ApiError`` if bad.

    Error codes: ``AuthFailure.InvalidAuthorization`` (malformed header),
    ``MissingParameter`` (no timestamp), ``AuthFailure.SignatureExpire`` (more than 5
    minutes of skew), ``AuthFailure.SecretIdNotFound``, ``AuthFailure.SignatureFailure``,
    ``AuthFailure.TokenFailure`` (a token is configured and the request lacks it or sends
    another). Without a configured token any ``X-TC-Token`` is accepted.
    """
    header = request.headers.get("authorization", "")
    match = _AUTHORIZATION.match(header)
    if match is None:
        raise ApiError(
            "AuthFailure.InvalidAuthorization",
            "The Authorization header is missing or not TC3-HMAC-SHA256.",
        )
    raw_timestamp = request.headers.get("x-tc-timestamp", "")
    if not raw_timestamp:
        raise ApiError("MissingParameter", "The request is missing the X-TC-Timestamp header.")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise ApiError("InvalidParameter", "X-TC-Timestamp must be a Unix time.") from None
    if abs(now.timestamp() - timestamp) > MAX_SKEW_SECONDS:
        raise ApiError(
            "AuthFailure.SignatureExpire",
            "The signature expired: X-TC-Timestamp is more than 5 minutes off.",
        )
    if match["id"] != credentials.secret_id:
        raise ApiError("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
    signed = match["signed"]
    if "content-type" not in signed.split(";") or "host" not in signed.split(";"):
        raise ApiError(
            "AuthFailure.InvalidAuthorization", "SignedHeaders must include content-type and host."
        )
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    if match["date"] != date or match["service"] != service:
        raise ApiError(
            "AuthFailure.SignatureFailure",
            "The credential scope does not match the timestamp or service.",
        )
    if not signature_matches(
        request, credentials.secret_key, signed, raw_timestamp, service=service
    ):
        raise ApiError(
            "AuthFailure.SignatureFailure", "The provided credentials could not be validated."
        )
    token = request.headers.get("x-tc-token")
    if credentials.token is not None and not hmac.compare_digest(token or "", credentials.token):
        raise ApiError("AuthFailure.TokenFailure", "The X-TC-Token is not valid.")
