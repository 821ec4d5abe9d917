"""Alerts (Sentry events) and missed-run detection (Sentry Crons check-ins).

The executor and the daemon use only these names:

- ``build_alerter(config.sentry)`` once at start: a ``SentryAlerter`` when a DSN is
  found, else a ``NullAlerter``; tests of other layers use ``RecordingAlerter``.
- ``alerter.error(Failure(...))`` / ``alerter.warning(Failure(..., level="warning"))``.
- ``with monitored_run(alerter, monitor_slug(policy.name), config) as run:`` around each
  scheduled run, with ``config = monitor_config_from(schedule, timezone, config.sentry)``
  (or ``checkin_start`` / ``checkin_finish`` by hand).
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
    monitor_config_from,
    monitor_slug,
)
from cvmkeeper.alerting.sentry import (
    AlertingConfigError,
    SentryAlerter,
    SentryOptions,
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
    "SentryOptions",
    "build_alerter",
    "failure_fingerprint",
    "failure_tags",
    "monitor_config_from",
    "monitor_slug",
    "monitored_run",
]
