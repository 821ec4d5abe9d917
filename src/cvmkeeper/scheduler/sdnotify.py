"""Tell systemd how the daemon is doing: the sd_notify protocol, self-contained.

A ``Type=notify`` service reports readiness, reloads, shutdown, a one-line status and
watchdog pings by sending ``KEY=VALUE`` lines in one datagram to the AF_UNIX socket named in
``$NOTIFY_SOCKET`` (see sd_notify(3)). The protocol is small enough that a dependency (or
libsystemd through ctypes) would cost more than it saves, so it lives here.

``$NOTIFY_SOCKET`` is either a filesystem path (``/run/systemd/notify``) or an abstract
socket name written with a leading ``@``. When it is unset - a terminal, a test, a container
without systemd - every method is a no-op that returns ``False``. Sending never raises: a
service must not die because its supervisor went away, so a failed send is logged once at
debug level and then ignored.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier"]

_log = logging.getLogger(__name__)


def _socket_address(notify_socket: str) -> str | None:
    """Turn ``$NOTIFY_SOCKET`` into an address for ``sendto``, or None when unusable.

    ``@name`` is the abstract namespace (Linux spells it with a leading NUL byte); an
    absolute path is a filesystem socket. Anything else (``vsock:`` of systemd 254+, a
    relative path) is not something this daemon can reach.
    """
    if notify_socket.startswith("@") and len(notify_socket) > 1:
        return "\0" + notify_socket[1:]
    if notify_socket.startswith("/"):
        return notify_socket
    return None


class Notifier:
    """Sends sd_notify messages to the service manager named by ``$NOTIFY_SOCKET``.

    Build one at start-up (``Notifier()`` reads ``os.environ``; tests pass their own
    mapping) and call the methods below at the matching moments. Each method returns True
    when the datagram was delivered and False when notification is off or failed.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` from ``environ``."""
        env = os.environ if environ is None else environ
        raw_socket = env.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(raw_socket) if raw_socket else None
        if raw_socket and self._address is None:
            _log.debug(
                "NOTIFY_SOCKET=%r is not a path or @abstract name; not notifying", raw_socket
            )
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._send_failure_logged = False

    @property
    def enabled(self) -> bool:
        """True when a service manager is listening, i.e. messages will be sent."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments as one datagram; the primitive the helpers use.

        Each assignment must be one line (the protocol is newline-separated); use
        ``status()`` for free text, which flattens newlines itself.
        """
        if self._address is None:
            return False
        for assignment in assignments:
            if "=" not in assignment or "\n" in assignment:
                raise ValueError(
                    f"not a single-line KEY=VALUE sd_notify assignment: {assignment!r}"
                )
        payload = "\n".join(assignments).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(payload, self._address)
        except OSError as error:
            if not self._send_failure_logged:
                self._send_failure_logged = True
                _log.debug(
                    "sd_notify to %r failed (%s); further failures are not logged",
                    self._address.replace("\0", "@"),
                    error,
                )
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Send ``READY=1``: start-up (or a reload) is complete; optionally set the status."""
        if status is None:
            return self.notify("READY=1")
        return self.notify("READY=1", _status_assignment(status))

    def reloading(self) -> bool:
        """Send ``RELOADING=1`` with ``MONOTONIC_USEC``: a reload began; ``ready()`` ends it.

        systemd 253+ (``Type=notify-reload``) requires the CLOCK_MONOTONIC timestamp to tie
        the message to the reload it asked for; systemd 252 ignores it.
        """
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> bool:
        """Send ``STOPPING=1``: shutdown began, so systemd shows "deactivating"."""
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """Send ``STATUS=<text>``, the line ``systemctl status`` shows (newlines flattened)."""
        return self.notify(_status_assignment(text))

    def watchdog(self) -> bool:
        """Send ``WATCHDOG=1``, the keep-alive ping that ``WatchdogSec=`` expects."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds systemd waits for a ping before killing us, or None if no watchdog.

        Mirrors sd_watchdog_enabled(3): ``WATCHDOG_USEC`` must be a positive integer and,
        when ``WATCHDOG_PID`` is set, it must be this process (a child inheriting the
        environment is not the one being watched). Ping at least every half interval.
        """
        if self._address is None or not self._watchdog_usec:
            return None
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 1_000_000


def _status_assignment(text: str) -> str:
    """``STATUS=`` with ``text`` on one line, as the protocol needs."""
    return "STATUS=" + " ".join(text.splitlines())
