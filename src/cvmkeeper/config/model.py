"""The daemon config as frozen values, and ``Secret``, which keeps keys out of output.

Loaded from ``/etc/cvmkeeper/cvmkeeper.yaml`` (or ``--config`` / ``$CVMKEEPER_CONFIG``) by
``cvmkeeper.config.loader``. Every field has the default a first-time user wants, so an
almost empty file is a working config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cvmkeeper.core.naming import DEFAULT_FORMAT, NameFormat
from cvmkeeper.core.policy import OnQuotaFull, Retention

DEFAULT_CONFIG_PATH = Path("/etc/cvmkeeper/cvmkeeper.yaml")
#: Tencent Cloud's documented custom-image quota per region. Only offline checks assume it:
#: a run and ``validate --online`` read the account's own (``DescribeImageQuota``).
DEFAULT_IMAGE_QUOTA = 10
CONFIG_ENV = "CVMKEEPER_CONFIG"


class Secret:
    """A secret string whose ``str``, ``repr`` and equality never reveal it.

    Call ``reveal()`` at the single place that hands it to the SDK or to Sentry.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself. Never log or format the result."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def redact_dsn(dsn: str) -> str:
    """A Sentry DSN with its key replaced by ``***`` (safe to print)."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://***@{host}{port}{parts.path}"


@dataclass(frozen=True, slots=True)
class CloudSettings:
    """Where the CVM API is. ``endpoint=None`` means Tencent Cloud's own endpoints."""

    endpoint: str | None = None
    scheme: str = "https"
    timeout: timedelta = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class CredentialSettings:
    """The ``credentials:`` part of the config (the cloud layer's ``CredentialsConfig``).

    The secret key is only ever read from a file (``secret_key_file``), never written in
    the config itself. With nothing set, the cloud layer's default chain applies
    (``$CREDENTIALS_DIRECTORY``, the environment, the profile files, the CVM role).
    ``origin`` is ``<config file>: credentials`` for the cloud layer's messages.
    """

    secret_id: str | None = None
    secret_key_file: Path | None = None
    cvm_role: bool = True
    metadata_url: str | None = None
    origin: str = "config"


@dataclass(frozen=True, slots=True)
class SentrySettings:
    """Sentry alerting. No DSN (here, in ``dsn_file`` or ``$SENTRY_DSN``) means off."""

    dsn: Secret | None = None
    dsn_file: Path | None = None
    environment: str = "production"
    server_name: str | None = None
    checkin_margin: timedelta = timedelta(minutes=5)
    max_runtime: timedelta = timedelta(hours=1)
    failure_issue_threshold: int = 1
    recovery_threshold: int = 1
    freshness_factor: float = 2.0
    quota_free_warning: int = 1

    def redacted_dsn(self) -> str | None:
        """The DSN without its key, for messages; ``None`` when no DSN is configured."""
        return redact_dsn(self.dsn.reveal()) if self.dsn is not None else None


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retries of one API call: full-jitter exponential backoff with a cap and a deadline.

    The fields are the cloud layer's ``RetryPolicy`` (``base_seconds`` doubles per attempt
    up to ``cap_seconds``; ``deadline_seconds`` bounds the whole call).
    """

    max_attempts: int = 8
    base_seconds: float = 0.2
    cap_seconds: float = 20.0
    deadline_seconds: float = 120.0
    max_internal_errors: int = 3


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Client-side rate limits, retries, and how long a run waits for images.

    ``rate_limits`` (action, calls per second per region) overrides the documented limits
    for the actions it names. ``visibility_grace``: how long an image cvmkeeper created
    may be absent from DescribeImages (or listed without its tags) before it is reported
    as lost (DescribeImages is eventually consistent; ``executor.created``).
    """

    rate_limits: tuple[tuple[str, float], ...] = ()
    retries: RetrySettings = field(default_factory=RetrySettings)
    wait_timeout: timedelta = timedelta(minutes=60)
    poll_interval: timedelta = timedelta(seconds=15)
    delete_binded_snapshots: bool = True
    visibility_grace: timedelta = timedelta(minutes=10)
    #: the lease of a stop's cloud mark (rule 9 across hosts); ``None``: twice
    #: ``wait_timeout`` plus ten minutes (``executor.stop_markers.default_lease``)
    stop_lease: timedelta | None = None


@dataclass(frozen=True, slots=True)
class OrphanSettings:
    """What happens to images of instances no policy targets any more.

    ``retention=None`` (the default) keeps them all and only reports them.
    """

    retention: Retention | None = None


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """``notify.webhook``: POST a signed JSON document per alert and check-in.

    ``url`` is a ``Secret`` (a webhook URL often carries a token); ``secret_file`` holds the
    shared HMAC-SHA256 key (``cvmkeeper.alerting.webhook`` documents the signature).
    """

    url: Secret
    secret_file: Path | None = None
    timeout: timedelta = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """Notification channels besides Sentry (``notify:``); all off by default.

    ``healthchecks`` maps a policy name to its ping URL (Healthchecks.io or a
    compatible server: ``/start``, success, ``/fail``); ``apprise`` lists Apprise URLs
    (the optional ``apprise`` extra), read from the config and from ``apprise_urls_file``.
    """

    webhook: WebhookSettings | None = None
    healthchecks: tuple[tuple[str, Secret], ...] = ()
    apprise: tuple[Secret, ...] = ()
    apprise_urls_file: Path | None = None

    @property
    def any(self) -> bool:
        """True when at least one channel is configured."""
        return bool(self.webhook or self.healthchecks or self.apprise or self.apprise_urls_file)


@dataclass(frozen=True, slots=True)
class Config:
    """The daemon config, validated. Paths are absolute (relative ones are resolved
    against the config file's directory)."""

    source: Path
    policies_dir: Path
    regions: tuple[str, ...] = ()
    #: an optional cap on the account's quota (``None``: the account's own quota)
    image_quota: int | None = None
    name_format: NameFormat = DEFAULT_FORMAT
    on_quota_full: OnQuotaFull = "evict"
    cloud: CloudSettings = field(default_factory=CloudSettings)
    credentials: CredentialSettings = field(default_factory=CredentialSettings)
    sentry: SentrySettings = field(default_factory=SentrySettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    orphans: OrphanSettings = field(default_factory=OrphanSettings)
    state_dir: Path = Path("/var/lib/cvmkeeper")
    metrics_listen: str | None = None
    notify: NotifySettings = field(default_factory=NotifySettings)

    @property
    def offline_quota(self) -> int:
        """The quota an offline check assumes: the cap if set, else the documented default."""
        return DEFAULT_IMAGE_QUOTA if self.image_quota is None else self.image_quota
