"""A hostile HTTP proxy on 127.0.0.1: answers every API call with an error that echoes the
request's headers (session token, Authorization) and carries terminal escapes and newlines.

Misconfigured corporate proxies do echo request headers into error pages; this stands in
for one (and for an API answer with hostile text), so tests can check that nothing it says
reaches a terminal, a log line or JSON output unredacted or unescaped (issue 19).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: what the answers carry besides the echoed headers
HOSTILE = "\x1b[2J\x1b]0;pwned\x07 line one\r\nFORGED: backup ok \u202eevil\u200b"
HOSTILE_REQUEST_ID = "rid-1\n<6>cvmkeeper: all backups ok\x1b[0m"


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        echoed = "; ".join(f"{name}: {value}" for name, value in self.headers.items())
        body = json.dumps(
            {
                "Response": {
                    "Error": {
                        "Code": "AuthFailure.SignatureFailure",
                        "Message": f"proxy refused the request {HOSTILE}; headers were {echoed}",
                    },
                    "RequestId": HOSTILE_REQUEST_ID,
                }
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def echo_proxy() -> Iterator[str]:
    """Serve the echoing proxy; yields its ``127.0.0.1:PORT`` endpoint."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
