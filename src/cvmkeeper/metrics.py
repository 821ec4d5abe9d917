"""Prometheus metrics of the daemon (``metrics: {listen: "127.0.0.1:9464"}``), off by default.

``prometheus-client`` is an optional extra (``pip install 'cvmkeeper[metrics]'``); it is
imported only when metrics are switched on, and its absence is a clear error then.

What is exported, on a private ``CollectorRegistry`` (nothing of the process-wide default
registry leaks in):

- ``cvmkeeper_last_backup_timestamp_seconds{region,instance,policy}``: the slot of each
  targeted instance's newest ``NORMAL`` backup; ``cvmkeeper_backup_stale{region,instance}``
  is 1 when it is older than the policy's period times ``sentry.freshness_factor``.
- ``cvmkeeper_images{region,owner}`` (owner ``cvmkeeper`` or ``other``),
  ``cvmkeeper_image_quota{region}`` and ``cvmkeeper_image_quota_free{region}``.
- ``cvmkeeper_run_duration_seconds{result}`` (histogram) and ``cvmkeeper_runs_total{result}``.
- ``cvmkeeper_api_calls_total{action}`` and ``cvmkeeper_api_errors_total{action,code}``,
  read from the cloud client's ``CallStats`` at scrape time.
- Restore drills (issue #16): ``cvmkeeper_drills_total{policy,result}``,
  ``cvmkeeper_drill_ok{policy,instance}`` (1 when the instance's last drill passed) and
  ``cvmkeeper_drill_seconds_to_ready{policy,instance}``: the daemon's drill job passes each
  drill report to :meth:`MetricsExporter.observe_drills`.

- Policy files the daemon runs without (issue #19), set at start and on every reload:
  ``cvmkeeper_policy_files_broken`` (how many; 0 when all load) and
  ``cvmkeeper_policy_file_broken{file,old_version_kept}`` (1 per broken file).

The backup and region values come from ``MetricsExporter.observe``, which the daemon passes
to every run it starts (``run_once(observe=...)``; no process-wide observer list): they are
what the last run of each region saw (after its creates and deletes), so a scrape never
calls the cloud.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from cvmkeeper.executor.run_health import RunHealth

__all__ = ["MetricsError", "MetricsExporter", "parse_listen", "start_metrics"]

log = logging.getLogger(__name__)

#: Run durations: a run takes seconds (nothing due) to an hour (waiting for images).
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class MetricsError(RuntimeError):
    """Metrics cannot be served (the extra is not installed, the address cannot be bound)."""


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` / ``"[::1]:9464"`` → (host, port); ``ValueError`` if malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"metrics.listen {listen!r} is not host:port such as 127.0.0.1:9464")
    return host.strip("[]"), int(port)


def _prometheus() -> Any:
    """The ``prometheus_client`` module, or a ``MetricsError`` saying how to get it."""
    try:
        return importlib.import_module("prometheus_client")
    except ImportError:
        raise MetricsError(
            "metrics.listen is set but prometheus-client is not installed; install it with "
            "pip install 'cvmkeeper[metrics]' (or remove metrics: from the config)"
        ) from None


class MetricsExporter:
    """The daemon's metrics: a private registry, fed by runs, served over HTTP.

    ``client_stats()`` returns the current cloud client's ``CallStats`` (or ``None``); it is
    called at every scrape, so a client replaced by a reload is followed.
    """

    def __init__(self, client_stats: Callable[[], Any]) -> None:
        prometheus = _prometheus()
        self._prometheus = prometheus
        self._client_stats = client_stats
        self._lock = threading.Lock()
        self.registry = prometheus.CollectorRegistry(auto_describe=True)
        # created in this order, which is the order of a scrape's output
        self.last_backup, self.stale = _backup_gauges(prometheus, self.registry)
        self.images, self.quota, self.quota_free = _region_gauges(prometheus, self.registry)
        self.run_duration, self.runs = _run_metrics(prometheus, self.registry)
        self.drills, self.drill_ok, self.drill_ready = _drill_metrics(prometheus, self.registry)
        self.broken_files, self.broken_file = _policy_file_gauges(prometheus, self.registry)
        self.notify_failures, self.notify_last_failure = _notification_metrics(
            prometheus, self.registry
        )
        self.registry.register(_ApiCollector(prometheus, client_stats))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._instances: dict[str, set[tuple[str, ...]]] = {}

    def observe(self, run: RunHealth) -> None:
        """Record one finished run (passed to ``run_once`` as its ``observe``)."""
        report = run.report
        result = "ok" if report.ok else "failed"
        seconds = max(0.0, (report.finished - report.started).total_seconds())
        with self._lock:
            self.run_duration.labels(result).observe(seconds)
            self.runs.labels(result).inc()
            for health in run.regions:
                quota = health.quota
                self.images.labels(health.region, "cvmkeeper").set(quota.managed)
                self.images.labels(health.region, "other").set(quota.unmanaged)
                self.quota.labels(health.region).set(quota.quota)
                self.quota_free.labels(health.region).set(quota.free)
                for item in health.instances:
                    self.stale.labels(item.region, item.instance_id).set(int(item.stale))
                    if item.newest_slot is not None:
                        self.last_backup.labels(item.region, item.instance_id, item.policy).set(
                            item.newest_slot.timestamp()
                        )

    def observe_broken(self, broken: Any) -> None:
        """Record the policy files the daemon now runs without (``config.BrokenPolicy``
        items, at start and on every reload): the series of fixed files go away."""
        files = list(broken)
        with self._lock:
            self.broken_files.set(len(files))
            self.broken_file.clear()
            for item in files:
                self.broken_file.labels(item.file, "yes" if item.stand_in else "no").set(1)

    def observe_notification_failure(self, channel: str, when: float) -> None:
        """Record a notification that could not be delivered on ``channel`` (``webhook``,
        ``apprise``, ``healthchecks``; never a URL: it holds the channel's secret) at
        ``when`` (epoch seconds)."""
        with self._lock:
            self.notify_failures.labels(channel).inc()
            self.notify_last_failure.labels(channel).set(when)

    def observe_drills(self, report: Any) -> None:
        """Record one drill run (a ``restore.drill.DrillReport``)."""
        with self._lock:
            for outcome in report.outcomes:
                self.drills.labels(outcome.policy, "ok" if outcome.ok else "failed").inc()
                self.drill_ok.labels(outcome.policy, outcome.instance_id).set(int(outcome.ok))
                if outcome.ok and outcome.seconds_to_ready is not None:
                    self.drill_ready.labels(outcome.policy, outcome.instance_id).set(
                        outcome.seconds_to_ready
                    )

    def start(self, listen: str) -> tuple[str, int]:
        """Serve ``/metrics`` on ``listen``; return the bound (host, port)
        (port 0 picks a free one). Raises ``MetricsError`` when it cannot bind."""
        host, port = parse_listen(listen)
        try:
            server, thread = self._prometheus.start_http_server(
                port, addr=host, registry=self.registry
            )
        except OSError as error:
            raise MetricsError(f"cannot serve metrics on {listen}: {error.strerror}") from None
        self._server, self._thread = server, thread
        host, port = self.address
        log.info("metrics on http://%s:%d/metrics", host, port)
        return host, port

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) being served; ``RuntimeError`` before ``start``."""
        if self._server is None:
            raise RuntimeError("the metrics server is not running")
        bound = self._server.server_address
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        """Stop the HTTP server."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _backup_gauges(prometheus: Any, registry: Any) -> tuple[Any, Any]:
    """``cvmkeeper_last_backup_timestamp_seconds`` and ``cvmkeeper_backup_stale``."""
    last_backup = prometheus.Gauge(
        "cvmkeeper_last_backup_timestamp_seconds",
        "Slot (Unix time) of the newest NORMAL backup of each targeted instance.",
        ["region", "instance_id", "policy"],
        registry=registry,
    )
    stale = prometheus.Gauge(
        "cvmkeeper_backup_stale",
        "1 when the newest NORMAL backup is older than the policy period times the "
        "freshness factor (or missing).",
        ["region", "instance_id"],
        registry=registry,
    )
    return last_backup, stale


def _region_gauges(prometheus: Any, registry: Any) -> tuple[Any, Any, Any]:
    """``cvmkeeper_images``, ``cvmkeeper_image_quota`` and ``cvmkeeper_image_quota_free``."""
    images = prometheus.Gauge(
        "cvmkeeper_images",
        "Custom images in the region, by owner.",
        ["region", "owner"],
        registry=registry,
    )
    quota = prometheus.Gauge(
        "cvmkeeper_image_quota",
        "Effective custom-image quota.",
        ["region"],
        registry=registry,
    )
    quota_free = prometheus.Gauge(
        "cvmkeeper_image_quota_free",
        "Custom images that can still be created.",
        ["region"],
        registry=registry,
    )
    return images, quota, quota_free


def _run_metrics(prometheus: Any, registry: Any) -> tuple[Any, Any]:
    """``cvmkeeper_run_duration_seconds`` (histogram) and ``cvmkeeper_runs_total``."""
    run_duration = prometheus.Histogram(
        "cvmkeeper_run_duration_seconds",
        "Duration of each run, by result.",
        ["result"],
        buckets=DURATION_BUCKETS,
        registry=registry,
    )
    runs = prometheus.Counter(
        "cvmkeeper_runs", "Runs finished, by result.", ["result"], registry=registry
    )
    return run_duration, runs


def _drill_metrics(prometheus: Any, registry: Any) -> tuple[Any, Any, Any]:
    """``cvmkeeper_drills_total``, ``cvmkeeper_drill_ok`` and
    ``cvmkeeper_drill_seconds_to_ready`` (issue #16)."""
    drills = prometheus.Counter(
        "cvmkeeper_drills",
        "Restore drills finished, by result.",
        ["policy", "result"],
        registry=registry,
    )
    drill_ok = prometheus.Gauge(
        "cvmkeeper_drill_ok",
        "1 when the last drill of the instance passed.",
        ["policy", "instance_id"],
        registry=registry,
    )
    drill_ready = prometheus.Gauge(
        "cvmkeeper_drill_seconds_to_ready",
        "Seconds from launch to ready in the last passing drill.",
        ["policy", "instance_id"],
        registry=registry,
    )
    return drills, drill_ok, drill_ready


def _policy_file_gauges(prometheus: Any, registry: Any) -> tuple[Any, Any]:
    """``cvmkeeper_policy_files_broken`` and ``cvmkeeper_policy_file_broken`` (issue #19)."""
    broken_files = prometheus.Gauge(
        "cvmkeeper_policy_files_broken",
        "Policy files the daemon runs without (they cannot be used).",
        registry=registry,
    )
    broken_file = prometheus.Gauge(
        "cvmkeeper_policy_file_broken",
        "1 for each policy file that cannot be used; old_version_kept=yes when the "
        "version loaded before still runs (else its images are held).",
        ["file", "old_version_kept"],
        registry=registry,
    )
    return broken_files, broken_file


#: the notification channels, whose failure counters start at 0 (so increase() sees the
#: first failure)
NOTIFY_CHANNELS = ("webhook", "apprise", "healthchecks")


def _notification_metrics(prometheus: Any, registry: Any) -> tuple[Any, Any]:
    """``cvmkeeper_notification_failures_total`` and
    ``cvmkeeper_notification_last_failure_timestamp_seconds`` by ``channel`` (issue #17: a
    dead webhook showed only in the journal)."""
    failures = prometheus.Counter(
        "cvmkeeper_notification_failures",
        "Notifications that could not be delivered (after retries), by channel.",
        ["channel"],
        registry=registry,
    )
    last = prometheus.Gauge(
        "cvmkeeper_notification_last_failure_timestamp_seconds",
        "When a notification on this channel last could not be delivered (Unix time).",
        ["channel"],
        registry=registry,
    )
    for channel in NOTIFY_CHANNELS:
        failures.labels(channel)
    return failures, last


class _ApiCollector:
    """API calls and errors, read from the client's ``CallStats`` at each scrape."""

    def __init__(self, prometheus: Any, client_stats: Callable[[], Any]) -> None:
        self._metric_family = prometheus.metrics_core.CounterMetricFamily
        self._client_stats = client_stats

    def describe(self) -> list[Any]:
        """No fixed description: the label values are only known at scrape time."""
        return []

    def collect(self) -> Iterator[Any]:
        """The counters as of now."""
        calls = self._metric_family(
            "cvmkeeper_api_calls", "CVM API call attempts, by action.", labels=["action"]
        )
        errors = self._metric_family(
            "cvmkeeper_api_errors",
            "CVM API call attempts that failed, by action and code.",
            labels=["action", "code"],
        )
        stats = self._client_stats()
        if stats is not None:
            attempts, failures = stats.snapshot()
            for action, count in sorted(attempts.items()):
                calls.add_metric([action], count)
            for (action, code), count in sorted(failures.items()):
                errors.add_metric([action, code], count)
        yield calls
        yield errors


def start_metrics(listen: str, client_stats: Callable[[], Any]) -> MetricsExporter:
    """Create the exporter and serve it on ``listen``; raises ``MetricsError``."""
    exporter = MetricsExporter(client_stats)
    exporter.start(listen)
    return exporter
