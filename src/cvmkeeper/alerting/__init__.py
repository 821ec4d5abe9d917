"""Alerts (Sentry events) and missed-run detection (Sentry Crons check-ins).

The executor and the daemon use only these names:

- ``build_alerter(SentrySettings(...))`` once at start: a ``SentryAlerter`` when a DSN is
  found, else a ``NullAlerter``; tests of other layers use ``RecordingAlerter``.
- ``alerter.error(Failure(...))`` / ``alerter.warning(Failure(..., level="warning"))``.
- ``with monitored_run(alerter, monitor_slug(policy.name), MonitorConfig(...)) as run:``
  around each scheduled run (or ``checkin_start`` / ``checkin_finish`` by hand).
- ``alerter.close(timeout)`` at shutdown.
"""

from cvmkeeper.alerting.alerter import (
    Alerter,
    CheckIn,
    MonitoredRun,
    NullAlerter,
    RecordingAlerter,
    monitored_run,
)
from cvmkeeper.alerting.events import (
    Failure,
    MonitorConfig,
    failure_fingerprint,
    failure_tags,
    monitor_slug,
)
from cvmkeeper.alerting.sentry import (
    AlertingConfigError,
    SentryAlerter,
    SentrySettings,
    build_alerter,
)

__all__ = [
    "Alerter",
    "AlertingConfigError",
    "CheckIn",
    "Failure",
    "MonitorConfig",
    "MonitoredRun",
    "NullAlerter",
    "RecordingAlerter",
    "SentryAlerter",
    "SentrySettings",
    "build_alerter",
    "failure_fingerprint",
    "failure_tags",
    "monitor_slug",
    "monitored_run",
]
