"""Removes secrets from everything on its way to Sentry.

The rules for text are the log rules of ``cvmkeeper.logs`` (one secret registry for the
process: values given to ``register_secret`` plus secret shapes such as ``AKID...`` ids,
``SecretKey=...`` pairs and the key inside a ``scheme://key@host`` URL). This module adds
what only structured data has: a dict entry whose *key* names a secret (``secret_key``,
``token``, ``dsn`` ...) loses its whole value, whatever the value looks like.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cvmkeeper.logs import REDACTED, redact, register_secret

_SENSITIVE_NAME = re.compile(
    r"secret|token|password|passwd|authorization|signature|credential|api[_-]?key"
    r"|private[_-]?key|access[_-]?key|dsn",
    re.IGNORECASE,
)


def register_environment_secrets(environ: Mapping[str, str]) -> None:
    """Register the value of every environment variable whose name says it is a secret.

    ``TENCENTCLOUD_SECRET_KEY``, ``TENCENTCLOUD_SESSION_TOKEN``, ``SENTRY_DSN`` and the like:
    if any of them shows up in an exception message or a log line, it is caught by value.
    """
    for name, value in environ.items():
        if _SENSITIVE_NAME.search(name):
            register_secret(value)


def scrub(data: Any) -> Any:
    """A copy of the JSON-like ``data`` with every string redacted and the values of
    secret-named keys replaced whole; other values (numbers, None) are kept."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, Mapping):
        scrubbed: dict[Any, Any] = {}
        for key, value in data.items():
            if isinstance(key, str):
                clean_key = redact(key)
                scrubbed[clean_key] = (
                    REDACTED if value and _SENSITIVE_NAME.search(key) else scrub(value)
                )
            else:
                scrubbed[key] = scrub(value)
        return scrubbed
    if isinstance(data, list | tuple):
        return [scrub(item) for item in data]
    return data
