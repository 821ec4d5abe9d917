"""Small helpers every command shares: ``--config``, ``--at``, loading, JSON output.

Kept deliberately small: a command module imports what it needs from here instead of
repeating how a config error becomes exit status 2 or how a time is printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.credentials import CredentialsConfig, resolve_credentials
from cvmkeeper.cloud.ratelimit import RateLimitConfig, RateLimiter
from cvmkeeper.cloud.retry import RetryPolicy
from cvmkeeper.cloud.transport import DEFAULT_ENDPOINT, EndpointConfig
from cvmkeeper.config import Config, ConfigError, Setup, config_path, load_setup
from cvmkeeper.config.model import CONFIG_ENV, DEFAULT_CONFIG_PATH

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def config_option(command: F) -> F:
    """The ``--config FILE`` option (default ``$CVMKEEPER_CONFIG``, then the system path)."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="FILE",
        help=(
            f"Daemon config file. Default: ${CONFIG_ENV} if set, else {DEFAULT_CONFIG_PATH}. "
            "Its policies_dir is read relative to the file."
        ),
    )(command)


def report_config_error(error: ConfigError) -> None:
    """Print every problem of ``error`` to stderr, one per line, then a count."""
    for problem in error.problems:
        click.echo(str(problem), err=True)
    count = len(error.problems)
    click.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)


def load_or_exit(config_file: str | None, *, partial: bool = False) -> Setup:
    """Load the config and policies, or print all problems and exit with status 2.

    ``partial`` (``run``): bad policy files do not stop the good ones; they are in
    ``Setup.broken`` and the run reports them (``executor.broken``)."""
    try:
        return load_setup(config_path(config_file), partial=partial)
    except ConfigError as error:
        report_config_error(error)
        sys.exit(EXIT_CONFIG)


class AtTime(click.ParamType[datetime]):
    """A point in time for ``--at``: ISO 8601 (``2026-11-27T18:00``, ``...Z``, ``...+08:00``)
    or ``now``. A time without an offset is taken as UTC."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse the option value into an aware UTC datetime."""
        if isinstance(value, datetime):
            return value
        try:
            return parse_at(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


#: the range ``--at`` accepts: any real run, with room for ten years of schedule maths
EARLIEST_AT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_AT = datetime(2200, 1, 1, tzinfo=UTC)


def parse_at(text: str, now: datetime | None = None) -> datetime:
    """Parse an ``--at`` value into an aware UTC datetime (naive means UTC)."""
    if text.strip().lower() == "now":
        return now or utc_now()
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time; use ISO 8601 such as 2026-11-27T18:00Z or "
            "2026-11-28T02:00+08:00 (no offset means UTC), or 'now'"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 and the like
        moment = EARLIEST_AT - timedelta(days=1)
    if not EARLIEST_AT <= moment < LATEST_AT:
        # Slots, catch-up windows and retention add up to ten years to this time: far
        # outside any real run, date arithmetic would overflow (issue 19).
        raise ValueError(
            f"{text!r} is out of range: use a time from {EARLIEST_AT:%Y-%m-%d} to "
            f"{LATEST_AT - timedelta(days=1):%Y-%m-%d}"
        )
    return moment


def at_option(command: F) -> F:
    """The ``--at TIME`` option: act as if it were that moment (default: now)."""
    return click.option(
        "--at",
        "at",
        type=AtTime(),
        default=None,
        help="Act as if it were TIME (ISO 8601, e.g. 2026-11-27T18:00Z; no offset means UTC). "
        "Default: now.",
    )(command)


def utc_now() -> datetime:
    """The current time, aware, in UTC (the one clock read of a command)."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """``2026-11-27T18:00:00Z``: the UTC form used in every JSON output."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON (datetimes as UTC ``...Z``) to stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default))


def cloud_client(config: Config) -> CloudClient:
    """A ``CloudClient`` over the official SDK, set up from the daemon config.

    Raises the cloud layer's ``CredentialsError`` when no credentials are found.
    """
    creds = config.credentials
    credentials_config = CredentialsConfig(
        secret_id=creds.secret_id,
        secret_key_file=creds.secret_key_file,
        cvm_role=creds.cvm_role,
        origin=creds.origin,
        **({"metadata_url": creds.metadata_url} if creds.metadata_url else {}),
    )
    endpoint = EndpointConfig(
        host=config.cloud.endpoint or DEFAULT_ENDPOINT,
        scheme=config.cloud.scheme,
        timeout_seconds=max(1, int(config.cloud.timeout.total_seconds())),
    )
    rates = RateLimitConfig()
    if config.api.rate_limits:
        rates = RateLimitConfig(rates={**rates.rates, **dict(config.api.rate_limits)})
    retries = config.api.retries
    return CloudClient.over_http(
        resolve_credentials(credentials_config),
        endpoint,
        limiter=RateLimiter(rates),
        retry_policy=RetryPolicy(
            max_attempts=retries.max_attempts,
            base_seconds=retries.base_seconds,
            cap_seconds=retries.cap_seconds,
            deadline_seconds=retries.deadline_seconds,
            max_internal_errors=retries.max_internal_errors,
        ),
    )
