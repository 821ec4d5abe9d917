"""Healthchecks-style ping URLs per policy: ``/start``, success, ``/fail``.

As borgmatic's healthchecks hook does: each policy may have a ping URL (Healthchecks.io,
a self-hosted Healthchecks, or any server with the same protocol). A scheduled run pings
``URL/start`` when it begins, ``URL`` when it ends well and ``URL/fail`` when it does not;
Healthchecks alerts when the success ping is late, so a daemon that stopped is noticed
without Sentry. Each ping carries ``?rid=<uuid>`` so the server pairs a start with its end
and measures the run. Errors and warnings themselves are not pinged: the run's end is.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from cvmkeeper.alerting.delivery import Deliverer, DeliveryObserver, http_post, register_url_secret
from cvmkeeper.alerting.events import Failure, MonitorConfig, monitor_slug


def ping_url(base: str, suffix: str, run_id: str) -> str:
    """``base`` + ``/start`` or ``/fail`` (or nothing) + ``?rid=run_id``."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/") + suffix
    query = f"{parts.query}&rid={run_id}" if parts.query else f"rid={run_id}"
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


class HealthchecksAlerter:
    """The ``Alerter`` that pings each policy's URL at the start and end of its runs."""

    def __init__(
        self,
        urls: Iterable[tuple[str, str]],
        *,
        timeout: float = 10.0,
        observer: DeliveryObserver | None = None,
    ) -> None:
        """``urls``: (policy name, ping URL) pairs. The URLs are registered as secrets;
        ``observer`` hears each ping's outcome as channel ``healthchecks``."""
        self._by_slug: dict[str, str] = {}
        for policy, url in urls:
            register_url_secret(url)
            self._by_slug[monitor_slug(policy)] = url
        self._timeout = timeout
        self._delivery = Deliverer("healthchecks", observer=observer)

    def _ping(self, slug: str, suffix: str, run_id: str, body: str) -> None:
        base = self._by_slug.get(slug)
        if base is None:
            return
        url = ping_url(base, suffix, run_id)
        data = body.encode()
        self._delivery.submit(
            f"ping {suffix or '/'} of {slug}",
            lambda: http_post(url, data, {"Content-Type": "text/plain"}, self._timeout),
        )

    def error(self, failure: Failure) -> None:
        """Not pinged: the run's end pings ``/fail``."""

    def warning(self, failure: Failure) -> None:
        """Not pinged."""

    def checkin_start(self, slug: str, config: MonitorConfig) -> str:
        """Ping ``URL/start``; the id is a UUID, Healthchecks' ``rid``."""
        run_id = str(uuid.uuid4())
        self._ping(slug, "/start", run_id, f"cvmkeeper: {slug} started")
        return run_id

    def checkin_finish(self, slug: str, check_in_id: str, ok: bool, config: MonitorConfig) -> None:
        """Ping ``URL`` (success) or ``URL/fail``."""
        self._ping(
            slug,
            "" if ok else "/fail",
            check_in_id,
            f"cvmkeeper: {slug} {'finished OK' if ok else 'FAILED'}",
        )

    def flush(self, timeout: float) -> None:
        """Wait until the pings are delivered (or given up), up to ``timeout``."""
        self._delivery.flush(timeout)

    def close(self, timeout: float) -> None:
        """Deliver what is pending and stop."""
        self._delivery.close(timeout)
