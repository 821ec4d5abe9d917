"""A real local Sentry ingest endpoint for tests: envelopes over HTTP on 127.0.0.1.

The real sentry-sdk posts envelopes to ``/api/<project>/envelope/`` (gzip-compressed,
or brotli when the ``brotli`` module is installed, or plain). This server accepts them,
keeps every raw request body byte for byte, and parses the envelope format: a JSON header
line, then items, each a JSON item header line and a payload that is ``length`` bytes
long when the header says so, else runs to the end of the line.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ENVELOPE_PATH = re.compile(r"^/api/(?P<project>[^/]+)/envelope/?$")


@dataclass(frozen=True)
class EnvelopeItem:
    """One item of an envelope: its header, raw payload, and the payload as JSON if it is."""

    headers: dict[str, Any]
    payload: bytes

    @property
    def type(self) -> str:
        """The item type (``event``, ``check_in``, ``transaction``, ``session``, ...)."""
        return str(self.headers.get("type", ""))

    @property
    def json(self) -> Any:
        """The payload decoded as JSON."""
        return json.loads(self.payload)


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope."""

    headers: dict[str, Any]
    items: list[EnvelopeItem]


@dataclass(frozen=True)
class CapturedRequest:
    """One POST as received: path, headers, the body as sent and as decompressed."""

    project: str
    headers: dict[str, str]
    raw_body: bytes
    body: bytes
    envelope: Envelope


def parse_envelope(data: bytes) -> Envelope:
    """Parse the Sentry envelope format; raises ``ValueError`` on a malformed envelope."""
    header_line, sep, rest = data.partition(b"\n")
    headers = json.loads(header_line)
    items: list[EnvelopeItem] = []
    position = 0 if sep else len(rest)
    while position < len(rest):
        newline = rest.find(b"\n", position)
        line_end = len(rest) if newline < 0 else newline
        item_header_line = rest[position:line_end]
        position = line_end + 1
        if not item_header_line.strip():
            continue
        item_headers = json.loads(item_header_line)
        length = item_headers.get("length")
        if length is not None:
            payload = rest[position : position + int(length)]
            if len(payload) != int(length):
                raise ValueError(f"item payload is {len(payload)} bytes, header says {length}")
            position += int(length)
            if rest[position : position + 1] == b"\n":
                position += 1
        else:
            newline = rest.find(b"\n", position)
            payload_end = len(rest) if newline < 0 else newline
            payload = rest[position:payload_end]
            position = payload_end + 1
        items.append(EnvelopeItem(item_headers, payload))
    return Envelope(headers, items)


def _decompress(body: bytes, encoding: str) -> bytes:
    """``body`` decoded from its ``Content-Encoding``."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]  # only if the SDK found it too

        return bytes(brotli.decompress(body))
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


@dataclass
class SentryCapture:
    """What the capture server received, and the DSN that points at it."""

    dsn: str
    requests: list[CapturedRequest] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def items(self, item_type: str | None = None) -> list[EnvelopeItem]:
        """Every envelope item received so far, optionally only those of ``item_type``."""
        with self.lock:
            requests = list(self.requests)
        return [
            item
            for request in requests
            for item in request.envelope.items
            if item_type is None or item.type == item_type
        ]

    def events(self) -> list[dict[str, Any]]:
        """The payloads of the ``event`` items (errors, warnings, messages)."""
        return [item.json for item in self.items("event")]

    def checkins(self) -> list[dict[str, Any]]:
        """The payloads of the ``check_in`` items."""
        return [item.json for item in self.items("check_in")]

    def all_bytes(self) -> bytes:
        """Every byte received, headers included, both as sent and decompressed."""
        with self.lock:
            requests = list(self.requests)
        parts: list[bytes] = []
        for request in requests:
            parts.extend(f"{k}: {v}".encode() for k, v in request.headers.items())
            parts.extend((request.raw_body, request.body))
        return b"\n".join(parts)

    def wait_for(self, predicate: Callable[[SentryCapture], bool], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` until it holds or ``timeout`` seconds pass; return the outcome."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def _handler_for(capture: SentryCapture) -> type[BaseHTTPRequestHandler]:
    """A request handler class that stores into ``capture``."""

    class EnvelopeHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            match = _ENVELOPE_PATH.match(self.path.split("?", 1)[0])
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            if match is None:
                self._reject(404, f"not an envelope endpoint: {self.path}")
                return
            try:
                body = _decompress(raw, self.headers.get("Content-Encoding", ""))
                envelope = parse_envelope(body)
            except (ValueError, OSError, zlib.error, ImportError) as exc:
                self._reject(400, f"bad envelope: {exc}")
                return
            request = CapturedRequest(
                project=match["project"],
                headers={k: v for k, v in self.headers.items()},
                raw_body=raw,
                body=body,
                envelope=envelope,
            )
            with capture.lock:  # stored before the reply, so a flushed SDK finds it here
                capture.requests.append(request)
            self._reply(200, b"{}")

        def _reject(self, status: int, reason: str) -> None:
            with capture.lock:
                capture.rejected.append(reason)
            self._reply(status, json.dumps({"detail": reason}).encode())

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet: pytest shows failures, not access logs."""

    return EnvelopeHandler


@contextmanager
def sentry_capture_server(project: str = "1", key: str = "key") -> Iterator[SentryCapture]:
    """Serve a capture endpoint on 127.0.0.1 (a free port) for the duration of the block."""
    capture = SentryCapture(dsn="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(capture))
    server.daemon_threads = True
    port = server.server_address[1]
    capture.dsn = f"http://{key}@127.0.0.1:{port}/{project}"
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="sentry-capture",
        daemon=True,
    )
    thread.start()
    try:
        yield capture
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
