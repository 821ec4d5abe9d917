"""Sentry plus the ``notify:`` channels, behind the one ``Alerter`` interface.

``with_notifications(alerter, config.notify)`` returns ``alerter`` itself when no channel
is configured, else a ``FanOutAlerter`` that gives every event to Sentry's alerter first
and then to each channel (webhook, Healthchecks, Apprise). Each call to one channel is
guarded, so a broken channel never stops the others or the run.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

from cvmkeeper.alerting.alerter import Alerter
from cvmkeeper.alerting.apprise_channel import AppriseAlerter, AppriseMissing
from cvmkeeper.alerting.delivery import DeliveryObserver
from cvmkeeper.alerting.events import Failure, MonitorConfig
from cvmkeeper.alerting.healthchecks import HealthchecksAlerter
from cvmkeeper.alerting.sentry import AlertingConfigError, Revealable
from cvmkeeper.alerting.webhook import WebhookAlerter
from cvmkeeper.logs import register_secret


class WebhookOptions(Protocol):
    """``notify.webhook`` as this module reads it (the config's ``WebhookSettings``)."""

    @property
    def url(self) -> Revealable:
        """Where to POST (a secret: webhook URLs often carry a token)."""
        ...

    @property
    def secret_file(self) -> Path | None:
        """The file holding the HMAC-SHA256 key, if any."""
        ...

    @property
    def timeout(self) -> timedelta:
        """How long one POST may take."""
        ...


class NotifyOptions(Protocol):
    """``notify:`` as this module reads it (the config's ``NotifySettings``): alerting
    sees the settings through this shape, never the config package itself."""

    @property
    def webhook(self) -> WebhookOptions | None:
        """The webhook channel, if configured."""
        ...

    @property
    def healthchecks(self) -> Sequence[tuple[str, Revealable]]:
        """(policy name, ping URL) pairs."""
        ...

    @property
    def apprise(self) -> Sequence[Revealable]:
        """Apprise URLs given in the config."""
        ...

    @property
    def apprise_urls_file(self) -> Path | None:
        """A file of Apprise URLs, one a line, if any."""
        ...

    @property
    def any(self) -> bool:
        """True when at least one channel is configured."""
        ...


log = logging.getLogger(__name__)
T = TypeVar("T")


class FanOutAlerter:
    """Gives every event to each of ``alerters``; the first one's check-in id is returned
    (so a Sentry check-in id stays what callers see) and each gets its own id back."""

    def __init__(self, alerters: Sequence[Alerter]) -> None:
        """``alerters``: Sentry's (or the null one) first, then the channels."""
        self.alerters = tuple(alerters)
        self._lock = threading.Lock()
        self._ids: dict[str, list[str | None]] = {}

    def error(self, failure: Failure) -> None:
        """Report ``failure`` to every alerter."""
        for alerter in self.alerters:
            _guard(partial(alerter.error, failure), "error")

    def warning(self, failure: Failure) -> None:
        """Report ``failure`` to every alerter."""
        for alerter in self.alerters:
            _guard(partial(alerter.warning, failure), "warning")

    def checkin_start(self, slug: str, config: MonitorConfig) -> str:
        """Start the check-in with every alerter; return the first one's id."""
        ids: list[str | None] = [
            _guard(partial(alerter.checkin_start, slug, config), "check-in")
            for alerter in self.alerters
        ]
        key = ids[0] or next((i for i in ids if i), "") or uuid.uuid4().hex
        with self._lock:
            self._ids[key] = ids
        return key

    def checkin_finish(self, slug: str, check_in_id: str, ok: bool, config: MonitorConfig) -> None:
        """End the check-in with every alerter, each with the id it gave."""
        with self._lock:
            ids = self._ids.pop(check_in_id, [check_in_id] * len(self.alerters))
        for alerter, own in zip(self.alerters, ids, strict=True):
            if own is not None:
                _guard(partial(alerter.checkin_finish, slug, own, ok, config), "check-in")

    def flush(self, timeout: float) -> None:
        """Flush every alerter (each gets up to ``timeout``)."""
        for alerter in self.alerters:
            _guard(partial(alerter.flush, timeout), "flush")

    def close(self, timeout: float) -> None:
        """Close every alerter."""
        for alerter in self.alerters:
            _guard(partial(alerter.close, timeout), "close")


def _guard(call: Callable[[], T], what: str) -> T | None:
    """``call()``, or ``None`` with a log line when it raises (a channel must not break
    the run or the other channels)."""
    try:
        return call()
    except Exception as error:
        log.warning("a notification channel failed on %s: %s", what, error)
        return None


def _read_secret(path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise AlertingConfigError(f"{what} {path}: cannot read: {error.strerror}") from None
    if not value:
        raise AlertingConfigError(f"{what} {path}: is empty")
    register_secret(value)
    return value


def channel_alerters(
    settings: NotifyOptions, host: str | None = None, observer: DeliveryObserver | None = None
) -> list[Alerter]:
    """The alerters of the configured channels, each telling ``observer`` how its
    deliveries end. Raises ``AlertingConfigError`` for an unreadable secret file, or
    Apprise configured but not installed."""
    host = host or socket.gethostname()
    channels: list[Alerter] = []
    if settings.webhook is not None:
        hook = settings.webhook
        secret = None
        if hook.secret_file is not None:
            secret = _read_secret(hook.secret_file, "notify.webhook.secret_file").encode()
        channels.append(
            WebhookAlerter(
                hook.url.reveal(),
                secret,
                timeout=hook.timeout.total_seconds(),
                host=host,
                observer=observer,
            )
        )
    if settings.healthchecks:
        channels.append(
            HealthchecksAlerter(
                [(policy, url.reveal()) for policy, url in settings.healthchecks],
                observer=observer,
            )
        )
    apprise_urls = [url.reveal() for url in settings.apprise]
    if settings.apprise_urls_file is not None:
        text = _read_secret(settings.apprise_urls_file, "notify.apprise_urls_file")
        apprise_urls += [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    if apprise_urls:
        try:
            channels.append(AppriseAlerter(apprise_urls, host=host, observer=observer))
        except (AppriseMissing, ValueError) as error:
            raise AlertingConfigError(str(error)) from None
    return channels


def with_notifications(
    alerter: Alerter,
    settings: NotifyOptions,
    *,
    enabled: bool = True,
    observer: DeliveryObserver | None = None,
) -> Alerter:
    """``alerter`` plus the ``notify:`` channels (``alerter`` itself when there are none,
    or when ``enabled`` is False, as with ``--no-alerts``); ``observer`` (the daemon's)
    hears how each delivery ended (``alerting.delivery``)."""
    if not enabled or not settings.any:
        return alerter
    channels = channel_alerters(settings, observer=observer)
    log.info("notifications: %s", ", ".join(type(c).__name__ for c in channels))
    return FanOutAlerter([alerter, *channels])
