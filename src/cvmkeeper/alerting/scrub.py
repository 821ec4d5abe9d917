"""Removes secrets from anything on its way to Sentry.

Two nets, because neither alone is enough: known secret *values* (registered at run time,
e.g. the SecretKey read from the environment or a credentials file, the Sentry DSN key),
replaced wherever they appear; and secret *shapes* (a Tencent ``AKID...`` SecretId,
``SecretKey=...``-like pairs, the key inside a ``scheme://key@host`` URL, the values of
dict keys named like secrets), replaced even when nobody registered them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

FILTERED = "[Filtered]"
#: Shorter values are not registered: replacing every ``key`` or ``1234`` would wreck the
#: event, and real secrets (SecretId 36, SecretKey 32, DSN keys 32 characters) are longer.
MIN_SECRET_LENGTH = 8

_SENSITIVE_WORDS = (
    r"secret[_-]?(?:id|key)|secret|token|password|passwd|authorization|signature"
    r"|credentials?|api[_-]?key|private[_-]?key|access[_-]?key|dsn"
)
_SENSITIVE_NAME = re.compile(_SENSITIVE_WORDS, re.IGNORECASE)
_SENSITIVE_PAIR = re.compile(
    rf"((?:{_SENSITIVE_WORDS})[\w-]*[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&}}\]]+)", re.IGNORECASE
)
_TENCENT_SECRET_ID = re.compile(r"\bAKID[0-9A-Za-z]{8,}")
_URL_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s@\"']+@", re.IGNORECASE)


class SecretScrubber:
    """Replaces registered secret values and secret-looking text in strings and structures."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()

    def register(self, value: str | None) -> None:
        """Treat ``value`` as a secret from now on (ignored when shorter than 8 characters)."""
        if value is None:
            return
        value = value.strip()
        if len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._values = self._values | {value}

    def register_environment(self, environ: Mapping[str, str]) -> None:
        """Register the value of every environment variable whose name says it is a secret."""
        for name, value in environ.items():
            if _SENSITIVE_NAME.search(name):
                self.register(value)

    def scrub_text(self, text: str) -> str:
        """``text`` with registered secrets and secret-looking parts replaced by ``[Filtered]``."""
        # Longest first, so a secret that contains another is replaced whole.
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, FILTERED)
        text = _TENCENT_SECRET_ID.sub(FILTERED, text)
        text = _URL_USERINFO.sub(rf"\1{FILTERED}@", text)
        return _SENSITIVE_PAIR.sub(rf"\1{FILTERED}", text)

    def scrub(self, data: Any) -> Any:
        """A copy of a JSON-like structure with every string scrubbed and the values of
        secret-named keys (``secret_key``, ``token``, ``dsn``, ...) replaced whole."""
        if isinstance(data, str):
            return self.scrub_text(data)
        if isinstance(data, Mapping):
            scrubbed: dict[Any, Any] = {}
            for key, value in data.items():
                clean_key = self.scrub_text(key) if isinstance(key, str) else key
                if isinstance(key, str) and _SENSITIVE_NAME.search(key) and value:
                    scrubbed[clean_key] = FILTERED
                else:
                    scrubbed[clean_key] = self.scrub(value)
            return scrubbed
        if isinstance(data, list | tuple):
            return [self.scrub(item) for item in data]
        return data
