"""The HTTP front of the emulator: Tencent Cloud API 3.0 on the wire, nothing more.

``POST /`` with the ``X-TC-*`` headers is verified (TC3 signature, skew, version) and
handed to :meth:`EmulatorCore.call`. The action names its service: CVM (``2017-03-12``),
STS ``GetCallerIdentity`` and the Tag API's ``TagResources`` / ``UnTagResources`` (both
``2018-08-13``); the signature is checked for that service, as Tencent's endpoints do.
Every API answer, error or not, is HTTP 200 with exactly ``Content-Type:
application/json`` and a ``RequestId`` (the SDK ignores errors
under any other content type and turns any non-200 into ``ServerNetworkError``). An
injected :class:`ConnectionFault` closes the socket without a byte of response.

Control endpoints for tests and tools: ``GET /_emulator/state``,
``POST /_emulator/faults`` (body: a ``faults:`` mapping), ``POST /_emulator/reset`` and
``POST /_emulator/disks`` (attach or detach a data disk at runtime).
They answer only a request that carries the per-run token (header ``X-Emulator-Token``)
and names a loopback host (``Host: 127.0.0.1:PORT`` or ``localhost``): any local process
or web page could otherwise rewrite the faults or read the state, a browser page through
DNS rebinding too. A refused request gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import secrets
import socket
import struct
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cvmkeeper.emulator.clock import Clock, SystemClock
from cvmkeeper.emulator.core import EmulatorCore
from cvmkeeper.emulator.errors import ApiError, ConnectionFault
from cvmkeeper.emulator.fleet import FleetError
from cvmkeeper.emulator.tc3 import SignedRequest, verify

API_VERSION = "2017-03-12"
#: the STS action the emulator also serves (on the same endpoint), with its service/version
STS_ACTIONS = frozenset({"GetCallerIdentity"})
STS_VERSION = "2018-08-13"
#: the Tag API actions the emulator also serves (service tag, version 2018-08-13)
TAG_ACTIONS = frozenset({"TagResources", "UnTagResources"})
TAG_VERSION = "2018-08-13"
#: the header that carries the control token
CONTROL_TOKEN_HEADER = "X-Emulator-Token"  # noqa: S105 - a name, not a secret
#: the environment variable ``cvmkeeper emulator`` takes its control token from
CONTROL_TOKEN_ENV = "CVMKEEPER_EMULATOR_TOKEN"  # noqa: S105 - a name, not a secret
MAX_BODY_BYTES = 4 * 1024 * 1024
log = logging.getLogger(__name__)


def _service_of(action: str) -> tuple[str, str]:
    """The (service, version) an action belongs to: its signature is checked for that
    service (the SDK signs the credential scope with it) and its version required."""
    if action in STS_ACTIONS:
        return "sts", STS_VERSION
    if action in TAG_ACTIONS:
        return "tag", TAG_VERSION
    return "cvm", API_VERSION


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server bound to one :class:`EmulatorCore`.

    ``signature_clock`` checks signature age against the wall clock even when the core
    runs on a manual clock (the SDK signs with the real time).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        core: EmulatorCore,
        signature_clock: Clock | None = None,
        control_token: str | None = None,
    ) -> None:
        """Bind to ``address`` (use 127.0.0.1) and serve ``core``; the control endpoints
        take ``control_token`` (default: a fresh random one for this run)."""
        self.core = core
        self.control_token = control_token or secrets.token_urlsafe(24)
        self.signature_clock: Clock = signature_clock or SystemClock()
        #: every request header name received on the API path (lowercase), so tests can
        #: check what clients send besides the protocol (trace propagation headers, ...)
        self.header_names: set[str] = set()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away before its answer (killed, timed out) is routine for an
        emulator that tests kill clients in; log it at debug. Anything else as usual."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            log.debug("client %s went away: %s", client_address, error)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: EmulatorHTTPServer
    server_version = "cvmkeeper-emulator"
    sys_version = ""
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # ------------------------------------------------------------------ routing

    def _control_refused(self) -> bool:
        """True (after a 403) unless the request names a loopback host and has the token."""
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1 : host.find("]")]
        try:
            loopback = name == "localhost" or ipaddress.ip_address(name).is_loopback
        except ValueError:
            loopback = False
        token = self.headers.get(CONTROL_TOKEN_HEADER) or ""
        if not loopback:
            self._send_json(403, {"error": "control endpoints answer loopback host names only"})
            return True
        if not hmac.compare_digest(token.encode(), self.server.control_token.encode()):
            self._send_json(
                403,
                {
                    "error": f"control endpoints need the {CONTROL_TOKEN_HEADER} "
                    "header with this run's token"
                },
            )
            return True
        return False

    def do_GET(self) -> None:
        if self.path == "/_emulator/state":
            if self._control_refused():
                return
            self._send_json(200, self.server.core.state())
        elif self.path.split("?")[0] == "/":
            self._send_api_error(
                str(uuid.uuid4()),
                ApiError("UnsupportedProtocol", "The emulator accepts POST with a JSON body only."),
            )
        else:
            self._send_json(404, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        if self.path == "/":
            self._api(body)
        elif self.path.startswith("/_emulator/") and self._control_refused():
            return
        elif self.path == "/_emulator/faults":
            try:
                mapping = json.loads(body or b"{}")
                if not isinstance(mapping, dict):
                    raise FleetError("faults: the body must be a JSON object")
                self.server.core.set_faults(mapping)
            except (ValueError, FleetError) as exc:
                self._send_json(400, {"error": str(exc)})
                return
            self._send_json(200, {"faults": self.server.core.state()["faults"]})
        elif self.path == "/_emulator/reset":
            self.server.core.reset()
            self._send_json(200, {"reset": True})
        elif self.path == "/_emulator/disks":
            self._change_disks(body)
        else:
            self._send_json(404, {"error": f"no such path {self.path}"})

    def _change_disks(self, body: bytes) -> None:
        """``{"instance_id", "attach": {"id", "type", "size"}}`` or ``{"instance_id",
        "detach": "disk-..."}``: a disk attached or detached between two slots."""
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict) or not isinstance(request.get("instance_id"), str):
                raise ValueError("the body must be a JSON object with instance_id")
            attach, detach = request.get("attach"), request.get("detach")
            if (attach is None) == (detach is None):
                raise ValueError("give exactly one of attach or detach")
            if attach is not None and not isinstance(attach, dict):
                raise ValueError("attach must be an object {id, type, size}")
            if detach is not None and not isinstance(detach, str):
                raise ValueError("detach must be a disk id")
            result = self.server.core.change_disks(
                request["instance_id"], attach=attach, detach=detach
            )
        except ValueError as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self._send_json(200, result)

    # ------------------------------------------------------------------ the API

    def _api(self, body: bytes) -> None:
        request_id = str(uuid.uuid4())
        core = self.server.core
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.header_names.update(headers)
        action = headers.get("x-tc-action", "")
        latency = core.fleet.latency_ms / 1000.0
        try:
            params = self._check_envelope(headers, body)
        except ApiError as error:
            core.record_rejected(action, error.code)
            self._pause(latency)
            self._send_api_error(request_id, error)
            return
        try:
            result = core.call(
                action, headers.get("x-tc-region") or None, params, request_id=request_id
            )
        except ApiError as error:
            self._pause(latency)
            self._send_api_error(request_id, error)
            return
        except ConnectionFault as fault:
            self._drop_connection(reset=not fault.committed)
            return
        self._pause(latency)
        self._send_json(200, {"Response": {**result, "RequestId": request_id}})

    def _check_envelope(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """Verify content type, signature and version; return the JSON parameters."""
        content_type = headers.get("content-type", "")
        if content_type.split(";")[0].strip() != "application/json":
            raise ApiError(
                "InvalidParameter", "Content-Type must be application/json for TC3 POST requests."
            )
        service, version = _service_of(headers.get("x-tc-action", ""))
        verify(
            SignedRequest(
                method=self.command, path=self.path, query="", headers=headers, body=body
            ),
            self.server.core.fleet.credentials,
            self.server.signature_clock.now(),
            service=service,
        )
        if headers.get("x-tc-version") != version:
            raise ApiError(
                "NoSuchVersion", f"The API version must be {version} for {service.upper()}."
            )
        if not headers.get("x-tc-action"):
            raise ApiError("MissingParameter", "The request is missing the X-TC-Action header.")
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            raise ApiError("InvalidParameter", "The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise ApiError("InvalidParameter", "The request body must be a JSON object.")
        return params

    # ------------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._send_json(413, {"error": "bad or too large Content-Length"})
            return None
        return self.rfile.read(length) if length else b""

    @staticmethod
    def _pause(seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def _send_api_error(self, request_id: str, error: ApiError) -> None:
        self._send_json(
            200,
            {
                "Response": {
                    "Error": {"Code": error.code, "Message": error.message},
                    "RequestId": request_id,
                }
            },
        )

    def _send_json(self, status: int, document: Any) -> None:
        payload = json.dumps(document).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _drop_connection(self, *, reset: bool) -> None:
        """Close the socket without answering; ``reset`` sends a TCP RST instead of FIN."""
        self.close_connection = True
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
