"""``--timeout SECONDS`` for the read-only commands (``plan``, ``validate --online``,
``images``): one deadline for the whole command, as ``status`` has, so a silent endpoint
is named within it instead of after minutes of per-call timeouts and retries (issue #17)."""

from __future__ import annotations

import click

from cvmkeeper.cli.common import F

#: seconds a command waits for the cloud all together (``--timeout``)
DEFAULT_TIMEOUT = 60.0


def timeout_option(command: F) -> F:
    """``--timeout SECONDS`` (default 60): the most the command waits for the cloud."""
    return click.option(
        "--timeout",
        "timeout_seconds",
        type=click.FloatRange(min=0.1),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        metavar="SECONDS",
        help="Wait at most this long for the cloud, all regions together (they are read in "
        "parallel); a region that has not answered by then is named on stderr (exit 1).",
    )(command)
