"""Apprise: one URL per service for 100+ services (WeCom, DingTalk, Feishu, Slack, email,
ntfy, ...), the library borgmatic adopted. An optional extra: ``pip install
'cvmkeeper[apprise]'``.

Errors and warnings are sent as Apprise notifications of type ``failure`` and ``warning``;
a run that ends with an error check-in as ``failure`` too. Run starts and successful ends
are not sent (chat channels would drown in them; use Healthchecks for "still running").
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from cvmkeeper.alerting.delivery import Deliverer, DeliveryObserver, register_url_secret
from cvmkeeper.alerting.events import Failure, MonitorConfig
from cvmkeeper.alerting.webhook import failure_document

INSTALL_HINT = "install the extra: pip install 'cvmkeeper[apprise]'"


class AppriseMissing(RuntimeError):
    """Apprise URLs are configured but the ``apprise`` package is not installed."""


def _apprise() -> Any:
    try:
        import apprise  # noqa: PLC0415 - optional, imported only when configured
    except ImportError:
        raise AppriseMissing(
            f"notify.apprise is set but Apprise is not installed: {INSTALL_HINT}"
        ) from None
    return apprise


class AppriseAlerter:
    """The ``Alerter`` that sends errors, warnings and failed runs through Apprise."""

    def __init__(
        self, urls: Iterable[str], *, host: str = "", observer: DeliveryObserver | None = None
    ) -> None:
        """``urls``: Apprise URLs, registered as secrets; ``observer`` hears each
        notification's outcome as channel ``apprise``. Raises ``AppriseMissing``."""
        module = _apprise()
        self._apprise = module
        # One Apprise object per URL: a retry goes only to the services that failed. With
        # one object for all, a dead service made every retry notify the working ones
        # again (each alert three times in the team's chat).
        self._clients: list[Any] = []
        for url in urls:
            register_url_secret(url)
            client = module.Apprise()
            if not client.add(url):
                raise ValueError("an Apprise URL in notify.apprise is not understood by Apprise")
            self._clients.append(client)
        self._host = host
        self._delivery = Deliverer("apprise", observer=observer)

    def _notify(self, title: str, body: str, kind: str) -> None:
        notify_type = {
            "failure": self._apprise.NotifyType.FAILURE,
            "warning": self._apprise.NotifyType.WARNING,
        }[kind]

        pending = list(self._clients)  # the services this notification has not reached

        def job() -> None:
            pending[:] = [
                client
                for client in pending
                if not client.notify(title=title, body=body, notify_type=notify_type)
            ]
            if pending:
                raise OSError(
                    f"Apprise could not deliver to {len(pending)} of {len(self._clients)} services"
                )

        self._delivery.submit(f"{kind} notification", job)

    def _failure(self, failure: Failure, kind: str) -> None:
        document = failure_document(failure, self._host)
        self._notify(document["summary"], document["message"], kind)

    def error(self, failure: Failure) -> None:
        """Send a ``failure`` notification."""
        self._failure(failure, "failure")

    def warning(self, failure: Failure) -> None:
        """Send a ``warning`` notification."""
        self._failure(failure, "warning")

    def checkin_start(self, slug: str, config: MonitorConfig) -> str:
        """Nothing is sent when a run starts."""
        return uuid.uuid4().hex

    def checkin_finish(self, slug: str, check_in_id: str, ok: bool, config: MonitorConfig) -> None:
        """A failed run is sent as a ``failure``; a good one is not sent."""
        if not ok:
            self._notify(
                f"cvmkeeper run of {slug} FAILED",
                f"The scheduled run of policy {slug} ended with errors.",
                "failure",
            )

    def flush(self, timeout: float) -> None:
        """Wait until the notifications are delivered (or given up), up to ``timeout``."""
        self._delivery.flush(timeout)

    def close(self, timeout: float) -> None:
        """Deliver what is pending and stop."""
        self._delivery.close(timeout)
