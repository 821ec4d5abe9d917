"""The daemon config file (``cvmkeeper.yaml``) → ``Config``, with every problem reported.

See ``config/cvmkeeper.yaml`` in the repository for a commented sample of every key.
Relative paths are resolved against the directory of the config file.
"""

from __future__ import annotations

import ipaddress
import re
import stat
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cvmkeeper.config.model import (
    ApiSettings,
    CloudSettings,
    Config,
    CredentialSettings,
    NotifySettings,
    OrphanSettings,
    RetrySettings,
    Secret,
    SentrySettings,
)
from cvmkeeper.config.notify_file import read_notify
from cvmkeeper.config.paths import (
    absolute,
    read_path,
)
from cvmkeeper.config.policy_file import REGION, REGION_HELP, read_retention
from cvmkeeper.config.reader import Node, Reader
from cvmkeeper.core.naming import DEFAULT_TEMPLATE, NameFormat, NameTemplateError
from cvmkeeper.core.policy import ON_QUOTA_FULL_CHOICES

CONFIG_KEYS = (
    "policies_dir",
    "regions",
    "image_quota",
    "name_template",
    "on_quota_full",
    "cloud",
    "credentials",
    "sentry",
    "api",
    "orphans",
    "state_dir",
    "metrics",
    "notify",
)
#: the endpoint used when the config names none (``cloud.transport.DEFAULT_ENDPOINT``; not
#: imported, so that reading a config does not load the SDK)
DEFAULT_ENDPOINT = "cvm.tencentcloudapi.com"
CLOUD_KEYS = ("endpoint", "scheme", "timeout", "allow_insecure_http")
CREDENTIAL_KEYS = ("secret_id", "secret_key_file", "cvm_role", "metadata_url")
SENTRY_KEYS = (
    "dsn",
    "dsn_file",
    "environment",
    "server_name",
    "checkin_margin",
    "max_runtime",
    "failure_issue_threshold",
    "recovery_threshold",
    "freshness_factor",
    "quota_free_warning",
)
API_KEYS = (
    "rate_limits",
    "retries",
    "wait_timeout",
    "poll_interval",
    "delete_binded_snapshots",
    "visibility_grace",
    "stop_lease",
)
RETRY_KEYS = (
    "max_attempts",
    "base_seconds",
    "cap_seconds",
    "deadline_seconds",
    "max_internal_errors",
)
ENDPOINT = re.compile(r"[A-Za-z0-9.-]+(?::\d{1,5})?")
ENDPOINT_HELP = "host[:port] without a scheme, such as 127.0.0.1:8765 or cvm.tencentcloudapi.com"
ACTION = re.compile(r"[A-Z][A-Za-z]+")
LISTEN = re.compile(r"[A-Za-z0-9.:\[\]-]+:\d{1,5}")
SECRET_ID = re.compile(r"[A-Za-z0-9]{8,128}")


def _cloud(reader: Reader, node: Node) -> CloudSettings | None:
    keys = reader.mapping(node, "cloud", CLOUD_KEYS)
    if keys is None:
        return None
    settings = CloudSettings()
    endpoint = settings.endpoint
    if "endpoint" in keys:
        endpoint = reader.string(keys["endpoint"], "cloud.endpoint", ENDPOINT, ENDPOINT_HELP)
        endpoint = _port_checked(reader, keys["endpoint"], "cloud.endpoint", endpoint)
    scheme = settings.scheme
    if "scheme" in keys:
        scheme = reader.choice(keys["scheme"], "cloud.scheme", ("http", "https")) or scheme
    timeout = settings.timeout
    if "timeout" in keys:
        timeout = reader.duration(keys["timeout"], "cloud.timeout") or timeout
    allow_http = False
    if "allow_insecure_http" in keys:
        allow_http = bool(reader.boolean(keys["allow_insecure_http"], "cloud.allow_insecure_http"))
    endpoint_ok = endpoint is not None or "endpoint" not in keys  # a bad one is reported
    if (
        scheme == "http"
        and endpoint_ok
        and not allow_http
        and not _is_loopback(endpoint or DEFAULT_ENDPOINT)
    ):
        reader.problem(
            keys["scheme"],
            "cloud.scheme",
            f"http to {endpoint or DEFAULT_ENDPOINT} is refused: signed requests and the "
            "answers would cross the network in clear text. Use https, or set "
            "cloud.allow_insecure_http: true if this network path is trusted",
        )
    return CloudSettings(endpoint=endpoint, scheme=scheme, timeout=timeout)


def _port_checked(reader: Reader, node: Node, path: str, value: str | None) -> str | None:
    """``value`` (``host[:port]``) if its port is 1-65535; else a problem naming the key,
    instead of a failure deep in the HTTP stack on the first call."""
    if value is None or ":" not in value or value.endswith("]"):
        return value
    port = value.rsplit(":", 1)[1]
    if port.isdigit() and not 1 <= int(port) <= 65535:
        reader.problem(node, path, f"port {port} is not between 1 and 65535")
        return None
    return value


def _is_loopback(endpoint: str) -> bool:
    """True when ``endpoint`` (``host[:port]``) names this machine: 127/8, ::1, localhost."""
    host = endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _credentials(reader: Reader, node: Node, base: Path, origin: str) -> CredentialSettings:
    keys = reader.mapping(node, "credentials", (*CREDENTIAL_KEYS, "secret_key"))
    if keys is None:
        return CredentialSettings(origin=origin)
    before = len(reader.problems)
    if "secret_key" in keys:
        # Report where, never what: the value is a secret.
        reader.problem(
            keys["secret_key"],
            "credentials.secret_key",
            "a plain secret key in the config file is refused: put it in a file only "
            "cvmkeeper can read and give secret_key_file, or use systemd LoadCredential= "
            "($CREDENTIALS_DIRECTORY/secret_key)",
        )
    secret_id = None
    if "secret_id" in keys:
        secret_id = reader.string(
            keys["secret_id"], "credentials.secret_id", SECRET_ID, "a SecretId (letters, digits)"
        )
    key_file = None
    if "secret_key_file" in keys:
        key_file = read_path(reader, keys["secret_key_file"], "credentials.secret_key_file", base)
    cvm_role = True
    if "cvm_role" in keys:
        got = reader.boolean(keys["cvm_role"], "credentials.cvm_role")
        cvm_role = True if got is None else got
    metadata_url = None
    if "metadata_url" in keys:
        metadata_url = reader.string(
            keys["metadata_url"],
            "credentials.metadata_url",
            re.compile(r"https?://\S+"),
            "an http(s) URL",
        )
    if (secret_id is None) != (key_file is None) and len(reader.problems) == before:
        reader.problem(node, "credentials", "give secret_id and secret_key_file together")
    return CredentialSettings(
        secret_id=secret_id,
        secret_key_file=key_file,
        cvm_role=cvm_role,
        metadata_url=metadata_url,
        origin=origin,
    )


def _sentry(reader: Reader, node: Node, base: Path) -> SentrySettings:
    keys = reader.mapping(node, "sentry", SENTRY_KEYS)
    defaults = SentrySettings()
    if keys is None:
        return defaults
    dsn: Secret | None = None
    if "dsn" in keys:
        dsn_text = reader.string(keys["dsn"], "sentry.dsn")
        if dsn_text is not None:
            parts = urlsplit(dsn_text)
            if parts.scheme not in ("http", "https") or not parts.username or not parts.hostname:
                # The DSN carries a key: describe the shape, never echo the value.
                reader.problem(
                    keys["dsn"],
                    "sentry.dsn",
                    "is not a Sentry DSN (expected https://KEY@HOST/PROJECT)",
                )
            elif reader.file_mode is not None and reader.file_mode & stat.S_IROTH:
                # Like a plain secret_key: the DSN's key lets anyone send events as us.
                reader.problem(
                    keys["dsn"],
                    "sentry.dsn",
                    f"a plain DSN in a config file that every user can read (mode "
                    f"{stat.S_IMODE(reader.file_mode):04o}) is refused: chmod o-r the file, "
                    "or give dsn_file, or use systemd LoadCredential= "
                    "($CREDENTIALS_DIRECTORY/sentry_dsn)",
                )
            else:
                dsn = Secret(dsn_text)
    dsn_file = None
    if "dsn_file" in keys:
        dsn_file = read_path(reader, keys["dsn_file"], "sentry.dsn_file", base)
    if dsn is not None and dsn_file is not None:
        reader.problem(keys["dsn_file"], "sentry.dsn_file", "give dsn or dsn_file, not both")

    def text(key: str, default: str) -> str:
        return (reader.string(keys[key], f"sentry.{key}") or default) if key in keys else default

    def duration(key: str, default: timedelta) -> timedelta:
        if key not in keys:
            return default
        return reader.duration(keys[key], f"sentry.{key}") or default

    def integer(key: str, default: int, minimum: int) -> int:
        if key not in keys:
            return default
        value = reader.integer(keys[key], f"sentry.{key}", minimum, 100_000)
        return default if value is None else value

    factor = defaults.freshness_factor
    if "freshness_factor" in keys:
        factor = (
            reader.number(keys["freshness_factor"], "sentry.freshness_factor", 1.0, 100.0) or factor
        )
    return SentrySettings(
        dsn=dsn,
        dsn_file=dsn_file,
        environment=text("environment", defaults.environment),
        server_name=text("server_name", "") or None,
        checkin_margin=duration("checkin_margin", defaults.checkin_margin),
        max_runtime=duration("max_runtime", defaults.max_runtime),
        failure_issue_threshold=integer("failure_issue_threshold", 1, 1),
        recovery_threshold=integer("recovery_threshold", 1, 1),
        freshness_factor=factor,
        quota_free_warning=integer("quota_free_warning", defaults.quota_free_warning, 0),
    )


def _api(reader: Reader, node: Node) -> ApiSettings:
    keys = reader.mapping(node, "api", API_KEYS)
    defaults = ApiSettings()
    if keys is None:
        return defaults
    limits: list[tuple[str, float]] = []
    if "rate_limits" in keys:
        actions = reader.mapping(keys["rate_limits"], "api.rate_limits", None) or {}
        for action, value_node in actions.items():
            where = f"api.rate_limits.{action}"
            if not ACTION.fullmatch(action):
                reader.problem(value_node, where, "is not an API action name such as CreateImage")
                continue
            rate = reader.number(value_node, where, 0.01, 1000)
            if rate is not None:
                limits.append((action, rate))
    retries = defaults.retries
    if "retries" in keys:
        retry_keys = reader.mapping(keys["retries"], "api.retries", RETRY_KEYS) or {}
        values: dict[str, float] = {}
        for key, value_node in retry_keys.items():
            where = f"api.retries.{key}"
            got: float | None
            if key in ("max_attempts", "max_internal_errors"):
                got = reader.integer(value_node, where, 1 if key == "max_attempts" else 0, 100)
            else:
                got = reader.number(value_node, where, 0.0, 86400.0)
            if got is not None:
                values[key] = got
        retries = RetrySettings(
            max_attempts=int(values.get("max_attempts", retries.max_attempts)),
            base_seconds=float(values.get("base_seconds", retries.base_seconds)),
            cap_seconds=float(values.get("cap_seconds", retries.cap_seconds)),
            deadline_seconds=float(values.get("deadline_seconds", retries.deadline_seconds)),
            max_internal_errors=int(values.get("max_internal_errors", retries.max_internal_errors)),
        )
    wait_timeout = defaults.wait_timeout
    if "wait_timeout" in keys:
        wait_timeout = reader.duration(keys["wait_timeout"], "api.wait_timeout") or wait_timeout
    poll = defaults.poll_interval
    if "poll_interval" in keys:
        poll = reader.duration(keys["poll_interval"], "api.poll_interval") or poll
    grace = defaults.visibility_grace
    if "visibility_grace" in keys:
        grace = reader.duration(keys["visibility_grace"], "api.visibility_grace") or grace
    delete_snaps = defaults.delete_binded_snapshots
    if "delete_binded_snapshots" in keys:
        got_bool = reader.boolean(keys["delete_binded_snapshots"], "api.delete_binded_snapshots")
        delete_snaps = delete_snaps if got_bool is None else got_bool
    stop_lease = defaults.stop_lease
    if "stop_lease" in keys:
        # shorter than a stop, an image and a start lets a peer start an instance while its
        # image is made (docs/operations.md); longer keeps a dead host's instance down longer
        stop_lease = reader.duration(keys["stop_lease"], "api.stop_lease") or stop_lease
    return ApiSettings(
        rate_limits=tuple(limits),
        retries=retries,
        wait_timeout=wait_timeout,
        poll_interval=poll,
        delete_binded_snapshots=delete_snaps,
        visibility_grace=grace,
        stop_lease=stop_lease,
    )


def read_config(reader: Reader, root: Node, source: Path) -> Config | None:
    """Build the ``Config`` of one composed config file (``None`` if it is not a mapping).

    A key with a problem falls back to its default so that the policies can still be
    checked; callers must treat any recorded problem as a failed load.
    """
    keys = reader.mapping(root, "", CONFIG_KEYS)
    if keys is None:
        return None
    base = source.parent
    policies_dir = absolute(base / "policies")
    if "policies_dir" in keys:
        policies_dir = read_path(reader, keys["policies_dir"], "policies_dir", base) or policies_dir
    regions: tuple[str, ...] = ()
    if "regions" in keys:
        regions = reader.string_list(keys["regions"], "regions", REGION, REGION_HELP) or ()
    quota: int | None = None  # no cap: the account's own quota (DescribeImageQuota)
    if "image_quota" in keys:
        quota = reader.integer(keys["image_quota"], "image_quota", 1, 100_000)
    name_format = NameFormat.compile(DEFAULT_TEMPLATE)
    if "name_template" in keys:
        template = reader.string(keys["name_template"], "name_template")
        if template is not None:
            try:
                name_format = NameFormat.compile(template)
            except NameTemplateError as exc:
                reader.problem(keys["name_template"], "name_template", str(exc))
    on_quota_full = "evict"
    if "on_quota_full" in keys:
        on_quota_full = (
            reader.choice(keys["on_quota_full"], "on_quota_full", ON_QUOTA_FULL_CHOICES) or "evict"
        )
    cloud = CloudSettings()
    if "cloud" in keys:
        cloud = _cloud(reader, keys["cloud"]) or cloud
    origin = f"{source}: credentials"
    credentials = CredentialSettings(origin=origin)
    if "credentials" in keys:
        credentials = _credentials(reader, keys["credentials"], base, origin)
    sentry = _sentry(reader, keys["sentry"], base) if "sentry" in keys else SentrySettings()
    api = _api(reader, keys["api"]) if "api" in keys else ApiSettings()
    orphans = OrphanSettings()
    if "orphans" in keys:
        rules = read_retention(reader, keys["orphans"], "orphans", require_rule=False)
        # No rule at all means "keep every orphan", never "keep nothing".
        orphans = OrphanSettings(retention=rules if rules and rules.keeps_something else None)
    state_dir = Path("/var/lib/cvmkeeper")
    if "state_dir" in keys:
        state_dir = read_path(reader, keys["state_dir"], "state_dir", base) or state_dir
    metrics_listen = None
    if "metrics" in keys:
        metric_keys = reader.mapping(keys["metrics"], "metrics", ("listen",)) or {}
        if "listen" in metric_keys:
            metrics_listen = reader.string(
                metric_keys["listen"], "metrics.listen", LISTEN, "host:port such as 127.0.0.1:9464"
            )
    notify = read_notify(reader, keys["notify"], base) if "notify" in keys else NotifySettings()
    return Config(
        source=source,
        policies_dir=policies_dir,
        regions=regions,
        image_quota=quota,
        name_format=name_format,
        on_quota_full="skip" if on_quota_full == "skip" else "evict",
        cloud=cloud,
        credentials=credentials,
        sentry=sentry,
        api=api,
        orphans=orphans,
        state_dir=state_dir,
        metrics_listen=metrics_listen,
        notify=notify,
    )
