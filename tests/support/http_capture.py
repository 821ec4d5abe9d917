"""A local HTTP capture server for tests of notification channels: real HTTP on 127.0.0.1.

It records every request (method, path with query, headers, body) and answers each with
the next status of ``statuses`` (then 200), so a test can make the first delivery fail
with a 500 and see the retry. ``wait_for(n)`` waits, bounded, until n requests arrived.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Captured:
    """One request as received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


@dataclass
class HttpCapture:
    """What the server received, and the statuses it still has to answer with."""

    url: str
    statuses: list[int] = field(default_factory=list)
    requests: list[Captured] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Captured]:
        """The requests, once at least ``count`` arrived (or ``timeout`` passed)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        with self.lock:
            return list(self.requests)


@contextmanager
def http_capture(statuses: list[int] | None = None) -> Iterator[HttpCapture]:
    """Serve on 127.0.0.1 (a free port) until the block ends."""
    capture = HttpCapture(url="", statuses=list(statuses or []))

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with capture.lock:
                capture.requests.append(
                    Captured(self.command, self.path, dict(self.headers.items()), body)
                )
                status = capture.statuses.pop(0) if capture.statuses else 200
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_POST = do_GET = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    capture.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield capture
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
