"""Where log lines go, what they look like, and the guarantee that no secret is in them.

cvmkeeper logs to one stream (stderr by default) in one of three shapes:

- ``journal`` - under systemd, each line starts with the syslog priority journald reads
  (``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug, ``<2>`` critical) and has no
  timestamp, because journald adds its own. Every line of a multi-line message (a
  traceback) carries the prefix, so journald keeps its priority.
- ``text`` - for a terminal: local time with offset, level, logger, message.
- ``json`` - one object per line for log shippers: ``time`` (UTC, ISO 8601), ``level``,
  ``logger``, ``message``, ``exception`` when there is one, and every ``extra=`` field
  (``policy``, ``instance``, ``region`` ...) at the top level, with the ``policy``,
  ``region``, ``instance`` and ``slot`` the work in progress is about
  (``cvmkeeper.log_context``).

``auto`` picks ``journal`` when ``$JOURNAL_STREAM`` names the device and inode of the
stream (the check systemd documents in systemd.exec(5)), else ``text``.

Redaction. ``SecretRedactor`` is a filter on the handler: it replaces every registered
secret value with ``***`` in the message, its arguments, the exception text, stack info and
string ``extra`` fields, before any formatter sees them; the formatters redact their final
output once more. The credential loader and the Sentry setup call ``register_secret()`` for
each value they load. On top of registered values, these shapes are always redacted:

- credentials in a URL (``https://<key>@o1.ingest.sentry.io/2``, ``user:pass@host``);
- the value after ``SecretKey``/``secret_key``/``token``/``password``/``Signature`` and the
  like followed by ``=`` or ``:``;
- Tencent SecretIds (``AKID`` + 32 characters) are shortened to ``AKID***`` plus their last
  four characters. A SecretId alone grants nothing, and an administrator debugging
  ``AuthFailure`` needs to tell which key was used, but together with a leaked key it is a
  working credential pair, so the whole id is never printed.

A bare SecretKey has no recognisable shape (32 random characters, like many hashes), so it is
only caught when registered or when it follows one of the key names above.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO, get_args

from cvmkeeper.log_context import current_fields
from cvmkeeper.textsafe import escape, escape_layout

__all__ = [
    "LOG_FORMATS",
    "REDACTED",
    "LogFormat",
    "SecretRedactor",
    "redact",
    "register_secret",
    "setup_logging",
    "stream_is_journal",
]

LogFormat = Literal["auto", "text", "journal", "json"]
#: The accepted ``fmt`` values, e.g. for ``click.Choice(LOG_FORMATS)`` on ``--log-format``.
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)

REDACTED = "***"
# Values shorter than this are not registered: redacting every "abc" would make the log
# unreadable, and no real credential is this short.
MIN_SECRET_LENGTH = 6

_SECRET_ID = re.compile(r"\bAKID[A-Za-z0-9]{28,}([A-Za-z0-9]{4})\b")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@:]+(?::[^/\s@]*)?@")
_KEYED_SECRET = re.compile(
    r"(?P<key>\b[\w-]*(?:secret[_-]?key|secretkey|token|password|passwd|signature|dsn)"
    r"[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<value>[^\s\"',;&}]+)",
    re.IGNORECASE,
)


class _SecretRegistry:
    """The registered secret values and the one regular expression that matches them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        """Remember ``value``; values shorter than MIN_SECRET_LENGTH are ignored."""
        if len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            # Longest first, so a secret that contains another is replaced whole.
            alternatives = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))

    def redact(self, text: str) -> str:
        """``text`` with registered values and secret-shaped substrings replaced by ***."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        text = _URL_CREDENTIALS.sub(lambda m: m.group("scheme") + REDACTED + "@", text)
        text = _KEYED_SECRET.sub(lambda m: m.group("key") + REDACTED, text)
        return _SECRET_ID.sub(lambda m: "AKID" + REDACTED + m.group(1), text)


_registry = _SecretRegistry()


def register_secret(value: str | None) -> None:
    """Make sure ``value`` never appears in a log line from now on (None/short: ignored).

    Call it as soon as a secret is read: the SecretKey, a session token, the Sentry DSN
    (whose key part is also caught by shape), any password.
    """
    if value:
        _registry.add(value)
        stripped = value.strip()
        if stripped != value:  # a credential file's trailing newline must not hide the value
            _registry.add(stripped)


def redact(text: str) -> str:
    """``text`` with every registered secret and secret-shaped substring replaced by ***.

    Exposed so that other outputs (Sentry's ``before_send``, plan output) use the same rules.
    """
    return _registry.redact(text)


class SecretRedactor(logging.Filter):
    """A handler filter that removes secrets from a record before it is formatted.

    It renders ``msg % args`` once and redacts the result (so a secret passed as an
    argument is caught), renders and redacts the exception and stack text, and redacts
    string ``extra`` fields. It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always keep it."""
        try:
            message = record.getMessage()
        except Exception:  # bad format arguments: keep what we have, redacted
            message = f"{record.msg!s} (unformattable arguments: {record.args!r})"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in _extra_fields(record):
            if isinstance(value, str):
                setattr(record, key, redact(value))
        return True


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _extra_fields(record: logging.LogRecord) -> Iterable[tuple[str, Any]]:
    """The ``extra=`` fields of ``record``, in the order they were given. A field whose
    name starts with ``_`` is a marker for handlers and filters (for example
    ``executor.region.PROGRESS_RECORD``), not part of the line."""
    return [
        (k, v)
        for k, v in vars(record).items()
        if k not in _RECORD_ATTRIBUTES and not k.startswith("_")
    ]


def _extras_suffix(record: logging.LogRecord) -> str:
    """`` key=value`` for each extra field, for the text and journal formats."""
    return "".join(f" {key}={escape(str(value))}" for key, value in _extra_fields(record))


def _exception_text(record: logging.LogRecord) -> str:
    """The traceback (and stack info) of ``record``, or an empty string."""
    parts = []
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return escape_layout("\n".join(parts))


def _message(record: logging.LogRecord) -> str:
    """The record's message with control, zero-width and bidi characters escaped, newlines
    included: text from the API or a file can never start a log line of its own."""
    return escape(record.getMessage())


def journal_priority(levelno: int) -> int:
    """The syslog priority journald should file a record of ``levelno`` under."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class _JournalFormatter(logging.Formatter):
    """``<N>logger: message key=value``, every line prefixed, no timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` for journald's stream protocol."""
        text = f"{record.name}: {_message(record)}{_extras_suffix(record)}"
        details = _exception_text(record)
        if details:
            text = f"{text}\n{details}"
        prefix = f"<{journal_priority(record.levelno)}>"
        return redact("\n".join(prefix + line for line in text.splitlines() or [""]))


class _TextFormatter(logging.Formatter):
    """``2026-01-05 03:00:01.234+0800 INFO cvmkeeper.x: message key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` for a human at a terminal."""
        when = datetime.fromtimestamp(record.created).astimezone()
        stamp = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"
        stamp += when.strftime("%z")
        text = (
            f"{stamp} {record.levelname} {record.name}: {_message(record)}{_extras_suffix(record)}"
        )
        details = _exception_text(record)
        if details:
            text = f"{text}\n{details}"
        return redact(text)


class _JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra=`` fields at the top level.

    Strings are redacted field by field (not the finished line), so the output is always
    valid JSON whatever a redaction pattern matches.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single line of JSON."""
        when = datetime.fromtimestamp(record.created, tz=UTC)
        entry: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
        }
        details = _exception_text(record)
        if details:
            entry["exception"] = details
        for key, value in _extra_fields(record):
            entry[key if key not in entry else f"extra_{key}"] = value
        for key, value in current_fields().items():  # log_context: policy, region, ...
            entry.setdefault(key, value)
        return json.dumps(_redacted_json_value(entry), ensure_ascii=False)


def _redacted_json_value(value: Any) -> Any:
    """``value`` as JSON-ready data with every string redacted; unknown types become str."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {redact(str(k)): _redacted_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted_json_value(v) for v in value]
    return redact(str(value))


class _CvmkeeperHandler(logging.StreamHandler[TextIO]):
    """The handler ``setup_logging`` installs; marked so a second call replaces it."""


def stream_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``$JOURNAL_STREAM`` (``<device>:<inode>``) is the file behind ``stream``.

    systemd sets it for a service whose stdout/stderr is connected to journald; a process
    whose stderr was redirected since (or a child run from a terminal) does not match.
    """
    env = os.environ if environ is None else environ
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no real file descriptor (StringIO ...)
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def setup_logging(
    level: int | str = logging.INFO,
    fmt: LogFormat | str = "auto",
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Send all logging to ``stream`` (default stderr) in ``fmt``, with secrets redacted.

    Replaces the handler of an earlier call (so it is safe on reload), sets the root level,
    routes ``warnings`` through logging, and returns the installed handler. ``level`` is a
    number or a name such as ``"DEBUG"``; an unknown name or format raises ValueError.
    """
    if isinstance(level, str):
        named = logging.getLevelNamesMapping().get(level.upper())
        if named is None:
            raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
        level = named
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    target = sys.stderr if stream is None else stream
    if fmt == "auto":
        fmt = "journal" if stream_is_journal(target, environ) else "text"
    formatter: logging.Formatter = {
        "journal": _JournalFormatter,
        "text": _TextFormatter,
        "json": _JsonFormatter,
    }[fmt]()

    handler = _CvmkeeperHandler(target)
    handler.setFormatter(formatter)
    handler.addFilter(SecretRedactor())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CvmkeeperHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return handler
