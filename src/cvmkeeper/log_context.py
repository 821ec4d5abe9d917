"""The policy, region, instance and slot a log line is about, as structured fields.

``--log-format json`` promises ``policy``, ``region``, ``instance`` and ``slot`` fields so
that a log shipper needs no regular expressions (``cvmkeeper.logs``). Passing ``extra=`` to
every call would mean threading those values through every function that logs; instead
the code that knows them (the daemon's job for a policy and slot, the run's thread for a
region, a create for an instance) opens ``log_fields(...)`` around its work, and the JSON
formatter adds the fields in force to each record. ``contextvars`` keeps them per thread;
``in_context`` carries the fields of the starting thread into a new one.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

__all__ = ["FIELDS", "current_fields", "in_context", "log_fields"]

#: the fields this module sets, in the order a JSON line shows them
FIELDS = ("policy", "region", "instance", "slot")

_fields: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "cvmkeeper_log_fields", default=None
)
R = TypeVar("R")


def _text(value: Any) -> str:
    """A field value as text: a datetime as UTC ``...Z``, a sequence of names joined."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(sorted(str(v) for v in value))
    return str(value)


@contextlib.contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (``None`` values and empty sequences are skipped) to every log line
    of this thread until the block ends; inner blocks override outer ones."""
    given = {
        key: _text(value)
        for key, value in fields.items()
        if value is not None and value not in ((), [])
    }
    token = _fields.set({**(_fields.get() or {}), **given})
    try:
        yield
    finally:
        _fields.reset(token)


def current_fields() -> dict[str, str]:
    """The fields in force in this thread now."""
    return dict(_fields.get() or {})


def in_context(function: Callable[..., R]) -> Callable[..., R]:
    """``function`` bound to a copy of the caller's context, for ``threading.Thread``."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(function, *args, **kwargs)
