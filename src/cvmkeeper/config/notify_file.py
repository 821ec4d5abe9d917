"""The ``notify:`` part of the daemon config: channels for teams without Sentry.

Kept apart from ``daemon_file`` so the channels can grow without touching the rest of the
config reader. Every URL is held as a ``Secret`` and registered with the log redactor when
the channel is built (``cvmkeeper.alerting.channels``): a webhook or ping URL is itself a
credential (anyone who has it can post or ping).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cvmkeeper.config.model import NotifySettings, Secret, WebhookSettings
from cvmkeeper.config.paths import read_path
from cvmkeeper.config.reader import Node, Reader

NOTIFY_KEYS = ("webhook", "healthchecks", "apprise", "apprise_urls_file")
WEBHOOK_KEYS = ("url", "secret_file", "timeout")
DEFAULT_WEBHOOK_TIMEOUT = timedelta(seconds=10)
POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _http_url(reader: Reader, node: Node, path: str) -> Secret | None:
    """An http(s) URL, kept secret; the problem never echoes the value."""
    text = reader.string(node, path)
    if text is None:
        return None
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        reader.problem(node, path, "is not an http(s) URL (expected https://HOST/PATH)")
        return None
    return Secret(text.strip())


def read_notify(reader: Reader, node: Node, base: Path) -> NotifySettings:
    """``notify:`` → ``NotifySettings``; a key with a problem is left out (and reported)."""
    keys = reader.mapping(node, "notify", NOTIFY_KEYS)
    if keys is None:
        return NotifySettings()
    webhook = None
    if "webhook" in keys:
        hook = reader.mapping(keys["webhook"], "notify.webhook", WEBHOOK_KEYS) or {}
        url = _http_url(reader, hook["url"], "notify.webhook.url") if "url" in hook else None
        if "url" not in hook:
            reader.problem(keys["webhook"], "notify.webhook", "needs url")
        secret_file = None
        if "secret_file" in hook:
            secret_file = read_path(reader, hook["secret_file"], "notify.webhook.secret_file", base)
        timeout = DEFAULT_WEBHOOK_TIMEOUT
        if "timeout" in hook:
            timeout = reader.duration(hook["timeout"], "notify.webhook.timeout") or timeout
        if url is not None:
            webhook = WebhookSettings(url=url, secret_file=secret_file, timeout=timeout)
    pings: list[tuple[str, Secret]] = []
    if "healthchecks" in keys:
        by_policy = reader.mapping(keys["healthchecks"], "notify.healthchecks", None) or {}
        for name, value in by_policy.items():
            where = f"notify.healthchecks.{name}"
            if not POLICY_NAME.fullmatch(name):
                reader.problem(value, where, "is not a policy name")
                continue
            ping = _http_url(reader, value, where)
            if ping is not None:
                pings.append((name, ping))
    apprise: list[Secret] = []
    if "apprise" in keys:
        for index, item in enumerate(reader.string_list(keys["apprise"], "notify.apprise") or ()):
            if "://" not in item:
                reader.problem(
                    keys["apprise"],
                    f"notify.apprise[{index}]",
                    "is not an Apprise URL (SCHEMA://...)",
                )
            else:
                apprise.append(Secret(item))
    urls_file = None
    if "apprise_urls_file" in keys:
        urls_file = read_path(reader, keys["apprise_urls_file"], "notify.apprise_urls_file", base)
    return NotifySettings(
        webhook=webhook,
        healthchecks=tuple(pings),
        apprise=tuple(apprise),
        apprise_urls_file=urls_file,
    )
