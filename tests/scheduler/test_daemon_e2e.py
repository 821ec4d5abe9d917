"""``cvmkeeper daemon`` as a real process against the emulator, as systemd would run it.

Each test serves an emulator (real HTTP on 127.0.0.1, the real SDK on the daemon's side),
binds an AF_UNIX datagram socket and passes it as ``$NOTIFY_SOCKET``, starts the daemon
as a subprocess and talks to it with real signals. The emulator's own state is the
oracle: which images exist, in which state, how many per slot. Nothing speeds the clock:
the scheduled-slot test uses an ``every: 1m`` schedule and so waits for the next minute.

The verdict never depends on the time of day: a catch-up's slot comes from a daily UTC
cron placed 30 minutes before the test starts (``daily_slot_before``), so it is known in
advance and no other slot fires while the test runs, whatever boundary it crosses; a
scheduled slot is the one the daemon reports. ``make test-clock`` runs these tests under
shifted clocks (an hour's last minute, New Year, a DST change) to keep it so.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import daily_slot_before, policy_text, write_setup

from cvmkeeper.core.naming import image_name
from cvmkeeper.emulator.profiles import with_env_profile
from cvmkeeper.emulator.server import RunningEmulator, running_emulator

pytestmark = [pytest.mark.slow, pytest.mark.wallclock]

INSTANCE = "ins-6pb6lrmy"
REGION = "ap-guangzhou"
SECRET_ID = "AKIDE2E00000000000000000000000000000"
SECRET_KEY = "e2e-secret-key-0123456789"
SCHEDULED_RUN = re.compile(r"running web for slot (\S+)")


def fleet(create_seconds: float) -> dict[str, Any]:
    """One region, one tagged instance; images take ``create_seconds`` to become NORMAL.

    ``CVMKEEPER_EMULATOR_PROFILE`` names the profile (the reliability suite reuses this).
    """
    return with_env_profile(
        {
            "credentials": {"secret_id": SECRET_ID, "secret_key": SECRET_KEY},
            "limits": "legacy",
            "latency_ms": 0,
            "seed": 3,
            "timing": {
                "create_seconds": create_seconds,
                "create_failed_probability": 0.0,
                "stop_seconds": 0.5,
                "start_seconds": 0.5,
                "sync_seconds": 1.0,
            },
            "regions": {
                REGION: {
                    "quota": 10,
                    "instances": [
                        {
                            "id": INSTANCE,
                            "name": "web-1",
                            "state": "RUNNING",
                            "zone": "ap-guangzhou-3",
                            "tags": {"backup": "daily"},
                        }
                    ],
                }
            },
        }
    )


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / every) + 2):
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            break
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def images(emu: RunningEmulator) -> list[dict[str, Any]]:
    """Every image of the region, as the emulator holds it."""
    return list(emu.core.state()["regions"][REGION]["images"])


def image_states(emu: RunningEmulator) -> dict[str, str]:
    """Image name -> state."""
    return {i["ImageName"]: i["ImageState"] for i in images(emu)}


def assert_one_image_per_slot(emu: RunningEmulator) -> None:
    counts = Counter(i["ImageName"] for i in images(emu))
    assert counts and all(n == 1 for n in counts.values()), counts


def slot_name_time(name: str) -> str:
    """``261127-0300-6pb6lrmy`` -> ``2026-11-27T03:00`` (the slot its name carries)."""
    return f"{datetime.strptime(name[:11], '%y%m%d-%H%M'):%Y-%m-%dT%H:%M}"


class Notifications:
    """The test's end of ``$NOTIFY_SOCKET``: every datagram the daemon sent, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.received: list[dict[str, str]] = []

    def expect(self, key: str, timeout: float = 20.0) -> dict[str, str]:
        """The next datagram carrying ``key`` (others are kept in ``received``)."""
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096).decode("utf-8")
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
            self.received.append(message)
            if key in message:
                return message
        raise AssertionError(f"no {key}= from the daemon in {timeout}s; got {self.received}")


class DaemonProcess:
    """``python -m cvmkeeper daemon`` with its stderr in a file."""

    def __init__(self, config: Path, notify: Notifications, log: Path) -> None:
        self.log = log
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(notify.path),
            "TENCENTCLOUD_SECRET_ID": SECRET_ID,
            "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("SENTRY_DSN", "CREDENTIALS_DIRECTORY", "JOURNAL_STREAM", "WATCHDOG_USEC"):
            env.pop(name, None)
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cvmkeeper",
                    "daemon",
                    "--config",
                    str(config),
                    "--log-format",
                    "text",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
            )

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[[Path], tuple[DaemonProcess, Notifications]]]:
    """Start daemons (each with its own notify socket); every one is killed after the test."""
    started: list[DaemonProcess] = []
    sockets: list[Notifications] = []

    def start(config: Path) -> tuple[DaemonProcess, Notifications]:
        notify = Notifications(tmp_path / f"notify-{len(sockets)}.sock")
        sockets.append(notify)
        process = DaemonProcess(config, notify, tmp_path / f"daemon-{len(started)}.log")
        started.append(process)
        return process, notify

    yield start
    for process in started:
        process.kill()
    for notify in sockets:
        notify.sock.close()


def config_for(tmp_path: Path, emu: RunningEmulator, schedule: str) -> Path:
    return write_setup(
        tmp_path,
        {"web": policy_text("web", schedule)},
        extra_config=(
            f'cloud: {{endpoint: "{emu.endpoint}", scheme: http}}\n'
            "credentials: {cvm_role: false}\n"
            "api: {poll_interval: 1s}\n"
        ),
    )


def test_ready_catch_up_reloads_and_a_scheduled_slot(
    tmp_path: Path, start_daemon: Callable[[Path], tuple[DaemonProcess, Notifications]]
) -> None:
    with running_emulator(fleet(create_seconds=1.0)) as emu:
        schedule, latest = daily_slot_before(datetime.now(UTC))
        config = config_for(tmp_path, emu, schedule)
        daemon, notify = start_daemon(config)

        ready = notify.expect("READY")
        assert ready["READY"] == "1"
        assert ready["STATUS"].startswith("next: web at ")

        # Catch-up: the latest daily slot has no image yet, so it is made at once.
        missed = image_name(INSTANCE, latest)
        wait_for(f"{missed} NORMAL", lambda: image_states(emu).get(missed) == "NORMAL", 30)
        wait_for("catch-up to finish", lambda: "catch-up finished: ok" in daemon.text(), 10)

        # A broken policy: rejected with file and line, the old schedule keeps running.
        policy_file = tmp_path / "policies" / "web.yaml"
        policy_file.write_text(policy_text("web", "every: 1x"), encoding="utf-8")
        daemon.signal(signal.SIGHUP)
        notify.expect("RELOADING")
        rejected = notify.expect("READY")
        assert "reload rejected" in rejected["STATUS"]
        assert rejected["STATUS"].startswith("next: web at ")
        wait_for(
            "the rejection in the log", lambda: "keeping the running config" in daemon.text(), 10
        )
        assert "web.yaml:4:" in daemon.text()
        assert daemon.process.poll() is None

        # A changed policy: every minute. RELOADING=1 then READY=1, and the new schedule
        # fires at the next minute (the reload's catch-up makes the current minute).
        policy_file.write_text(policy_text("web", "every: 1m"), encoding="utf-8")
        daemon.signal(signal.SIGHUP)
        reloading = notify.expect("RELOADING")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        reloaded = notify.expect("READY")
        reloaded_at = datetime.now(UTC)
        log_offset = len(daemon.text())  # an hourly run of the old schedule is not the proof
        assert "reload rejected" not in reloaded["STATUS"]
        # The first slot the new job fires (not the catch-up, which logs no "running").
        fired = wait_for(
            "a scheduled run of the new schedule",
            lambda: SCHEDULED_RUN.search(daemon.text(), log_offset),
            90,
        )
        slot = datetime.strptime(fired.group(1), "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
        assert slot > reloaded_at - timedelta(minutes=1)
        scheduled = image_name(INSTANCE, slot)
        wait_for(f"{scheduled} NORMAL", lambda: image_states(emu).get(scheduled) == "NORMAL", 30)
        wait_for(
            "the scheduled run's result",
            lambda: f"web slot {fired.group(1)}: ok" in daemon.text(),
            30,
        )

        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        notify.expect("STOPPING")
        assert_one_image_per_slot(emu)
        assert SECRET_KEY not in daemon.text()


def wait_until_creating(emu: RunningEmulator, slot: datetime) -> str:
    """Wait for the catch-up's image of ``slot`` to be sent; return its name."""
    creating = wait_for(
        "an image CREATING",
        lambda: [name for name, state in image_states(emu).items() if state == "CREATING"],
        30,
        0.05,
    )
    assert creating == [image_name(INSTANCE, slot)], creating
    return str(creating[0])


def test_sigterm_during_a_run_exits_0_and_the_next_start_finishes_the_slot(
    tmp_path: Path, start_daemon: Callable[[Path], tuple[DaemonProcess, Notifications]]
) -> None:
    with running_emulator(fleet(create_seconds=6.0)) as emu:
        schedule, slot = daily_slot_before(datetime.now(UTC))
        config = config_for(tmp_path, emu, schedule)
        daemon, notify = start_daemon(config)
        notify.expect("READY")
        slot_name = wait_until_creating(emu, slot)  # the catch-up run waits for it

        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        notify.expect("STOPPING")
        assert image_states(emu) == {slot_name: "CREATING"}  # sent, recorded, not finished

        again, notify_again = start_daemon(config)
        notify_again.expect("READY")
        wait_for(f"{slot_name} NORMAL", lambda: image_states(emu).get(slot_name) == "NORMAL", 30)
        wait_for(
            "the second catch-up to finish",
            lambda: "catch-up finished: ok" in again.text(),
            30,
        )
        stored = json.loads((tmp_path / "state" / "daemon-state.json").read_text())
        assert stored["policies"]["web"]["result"] == "ok"
        assert stored["policies"]["web"]["kind"] == "catch-up"
        assert stored["policies"]["web"]["slot"].startswith(slot_name_time(slot_name))
        again.signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0
        assert_one_image_per_slot(emu)
        assert list(image_states(emu)) == [slot_name]


def test_sigkill_mid_run_then_restart_ends_with_exactly_one_image_per_slot(
    tmp_path: Path, start_daemon: Callable[[Path], tuple[DaemonProcess, Notifications]]
) -> None:
    with running_emulator(fleet(create_seconds=4.0)) as emu:
        schedule, slot = daily_slot_before(datetime.now(UTC))
        config = config_for(tmp_path, emu, schedule)
        daemon, notify = start_daemon(config)
        notify.expect("READY")
        slot_name = wait_until_creating(emu, slot)

        daemon.process.kill()  # SIGKILL: no handler, no cleanup
        assert daemon.wait(timeout=10) == -signal.SIGKILL

        again, notify_again = start_daemon(config)
        notify_again.expect("READY")
        wait_for(f"{slot_name} NORMAL", lambda: image_states(emu).get(slot_name) == "NORMAL", 30)
        wait_for(
            "the catch-up after the restart", lambda: "catch-up finished: ok" in again.text(), 30
        )
        again.signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0
        assert_one_image_per_slot(emu)
        assert list(image_states(emu)) == [slot_name]
        calls = emu.core.state()["calls"]
        assert calls.get("CreateImage") == 1  # the restart found the image: no second create


def test_a_bad_policy_file_beside_a_good_one_starts_runs_the_good_one_and_names_the_file(
    tmp_path: Path, start_daemon: Callable[[Path], tuple[DaemonProcess, Notifications]]
) -> None:
    """issue 19: the daemon starts, READY's STATUS names the broken file, the good
    policy's catch-up image is made, and the run logs the file:line error, no traceback;
    a reload where the file (fixed meanwhile) became bad again keeps its old version."""
    with running_emulator(fleet(create_seconds=0.5)) as emu:
        schedule, latest = daily_slot_before(datetime.now(UTC))
        config = config_for(tmp_path, emu, schedule)
        (tmp_path / "policies" / "db.yaml").write_text(
            policy_text("db", "every: 1x"), encoding="utf-8"
        )
        daemon, notify = start_daemon(config)
        ready = notify.expect("READY")
        assert "BROKEN policy file(s):" in ready["STATUS"] and "db.yaml" in ready["STATUS"]
        made = image_name(INSTANCE, latest)
        wait_for(f"{made} NORMAL", lambda: image_states(emu).get(made) == "NORMAL", 30)
        wait_for("catch-up to finish", lambda: "catch-up finished:" in daemon.text(), 10)
        assert "db.yaml:4:" in daemon.text()

        # Fixed, then broken again: the reload keeps the fixed version running (SIGHUP).
        db = tmp_path / "policies" / "db.yaml"
        db.write_text(policy_text("db", schedule), encoding="utf-8")
        daemon.signal(signal.SIGHUP)
        notify.expect("RELOADING")
        fixed = notify.expect("READY")
        assert "BROKEN" not in fixed["STATUS"] and "reload rejected" not in fixed["STATUS"]
        db.write_text(policy_text("db", "every: 2x"), encoding="utf-8")
        daemon.signal(signal.SIGHUP)
        notify.expect("RELOADING")
        kept = notify.expect("READY")
        assert "db.yaml (old version kept)" in kept["STATUS"]
        assert "reload rejected" not in kept["STATUS"]
        wait_for("the reload's log", lambda: "its old version keeps running" in daemon.text(), 10)
        assert "Traceback" not in daemon.text()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        assert_one_image_per_slot(emu)
