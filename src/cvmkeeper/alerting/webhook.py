"""A generic webhook: every alert and check-in as a signed JSON document.

For teams whose pager or chat is not Sentry: point ``notify.webhook.url`` at any HTTP
endpoint (an internal alert router, a serverless function, a chat bridge). Each event is
one ``POST`` with ``Content-Type: application/json`` and this body (schema version 1):

.. code-block:: json

    {"schema": "cvmkeeper.notification/1",
     "kind": "error" | "warning" | "check_in",
     "time": "2026-11-27T18:00:03Z",
     "host": "backup-1",
     "policy": "web-daily",
     "summary": "one line for a chat message",
     // error and warning:
     "action": "CreateImage", "message": "...", "region": "ap-guangzhou" | null,
     "instance": "ins-..." | null, "tencent_code": "..." | null,
     "request_id": "..." | null, "extra": {"slot": "...", ...},
     // check_in (a scheduled run starts or ends):
     "monitor": "web-daily", "check_in_id": "...", "status": "in_progress" | "ok" | "error"}

Signature: with ``notify.webhook.secret_file`` set, the header
``X-Cvmkeeper-Signature-256: sha256=<hex>`` carries HMAC-SHA256 of the exact body bytes
under the file's content (surrounding whitespace stripped), as GitHub signs its webhooks.
The receiver recomputes it and compares in constant time; ``time`` lets it refuse replays.
The header ``X-Cvmkeeper-Event`` repeats ``kind``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

from cvmkeeper.alerting.delivery import (
    Deliverer,
    DeliveryObserver,
    http_post,
    public_url,
    register_url_secret,
)
from cvmkeeper.alerting.events import Failure, MonitorConfig
from cvmkeeper.alerting.scrub import scrub

SCHEMA = "cvmkeeper.notification/1"
SIGNATURE_HEADER = "X-Cvmkeeper-Signature-256"
EVENT_HEADER = "X-Cvmkeeper-Event"


def sign(secret: bytes, body: bytes) -> str:
    """``sha256=<hex>``: the signature header value of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """True when ``header`` is the signature of ``body`` (what a receiver does)."""
    return hmac.compare_digest(sign(secret, body), header)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def failure_document(failure: Failure, host: str) -> dict[str, Any]:
    """The body of an ``error`` or ``warning`` event (secrets scrubbed)."""
    where = " ".join(x for x in (failure.region, failure.instance) if x)
    document: dict[str, Any] = scrub(
        {
            "schema": SCHEMA,
            "kind": failure.level,
            "time": _now(),
            "host": host,
            "policy": failure.policy,
            "summary": f"cvmkeeper {failure.level.upper()} {failure.policy}"
            f"{' ' + where if where else ''}: {failure.message}",
            "action": failure.action,
            "message": failure.message,
            "region": failure.region,
            "instance": failure.instance,
            "tencent_code": failure.tencent_code,
            "request_id": failure.request_id,
            "extra": dict(failure.extra),
        }
    )
    return document


def check_in_document(slug: str, check_in_id: str, status: str, host: str) -> dict[str, Any]:
    """The body of a ``check_in`` event."""
    words = {"in_progress": "started", "ok": "finished OK", "error": "FAILED"}
    return {
        "schema": SCHEMA,
        "kind": "check_in",
        "time": _now(),
        "host": host,
        "policy": slug,
        "summary": f"cvmkeeper run of {slug} {words.get(status, status)}",
        "monitor": slug,
        "check_in_id": check_in_id,
        "status": status,
    }


class WebhookAlerter:
    """The ``Alerter`` that POSTs each event to one URL, signed, in the background."""

    def __init__(
        self,
        url: str,
        secret: bytes | None = None,
        *,
        timeout: float = 10.0,
        host: str | None = None,
        observer: DeliveryObserver | None = None,
    ) -> None:
        """``url`` is registered as a secret; ``secret`` is the HMAC key (None: unsigned);
        ``observer`` hears each delivery's outcome as channel ``webhook``."""
        register_url_secret(url)
        self._url = url
        self._secret = secret
        self._timeout = timeout
        self._host = host or socket.gethostname()
        self._delivery = Deliverer(
            f"webhook {public_url(url)}", channel="webhook", observer=observer
        )

    def _send(self, document: dict[str, Any]) -> None:
        body = json.dumps(document, ensure_ascii=False, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", EVENT_HEADER: str(document["kind"])}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        self._delivery.submit(
            f"{document['kind']} event",
            lambda: http_post(self._url, body, headers, self._timeout),
        )

    def error(self, failure: Failure) -> None:
        """POST an ``error`` event."""
        self._send(failure_document(failure, self._host))

    def warning(self, failure: Failure) -> None:
        """POST a ``warning`` event."""
        self._send(failure_document(failure, self._host))

    def checkin_start(self, slug: str, config: MonitorConfig) -> str:
        """POST an ``in_progress`` check-in; a fresh id pairs it with its end."""
        check_in_id = uuid.uuid4().hex
        self._send(check_in_document(slug, check_in_id, "in_progress", self._host))
        return check_in_id

    def checkin_finish(self, slug: str, check_in_id: str, ok: bool, config: MonitorConfig) -> None:
        """POST the ``ok`` or ``error`` check-in that ends the run."""
        self._send(check_in_document(slug, check_in_id, "ok" if ok else "error", self._host))

    def flush(self, timeout: float) -> None:
        """Wait until what was sent is delivered (or given up), up to ``timeout``."""
        self._delivery.flush(timeout)

    def close(self, timeout: float) -> None:
        """Deliver what is pending and stop."""
        self._delivery.close(timeout)
