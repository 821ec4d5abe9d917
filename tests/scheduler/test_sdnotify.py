"""sd_notify against a real AF_UNIX datagram socket bound by the test, as systemd binds one."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvmkeeper.scheduler.sdnotify import Notifier


class Listener:
    """A bound datagram socket standing in for systemd's notify socket."""

    def __init__(self, sock: socket.socket, notify_socket: str) -> None:
        self.sock = sock
        self.notify_socket = notify_socket

    def receive(self) -> list[str]:
        """The next datagram as its KEY=VALUE lines (fails the test after 5 s)."""
        self.sock.settimeout(5)
        return self.sock.recv(4096).decode("utf-8").split("\n")

    def nothing_pending(self) -> bool:
        """True when no datagram is waiting."""
        self.sock.settimeout(0)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        return False


@pytest.fixture
def path_listener(tmp_path: Path) -> Iterator[Listener]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield Listener(sock, str(path))


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    name = f"cvmkeeper-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        yield Listener(sock, "@" + name)


@pytest.fixture(params=["path", "abstract"])
def listener(
    request: pytest.FixtureRequest, path_listener: Listener, abstract_listener: Listener
) -> Listener:
    return path_listener if request.param == "path" else abstract_listener


def test_ready_arrives(listener: Listener) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": listener.notify_socket})
    assert notifier.enabled
    assert notifier.ready() is True
    assert listener.receive() == ["READY=1"]


def test_ready_with_status_is_one_datagram(listener: Listener) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": listener.notify_socket})
    assert notifier.ready(status="3 policies loaded")
    assert listener.receive() == ["READY=1", "STATUS=3 policies loaded"]
    assert listener.nothing_pending()


def test_each_message_has_its_systemd_spelling(listener: Listener) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": listener.notify_socket})
    assert notifier.stopping()
    assert listener.receive() == ["STOPPING=1"]
    assert notifier.watchdog()
    assert listener.receive() == ["WATCHDOG=1"]
    assert notifier.status("next run 2026-01-01 03:00 UTC")
    assert listener.receive() == ["STATUS=next run 2026-01-01 03:00 UTC"]


def test_reloading_carries_the_monotonic_clock_in_microseconds(listener: Listener) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": listener.notify_socket})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = listener.receive()
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_status_text_is_flattened_to_one_line(path_listener: Listener) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": path_listener.notify_socket})
    assert notifier.status("last run failed:\nInvalidInstanceId.NotFound")
    assert path_listener.receive() == ["STATUS=last run failed: InvalidInstanceId.NotFound"]


def test_notify_rejects_assignments_that_would_break_the_protocol(
    path_listener: Listener,
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": path_listener.notify_socket})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        notifier.notify("READY=1\nSTOPPING=1")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        notifier.notify("READY")
    assert path_listener.nothing_pending()


@pytest.mark.parametrize("value", [None, "", "relative/path", "vsock:2:1234", "@"])
def test_without_a_usable_socket_every_call_is_a_quiet_no_op(value: str | None) -> None:
    env = {} if value is None else {"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "1000000"}
    notifier = Notifier(env)
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.reloading() is False
    assert notifier.stopping() is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.watchdog_interval() is None


def test_default_environment_is_os_environ(
    monkeypatch: pytest.MonkeyPatch, path_listener: Listener
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", path_listener.notify_socket)
    assert Notifier().ready()
    assert path_listener.receive() == ["READY=1"]


def test_a_vanished_manager_never_raises_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gone"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
    path.unlink()  # systemd went away: nothing listens at the path any more
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    with caplog.at_level(logging.DEBUG, logger="cvmkeeper.scheduler.sdnotify"):
        results = [notifier.ready(), notifier.watchdog(), notifier.stopping()]
    assert results == [False, False, False]
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.DEBUG


def test_a_listener_that_comes_back_receives_again(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    assert notifier.ready() is False  # not bound yet
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert notifier.watchdog() is True
        sock.settimeout(5)
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_watchdog_interval_in_seconds(path_listener: Listener) -> None:
    env = {"NOTIFY_SOCKET": path_listener.notify_socket, "WATCHDOG_USEC": "30000000"}
    assert Notifier(env).watchdog_interval() == 30.0
    env["WATCHDOG_PID"] = str(os.getpid())
    assert Notifier(env).watchdog_interval() == 30.0


@pytest.mark.parametrize(
    ("usec", "pid"),
    [
        ("", None),  # WatchdogSec= not set
        ("0", None),
        ("-5", None),
        ("soon", None),
        ("30000000", "1"),  # the watchdog belongs to another process (we inherited it)
    ],
)
def test_watchdog_interval_is_none_when_not_ours(
    path_listener: Listener, usec: str, pid: str | None
) -> None:
    env = {"NOTIFY_SOCKET": path_listener.notify_socket, "WATCHDOG_USEC": usec}
    if pid is not None:
        env["WATCHDOG_PID"] = pid
    assert Notifier(env).watchdog_interval() is None
