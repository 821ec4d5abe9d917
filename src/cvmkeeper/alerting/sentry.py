"""The ``Alerter`` that reports to Sentry through the real sentry-sdk 2.x.

It owns the sentry-sdk global client for the process: ``SentryAlerter`` initialises it,
``close`` shuts it down. One path per alert: events come only from explicit ``error`` /
``warning`` calls. The logging integration keeps log lines as breadcrumbs but never turns
them into events, so a job exception that APScheduler logs through
``apscheduler.executors.default`` (or anything else logged at ERROR) is not reported a
second time. Every event, check-in, transaction and breadcrumb is scrubbed with the
process's one secret registry (``cvmkeeper.logs.register_secret``) before it leaves.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, cast

import sentry_sdk
from sentry_sdk.crons import capture_checkin
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.utils import BadDsn, Dsn

from cvmkeeper import __version__
from cvmkeeper.alerting.alerter import Alerter, CheckInStatus, NullAlerter
from cvmkeeper.alerting.events import (
    Failure,
    Level,
    MonitorConfig,
    failure_fingerprint,
    failure_tags,
)
from cvmkeeper.alerting.scrub import register_environment_secrets, scrub
from cvmkeeper.files import warn_if_shared
from cvmkeeper.logs import register_secret

log = logging.getLogger(__name__)

#: The systemd credential name (``LoadCredential=sentry_dsn:/etc/cvmkeeper/sentry_dsn``).
CREDENTIAL_NAME = "sentry_dsn"


class AlertingConfigError(ValueError):
    """The alerting settings cannot be used (the message never contains the DSN)."""


class Revealable(Protocol):
    """A secret holder (``cvmkeeper.config.model.Secret``) that gives its value on request."""

    def reveal(self) -> str:
        """The secret value itself."""
        ...


class SentryOptions(Protocol):
    """The settings ``build_alerter`` reads; the config's ``SentrySettings`` provides them.

    The DSN is looked for, in order: ``dsn``; the file ``dsn_file``; the ``SENTRY_DSN``
    environment variable; the file ``$CREDENTIALS_DIRECTORY/sentry_dsn`` (systemd
    ``LoadCredential``).
    """

    @property
    def dsn(self) -> Revealable | str | None:
        """The DSN given in the config, if any."""
        ...

    @property
    def dsn_file(self) -> Path | None:
        """A file holding the DSN, if any."""
        ...

    @property
    def environment(self) -> str:
        """Sentry's ``environment`` (``production``, ``staging`` ...)."""
        ...

    @property
    def server_name(self) -> str | None:
        """Sentry's ``server_name``; ``None`` lets sentry-sdk use the host name."""
        ...


def resolve_dsn(settings: SentryOptions, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The DSN to use and where it came from, or ``None`` when there is none.

    Raises ``AlertingConfigError`` when a configured ``dsn_file`` cannot be read or the DSN
    found is malformed; the message names the source, never the DSN.
    """
    found: tuple[str, str] | None = None
    configured = (
        settings.dsn
        if isinstance(settings.dsn, str) or settings.dsn is None
        else (settings.dsn.reveal())
    )
    if configured:
        found = (configured.strip(), "the config key 'sentry.dsn'")
    elif settings.dsn_file is not None:
        try:
            found = (settings.dsn_file.read_text().strip(), f"the file {settings.dsn_file}")
            register_secret(found[0])  # before anything is logged about the file
            warn_if_shared(settings.dsn_file, "Sentry DSN")
        except OSError as exc:
            raise AlertingConfigError(
                f"cannot read the Sentry DSN file {settings.dsn_file}: {exc.strerror}"
            ) from None
    elif environ.get("SENTRY_DSN", "").strip():
        found = (environ["SENTRY_DSN"].strip(), "the environment variable SENTRY_DSN")
    elif environ.get("CREDENTIALS_DIRECTORY"):
        credential = Path(environ["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
        if credential.is_file():
            found = (credential.read_text().strip(), f"the credential file {credential}")
    if found is None or not found[0]:
        return None
    try:
        Dsn(found[0])
    except BadDsn:
        raise AlertingConfigError(f"the Sentry DSN from {found[1]} is not a valid DSN") from None
    return found


def build_alerter(
    settings: SentryOptions,
    environ: Mapping[str, str] | None = None,
    *,
    enabled: bool = True,
) -> Alerter:
    """The alerter for ``settings``: a ``SentryAlerter`` when a DSN is found, else a
    ``NullAlerter``, saying so in one INFO log line either way. ``enabled=False``
    (``--no-alerts``) always gives a ``NullAlerter``.

    ``environ`` defaults to ``os.environ``; the values of its secret-named variables
    (``TENCENTCLOUD_SECRET_KEY``, ``SENTRY_DSN``, ...) are registered as secrets.
    """
    environ = os.environ if environ is None else environ
    if not enabled:
        log.info("Sentry alerting is off (--no-alerts)")
        return NullAlerter()
    found = resolve_dsn(settings, environ)
    if found is None:
        log.info(
            "Sentry alerting is off: no DSN in the config, SENTRY_DSN or $CREDENTIALS_DIRECTORY/%s",
            CREDENTIAL_NAME,
        )
        return NullAlerter()
    dsn, source = found
    register_environment_secrets(environ)
    alerter = SentryAlerter(dsn, environment=settings.environment, server_name=settings.server_name)
    parsed = Dsn(dsn)
    log.info(
        "Sentry alerting is on: project %s at %s, environment %s (DSN from %s)",
        parsed.project_id,
        parsed.host,
        settings.environment,
        source,
    )
    return alerter


class SentryAlerter:
    """Reports failures as Sentry events and runs as Sentry Crons check-ins.

    Creating one initialises the process-wide sentry-sdk client; only one should be alive
    at a time (``close`` it before making another, e.g. on a config reload).
    """

    def __init__(
        self,
        dsn: str,
        *,
        environment: str = "production",
        server_name: str | None = None,
        release: str | None = None,
    ) -> None:
        parsed = Dsn(dsn)
        register_secret(dsn)
        register_secret(parsed.public_key)
        register_secret(parsed.secret_key)
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        sentry_sdk.init(
            dsn=dsn,
            environment=environment,
            release=release or f"cvmkeeper@{__version__}",
            server_name=server_name,
            # send_default_pii stays unset: its default is off, and recent sentry-sdk 2.x
            # warns that passing it is deprecated (the tests check that PII is off).
            include_local_variables=False,
            # Log lines become breadcrumbs (context for an event), never events of their
            # own: every alert comes from an explicit call, so nothing is reported twice.
            integrations=[
                LoggingIntegration(level=logging.INFO, event_level=None, sentry_logs_level=None)
            ],
            # No trace headers (sentry-trace, baggage with the DSN's public key) on any
            # outgoing request: the only HTTP this process makes besides Sentry's own is to
            # the Tencent API, which has no use for them (issue 19).
            trace_propagation_targets=[],
            before_send=self._before_send,
            before_send_transaction=self._before_send,
            before_breadcrumb=self._before_breadcrumb,
        )

    def error(self, failure: Failure) -> None:
        """Send ``failure`` as an error-level event with its tags and fingerprint."""
        self._capture(failure, "error")

    def warning(self, failure: Failure) -> None:
        """Send ``failure`` as a warning-level event with its tags and fingerprint."""
        self._capture(failure, "warning")

    def checkin_start(self, slug: str, config: MonitorConfig) -> str:
        """Send an ``in_progress`` check-in with the monitor config; return its id."""
        check_in_id = uuid.uuid4().hex
        with self._lock:
            self._started[check_in_id] = time.monotonic()
        self._checkin(slug, check_in_id, "in_progress", config, duration=None)
        return check_in_id

    def checkin_finish(self, slug: str, check_in_id: str, ok: bool, config: MonitorConfig) -> None:
        """Send the ``ok`` or ``error`` check-in ending ``check_in_id``, with its duration."""
        with self._lock:
            started = self._started.pop(check_in_id, None)
        duration = None if started is None else time.monotonic() - started
        self._checkin(slug, check_in_id, "ok" if ok else "error", config, duration=duration)

    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for queued events to be sent."""
        sentry_sdk.flush(timeout=timeout)

    def close(self, timeout: float) -> None:
        """Send what is queued (up to ``timeout`` seconds) and shut the sentry-sdk client down.

        The process is left with sentry-sdk's non-recording client, as before ``init``.
        """
        sentry_sdk.get_client().close(timeout=timeout)
        sentry_sdk.get_global_scope().set_client(None)

    def _capture(self, failure: Failure, level: Level) -> None:
        """Send one event for ``failure`` at ``level`` in a scope of its own."""
        try:
            with sentry_sdk.new_scope() as scope:
                scope.set_level(level)
                scope.fingerprint = failure_fingerprint(failure)
                for key, value in failure_tags(failure).items():
                    scope.set_tag(key, value)
                scope.set_context("failure", {"message": failure.message})
                for key, value in failure.extra.items():
                    scope.set_extra(key, value)
                if failure.exception is not None:
                    sentry_sdk.capture_exception(failure.exception)
                else:
                    sentry_sdk.capture_message(failure.message, level=level)
        except Exception as exc:  # alerting must never break a run
            log.warning("could not send an alert to Sentry: %s", type(exc).__name__)

    def _checkin(
        self,
        slug: str,
        check_in_id: str,
        status: CheckInStatus,
        config: MonitorConfig,
        duration: float | None,
    ) -> None:
        """Send one check-in to the monitor ``slug``."""
        try:
            capture_checkin(
                monitor_slug=slug,
                check_in_id=check_in_id,
                status=status,
                duration=duration,
                monitor_config=cast(Any, config.to_sentry()),
            )
        except Exception as exc:  # alerting must never break a run
            log.warning("could not send a check-in to Sentry: %s", type(exc).__name__)

    def _before_send(self, event: Any, hint: Any) -> Any:
        """Scrub an event, check-in or transaction just before it leaves the process."""
        return scrub(event)

    def _before_breadcrumb(self, crumb: Any, hint: Any) -> Any:
        """Scrub a breadcrumb as it is recorded."""
        return scrub(crumb)
