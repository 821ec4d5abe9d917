"""The daemon's service loop in-process: sd_notify over a real socket, reload, stop, watchdog.

The daemon runs on a thread with a recording runner (so no cloud is needed) and a
``Notifier`` pointed at a datagram socket the test binds, as systemd binds its notify
socket. Signals are exercised by the end-to-end tests; here the same requests come in
through ``request_reload()`` / ``request_stop()``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import RecordingRunner, policy_text, write_setup

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.executor.runner import RegionLocks
from cvmkeeper.scheduler.sdnotify import Notifier
from cvmkeeper.scheduler.service import EXIT_CONFIG, EXIT_OK, Daemon
from cvmkeeper.scheduler.state import read_state
from support.http_capture import http_capture


class NotifySocket:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def next_with(self, key: str, timeout: float = 10.0) -> dict[str, str]:
        """The next message that has ``key`` (earlier ones are kept in ``messages``)."""
        self.sock.settimeout(timeout)
        for _ in range(200):
            data = self.sock.recv(4096).decode("utf-8")
            message = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
            self.messages.append(message)
            if key in message:
                return message
        raise AssertionError(f"no {key} in 200 messages")


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.sock.close()


class Running:
    """A daemon on a thread, its alerter and its runner."""

    def __init__(self, daemon: Daemon, alerter: RecordingAlerter, runner: RecordingRunner):
        self.daemon = daemon
        self.alerter = alerter
        self.runner = runner
        self.status: int | None = None
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        self.status = self.daemon.run()

    def stop(self) -> int | None:
        self.daemon.request_stop()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()
        self.daemon.close()
        return self.status


def start(
    config: Path,
    notify: NotifySocket,
    runner: RecordingRunner,
    environ: dict[str, str] | None = None,
) -> Running:
    alerter = RecordingAlerter()
    clients: list[Any] = []

    def client_factory(config: Any) -> str:
        clients.append(config)
        return f"client-{len(clients)}"

    daemon = Daemon(
        config,
        client_factory=client_factory,
        runner=runner,
        region_locks=RegionLocks(),
        alerter_factory=lambda settings: alerter,
        notifier=Notifier({"NOTIFY_SOCKET": str(notify.path), **(environ or {})}),
        install_signals=False,
        stop_timeout=10,
    )
    running = Running(daemon, alerter, runner)
    running.thread.start()
    return running


def test_ready_after_start_catch_up_started_then_stopping(
    tmp_path: Path, notify: NotifySocket
) -> None:
    config = write_setup(tmp_path, {"web": policy_text("web", "every: 1h")})
    runner = RecordingRunner()
    running = start(config, notify, runner)
    try:
        ready = notify.next_with("READY")
        assert ready["READY"] == "1"
        assert ready["STATUS"].startswith("next: web at ")
        assert runner.wait_started()  # the catch-up run
    finally:
        assert running.stop() == EXIT_OK
    notify.next_with("STOPPING")
    (catch_up,) = runner.snapshot()
    assert catch_up.policy_names is None
    assert read_state(tmp_path / "state" / "daemon-state.json").policies["web"].kind == "catch-up"


def test_ready_does_not_wait_for_a_long_catch_up_and_stop_sets_the_stop_event(
    tmp_path: Path, notify: NotifySocket
) -> None:
    config = write_setup(tmp_path, {"web": policy_text("web", "every: 1h")})
    runner = RecordingRunner(gate=threading.Event())  # a catch-up that never ends by itself
    running = start(config, notify, runner)
    try:
        assert runner.wait_started()
        assert notify.next_with("READY")["READY"] == "1"
    finally:
        assert running.stop() == EXIT_OK
    (call,) = runner.snapshot()
    assert call.stop_was_set_at_end  # the run saw the stop request and ended at a safe point


def test_reload_with_a_changed_policy_replaces_the_schedule(
    tmp_path: Path, notify: NotifySocket
) -> None:
    config = write_setup(tmp_path, {"web": policy_text("web", "every: 1h")})
    runner = RecordingRunner()
    running = start(config, notify, runner)
    try:
        notify.next_with("READY")
        assert runner.wait_started()
        write_setup(tmp_path, {"web": policy_text("web-nightly", 'cron: "0 2 * * *"')})
        running.daemon.request_reload()
        reloading = notify.next_with("RELOADING")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        ready = notify.next_with("READY")
        assert ready["STATUS"].startswith("next: web-nightly at ")
        assert "02:00:00Z" in ready["STATUS"]
        assert runner.wait_started()  # a catch-up after the reload, with the new policies
    finally:
        running.stop()
    calls = runner.snapshot()
    assert [p.name for p in calls[-1].setup.policies] == ["web-nightly"]
    assert calls[-1].client == "client-1"  # the cloud settings did not change: same client


def test_reload_with_a_broken_policy_keeps_the_old_one_and_names_file_and_line(
    tmp_path: Path, notify: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_setup(tmp_path, {"web": policy_text("web", "every: 1h")})
    runner = RecordingRunner()
    running = start(config, notify, runner)
    try:
        first_ready = notify.next_with("READY")
        assert runner.wait_started()
        broken = tmp_path / "policies" / "web.yaml"
        broken.write_text(policy_text("web", "every: 1x"), encoding="utf-8")
        with caplog.at_level(logging.ERROR, logger="cvmkeeper.scheduler.service"):
            running.daemon.request_reload()
            notify.next_with("RELOADING")
            ready = notify.next_with("READY")
        assert "reload rejected" in ready["STATUS"]
        assert ready["STATUS"].split(";")[0] == first_ready["STATUS"].split(";")[0]
    finally:
        running.stop()
    assert f"{broken}:4:" in caplog.text or "web.yaml:4:" in caplog.text
    assert "keeping the running config" in caplog.text
    (alert,) = running.alerter.errors
    assert (alert.policy, alert.action) == ("config", "reload")
    assert "web.yaml:4:" in alert.message
    assert len(runner.snapshot()) == 1  # no catch-up for a rejected reload


def test_the_watchdog_is_pinged_while_healthy(tmp_path: Path, notify: NotifySocket) -> None:
    config = write_setup(tmp_path, {"web": policy_text("web", "every: 1h")})
    runner = RecordingRunner()
    running = start(
        config,
        notify,
        runner,
        environ={"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())},
    )
    try:
        notify.next_with("READY")
        notify.next_with("WATCHDOG")
        notify.next_with("WATCHDOG")
    finally:
        running.stop()


def test_an_invalid_config_at_start_exits_2_and_never_says_ready(
    tmp_path: Path, notify: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_setup(tmp_path, {"web": policy_text("web", "every: soon")})
    runner = RecordingRunner()
    daemon = Daemon(
        config,
        client_factory=lambda config: "client",
        runner=runner,
        region_locks=RegionLocks(),
        alerter_factory=lambda settings: RecordingAlerter(),
        notifier=Notifier({"NOTIFY_SOCKET": str(notify.path)}),
        install_signals=False,
    )
    with caplog.at_level(logging.ERROR):
        assert daemon.run() == EXIT_CONFIG
    daemon.close()
    assert "web.yaml:4:" in caplog.text
    assert runner.snapshot() == []
    notify.sock.settimeout(0)
    with pytest.raises(BlockingIOError):
        notify.sock.recv(4096)


def test_a_bad_policy_file_at_start_does_not_stop_the_others_and_status_names_it(
    tmp_path: Path, notify: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    """issue 19: one bad policy file beside good ones is reported, never fatal."""
    config = write_setup(
        tmp_path, {"web": policy_text("web", "every: 1h"), "db": policy_text("db", "every: 1x")}
    )
    runner = RecordingRunner()
    with caplog.at_level(logging.ERROR, logger="cvmkeeper.scheduler.service"):
        running = start(config, notify, runner)
        try:
            ready = notify.next_with("READY")
            assert runner.wait_started()
        finally:
            assert running.stop() == EXIT_OK
    assert "BROKEN policy file(s): " in ready["STATUS"] and "db.yaml" in ready["STATUS"]
    assert "db.yaml:4:" in caplog.text
    [catch_up] = runner.snapshot()
    assert [p.name for p in catch_up.setup.policies] == ["web"]
    assert [b.name for b in catch_up.setup.broken] == ["db"]


def test_a_reload_where_one_policy_file_became_bad_keeps_its_old_version(
    tmp_path: Path, notify: NotifySocket
) -> None:
    config = write_setup(
        tmp_path, {"web": policy_text("web", "every: 1h"), "db": policy_text("db", "every: 2h")}
    )
    runner = RecordingRunner()
    running = start(config, notify, runner)
    try:
        notify.next_with("READY")
        assert runner.wait_started()
        (tmp_path / "policies" / "db.yaml").write_text(policy_text("db", "every: 2x"))
        (tmp_path / "policies" / "web.yaml").write_text(policy_text("web", "every: 3h"))
        running.daemon.request_reload()
        notify.next_with("RELOADING")
        ready = notify.next_with("READY")
        assert runner.wait_started()  # the reload's catch-up: the reload was accepted
    finally:
        running.stop()
    assert "reload rejected" not in ready["STATUS"]
    assert "db.yaml (old version kept)" in ready["STATUS"]
    setup = runner.snapshot()[-1].setup
    assert [p.name for p in setup.policies] == ["web", "db"]
    assert "3h" in setup.policy("web").schedules[0].describe()  # the good change applies
    assert "2h" in setup.policy("db").schedules[0].describe()  # the old db keeps running
    assert [(b.name, b.stand_in) for b in setup.broken] == [("db", True)]


def test_a_bad_daemon_config_file_at_start_exits_2(
    tmp_path: Path, notify: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_setup(tmp_path, {"web": policy_text("web", "every: 1h")})
    config.write_text(config.read_text() + "image_quota: lots\n")
    daemon = Daemon(
        config,
        client_factory=lambda config: "client",
        runner=RecordingRunner(),
        region_locks=RegionLocks(),
        alerter_factory=lambda settings: RecordingAlerter(),
        notifier=Notifier({"NOTIFY_SOCKET": str(notify.path)}),
        install_signals=False,
    )
    with caplog.at_level(logging.ERROR):
        assert daemon.run() == EXIT_CONFIG
    daemon.close()
    assert "cvmkeeper.yaml:4:" in caplog.text and "image_quota" in caplog.text


def scrape(daemon: Daemon) -> str:
    """The daemon's /metrics, over HTTP on 127.0.0.1."""
    host, port = daemon._exporter.address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as got:
        return str(got.read().decode())


def test_broken_policy_files_are_in_the_state_file_and_the_metrics_until_fixed(
    tmp_path: Path, notify: NotifySocket
) -> None:
    """issue 19: `status` on the host and Prometheus see the files the daemon runs without,
    set at start and cleared by the reload that fixes them."""
    pytest.importorskip("prometheus_client")
    config = write_setup(
        tmp_path,
        {"web": policy_text("web", "every: 1h"), "db": policy_text("db", "every: 1x")},
        extra_config='metrics: {listen: "127.0.0.1:0"}\n',
    )
    state_file = tmp_path / "state" / "daemon-state.json"
    runner = RecordingRunner()
    running = start(config, notify, runner)
    try:
        notify.next_with("READY")
        [record] = read_state(state_file).broken_files
        assert record.file.endswith("db.yaml") and record.policy == "db"
        assert not record.old_version_kept and "db.yaml:4:" in record.problems[0]
        text = scrape(running.daemon)
        assert "cvmkeeper_policy_files_broken 1.0" in text
        assert re.search(
            r'cvmkeeper_policy_file_broken\{file="[^"]*db\.yaml",'
            r'old_version_kept="no"\} 1\.0',
            text,
        )
        (tmp_path / "policies" / "db.yaml").write_text(policy_text("db", "every: 2h"))
        running.daemon.request_reload()
        notify.next_with("RELOADING")
        notify.next_with("READY")
        assert read_state(state_file).broken_files == ()
        text = scrape(running.daemon)
        assert "cvmkeeper_policy_files_broken 0.0" in text
        assert "db.yaml" not in text
    finally:
        running.stop()


def test_a_dead_webhook_is_in_the_state_file_and_the_metrics_by_channel_only(
    tmp_path: Path, notify: NotifySocket
) -> None:
    """issue #17: a dead webhook showed only in the journal. The daemon's real webhook
    channel posts a rejected reload's alert to a server answering 500; the failure is in
    the state file (for `status`) and in the metrics, under channel="webhook", never the
    URL (it holds the token)."""
    pytest.importorskip("prometheus_client")
    token = "hook-t0ken-0123456789abcdef"
    with http_capture(statuses=[500] * 3) as server:
        config = write_setup(
            tmp_path,
            {"web": policy_text("web", "every: 1h")},
            extra_config='metrics: {listen: "127.0.0.1:0"}\n'
            f'notify: {{webhook: {{url: "{server.url}/hooks/{token}"}}}}\n',
        )
        state_file = tmp_path / "state" / "daemon-state.json"
        running = start(config, notify, RecordingRunner())
        try:
            notify.next_with("READY")
            assert 'cvmkeeper_notification_failures_total{channel="webhook"} 0.0' in scrape(
                running.daemon
            )
            (tmp_path / "policies" / "web.yaml").write_text(policy_text("web", "every: 1x"))
            running.daemon.request_reload()  # rejected: alerted to the webhook
            notify.next_with("RELOADING")
            notify.next_with("READY")
            server.wait_for(3)  # the alert and its two retries, each answered 500
            failures = {}
            for _ in range(100):  # bounded: the failure is recorded after the last attempt
                failures = dict(read_state(state_file).notification_failures)
                if failures:
                    break
                time.sleep(0.05)
            text = scrape(running.daemon)
        finally:
            running.stop()
    assert list(failures) == ["webhook"]
    assert "HTTP 500" in failures["webhook"].reason
    assert 'cvmkeeper_notification_failures_total{channel="webhook"} 1.0' in text
    assert 'cvmkeeper_notification_last_failure_timestamp_seconds{channel="webhook"}' in text
    stored = state_file.read_text()
    assert token not in stored and token not in text and server.url not in text
