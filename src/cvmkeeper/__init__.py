"""cvmkeeper: scheduled, quota-aware custom-image backups for Tencent Cloud CVM.

Layout (dependencies point downwards only):

- ``core``      pure values and decisions: names, schedules, retention, the planner.
                No I/O, no clock reads, no globals.
- ``config``    reads and validates the daemon config and policy YAML into core values.
- ``cloud``     the one interface to Tencent Cloud, its SDK adapter and in-process adapter,
                error classes, retries, rate limiting and credentials.
- ``emulator``  a faithful CVM API 3.0 emulator (state machine + HTTP front) for tests,
                the demo and the benchmark.
- ``daemon``    the long-running scheduler and its systemd integration.
- ``alerting``  Sentry events and cron check-ins.
- ``cli``       the ``cvmkeeper`` command; thin, it only wires the parts above together.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cvmkeeper")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
