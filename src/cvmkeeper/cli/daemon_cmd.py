"""``cvmkeeper daemon``: run the scheduler in the foreground, as systemd starts it.

The command only wires things together: logging (``--log-format``, ``--log-level``), the
config path, the cloud client factory; ``cvmkeeper.scheduler.service.Daemon`` does the work.
Exit status: 0 after SIGTERM/SIGINT, 2 when the config is invalid at start (the daemon
config file, the policies directory, or no usable policy at all; a bad policy file beside
good ones is reported on every run instead, docs/operations.md) or its credentials cannot
be read (as every command answers), 1 when the daemon cannot start otherwise.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from cvmkeeper.cli.common import cloud_client, config_option
from cvmkeeper.config import config_path
from cvmkeeper.logs import LOG_FORMATS, setup_logging

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@click.command("daemon")
@config_option
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="auto",
    show_default=True,
    help="auto: journald priorities when stderr is the journal, else text; json: one object "
    "per line for log shippers.",
)
@click.option(
    "--log-level",
    type=click.Choice(_LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="The least important messages to log.",
)
def daemon(config_file: str | None, log_format: str, log_level: str) -> None:
    """Run the backup scheduler in the foreground (what the systemd unit starts).

    Runs each policy's schedules, catches up a missed latest slot at start and on reload,
    reloads config and policies on SIGHUP (a broken new config is rejected and the old one
    keeps running), and stops at a safe point on SIGTERM. Talks to systemd through
    $NOTIFY_SOCKET (READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1).
    """
    setup_logging(log_level.upper(), log_format)
    if log_level.upper() != "DEBUG":
        # APScheduler logs every job start and end at INFO; the daemon logs its own runs.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)

    from cvmkeeper.scheduler.service import Daemon  # noqa: PLC0415  (keeps `--help` fast)

    service = Daemon(config_path(config_file), client_factory=cloud_client)
    try:
        status = service.run()
    finally:
        service.close()
    if service.runs_left_behind:
        # Worker threads of runs that did not reach a safe point in time would keep the
        # interpreter alive; the cloud is the source of truth, the next start finishes them.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
