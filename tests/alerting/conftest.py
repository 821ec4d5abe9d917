"""Fixtures: a live capture server and a SentryAlerter pointed at it, isolated per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sentry_sdk

from cvmkeeper.alerting.sentry import SentryAlerter
from support.sentry_capture import SentryCapture, sentry_capture_server


def _reset_sentry() -> None:
    """Leave sentry-sdk's process-wide state as a fresh process has it."""
    sentry_sdk.get_client().close(timeout=2)
    sentry_sdk.get_global_scope().set_client(None)
    for scope in (
        sentry_sdk.get_global_scope(),
        sentry_sdk.get_isolation_scope(),
        sentry_sdk.get_current_scope(),
    ):
        scope.clear_breadcrumbs()


@pytest.fixture(autouse=True)
def isolated_sentry() -> Iterator[None]:
    """sentry-sdk is global state: start and end every test without a client or breadcrumbs."""
    _reset_sentry()
    yield
    _reset_sentry()


@pytest.fixture
def capture() -> Iterator[SentryCapture]:
    """A capture server on 127.0.0.1 (free port); ``capture.dsn`` points at it."""
    with sentry_capture_server() as server:
        yield server


@pytest.fixture
def alerter(capture: SentryCapture) -> Iterator[SentryAlerter]:
    """A real SentryAlerter sending to ``capture``; closed after the test."""
    sentry_alerter = SentryAlerter(capture.dsn, environment="test", server_name="backup-host-1")
    yield sentry_alerter
    sentry_alerter.close(timeout=5)
