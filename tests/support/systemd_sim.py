"""Starting one ``Type=notify`` unit the way systemd 252 would, where systemd cannot run.

The test container has no systemd as PID 1 and no user manager (``systemd-run --user``
fails with "Failed to connect to bus"), so the install journey cannot ``systemctl start``
the unit. This module reads the unit file (and its drop-ins) and does, for the directives
cvmkeeper.service uses, what the service manager does when it starts the service:

- ``ExecStart=``: the command line, run with a clean environment (systemd passes none of
  the caller's), working directory ``/``, and the unit's ``UMask=``;
- ``Environment=``: its assignments;
- ``LoadCredential=ID:PATH``: copies each file into a private ``$CREDENTIALS_DIRECTORY``
  (files 0400, the directory 0500 once filled, owned by the service user);
- standard output and error to the journal: ``$JOURNAL_STREAM`` names the log file;
- ``StateDirectory=`` / ``RuntimeDirectory=`` / ``ConfigurationDirectory=``: the directories
  and ``$STATE_DIRECTORY``, ``$RUNTIME_DIRECTORY``, ``$CONFIGURATION_DIRECTORY``;
- ``Type=notify``: an ``AF_UNIX`` datagram socket as ``$NOTIFY_SOCKET``; ``WatchdogSec=``:
  ``$WATCHDOG_USEC`` (not ``$WATCHDOG_PID``: the pid is not known before the process
  starts, and the daemon treats an unset one as its own);
- ``DynamicUser=yes``: when the tests run as root, the command runs as ``nobody``
  (65534) through ``setpriv``, so a file only root can read fails as it would for the
  throw-away user;
- ``ExecReload=``: run with ``$MAINPID`` by ``reload`` (``systemctl reload``), as the
  service's user;
- ``TimeoutStopSec=``: how long ``stop`` waits after SIGTERM.

Every absolute path of the unit (``/etc/...``, ``/var/lib/...``, ``/run/...``) lives below a
``root`` directory of the test. The sandbox settings (``ProtectSystem=``,
``SystemCallFilter=`` ...) are not modelled: ``systemd-analyze verify`` and ``security``
check them (tests/scheduler/test_unit_file.py).
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NOBODY = 65534
_SECONDS = {"": 1.0, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "ms": 0.001}


def parse_unit(*texts: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values of a unit file and its drop-ins, in order.

    As systemd does for list settings, an empty assignment (``Key=``) clears the values
    given before it.
    """
    sections: dict[str, dict[str, list[str]]] = {}
    for text in texts:
        current: dict[str, list[str]] | None = None
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith(("#", ";")):
                continue
            if stripped.startswith("[") and stripped.endswith("]"):
                current = sections.setdefault(stripped[1:-1], {})
                continue
            assert current is not None, f"assignment outside a section: {line!r}"
            key, _, value = stripped.partition("=")
            values = current.setdefault(key.strip(), [])
            if value.strip():
                values.append(value.strip())
            else:
                values.clear()
    return sections


def seconds(value: str) -> float:
    """A systemd time span such as ``90s``, ``2min`` or ``120`` in seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value.strip())
    assert match and match.group(2) in _SECONDS, f"unsupported time span {value!r}"
    return float(match.group(1)) * _SECONDS[match.group(2)]


class NotifySocket:
    """The manager's end of ``$NOTIFY_SOCKET``: every datagram the service sent, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        path.chmod(0o777)  # the service user must be able to send to it
        self.received: list[dict[str, str]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        """The next datagram as KEY -> VALUE (also kept in ``received``); None after
        ``timeout`` seconds without one."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536).decode("utf-8")
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
        self.received.append(message)
        return message

    def expect(self, key: str, timeout: float) -> dict[str, str]:
        """The next datagram carrying ``key`` (others are kept in ``received``)."""
        deadline = time.monotonic() + timeout
        for _ in range(10_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            message = self.receive(remaining)
            if message is not None and key in message:
                return message
        raise AssertionError(f"no {key}= from the service in {timeout}s; got {self.received}")

    def close(self) -> None:
        self.sock.close()


@dataclass
class Service:
    """A started service: its process, its notify socket, its directories and its log."""

    process: subprocess.Popen[bytes]
    notify: NotifySocket
    log: Path
    stop_timeout: float
    directories: dict[str, Path] = field(default_factory=dict)
    exec_reload: list[str] = field(default_factory=list)
    as_user: list[str] = field(default_factory=list)

    def text(self) -> str:
        """Everything the service wrote to stdout and stderr (the journal, here)."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def reload(self) -> None:
        """``systemctl reload``: ``ExecReload=`` with ``$MAINPID``, as the service's user."""
        assert self.exec_reload, "the unit has no ExecReload="
        pid = str(self.process.pid)
        command = [word.replace("$MAINPID", pid) for word in self.exec_reload]
        subprocess.run([*self.as_user, *command], check=True, timeout=30)

    def stop(self) -> int:
        """``systemctl stop``: SIGTERM, then wait up to ``TimeoutStopSec=``; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=self.stop_timeout)

    def kill(self) -> None:
        """Kill the service if it still runs (the test's cleanup)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.notify.close()


def host_path(root: Path, path: str) -> Path:
    """The absolute host path ``path`` of the unit, below the test's ``root``."""
    assert path.startswith("/"), f"not an absolute path: {path!r}"
    return root / path.lstrip("/")


def _service_user(service: dict[str, list[str]]) -> tuple[int, int] | None:
    """(uid, gid) to run as: ``nobody`` for ``DynamicUser=yes`` when root starts it."""
    if service.get("DynamicUser", ["no"])[-1] != "yes" or os.geteuid() != 0:
        return None
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed to drop root"
    return NOBODY, NOBODY


def _own(path: Path, user: tuple[int, int] | None) -> None:
    if user is not None:
        os.chown(path, *user)


def _load_credentials(
    root: Path, unit_name: str, service: dict[str, list[str]], user: tuple[int, int] | None
) -> Path:
    """``LoadCredential=ID:PATH``: each file copied into a private credentials directory."""
    directory = host_path(root, f"/run/credentials/{unit_name}")
    directory.mkdir(parents=True, mode=0o700)
    for entry in service.get("LoadCredential", []):
        name, _, source = entry.partition(":")
        target = directory / name
        shutil.copyfile(host_path(root, source), target)  # a missing file fails the start
        target.chmod(0o400)
        _own(target, user)
    directory.chmod(0o500)  # read-only once filled, as systemd leaves it
    _own(directory, user)
    return directory


def _directories(
    root: Path, service: dict[str, list[str]], user: tuple[int, int] | None
) -> dict[str, Path]:
    """``StateDirectory=`` and friends: created, owned by the service user, as variables."""
    found: dict[str, Path] = {}
    for key, base, variable in (
        ("StateDirectory", "/var/lib", "STATE_DIRECTORY"),
        ("RuntimeDirectory", "/run", "RUNTIME_DIRECTORY"),
        ("ConfigurationDirectory", "/etc", "CONFIGURATION_DIRECTORY"),
    ):
        names = " ".join(service.get(key, [])).split()
        if not names:
            continue
        paths = [host_path(root, f"{base}/{name}") for name in names]
        for path in paths:
            path.mkdir(parents=True, exist_ok=True)
            if key != "ConfigurationDirectory":  # that one stays root's, read-only
                path.chmod(0o755)
                _own(path, user)
        found[variable] = paths[0]
    return found


def _environment(service: dict[str, list[str]], unit_name: str) -> dict[str, str]:
    """The environment systemd gives a system service, plus ``Environment=``."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "INVOCATION_ID": secrets.token_hex(16),
    }
    if service.get("DynamicUser", ["no"])[-1] == "yes":
        user = unit_name.removesuffix(".service")
        env |= {"USER": user, "LOGNAME": user, "HOME": "/", "SHELL": "/usr/sbin/nologin"}
    for line in service.get("Environment", []):
        for assignment in shlex.split(line):
            key, _, value = assignment.partition("=")
            env[key] = value
    return env


def start(
    unit_file: Path, root: Path, *, log: Path, extra_env: dict[str, str] | None = None
) -> Service:
    """Start the service of ``unit_file`` (with ``unit_file``.d/*.conf) below ``root``.

    ``extra_env`` is what the test adds beyond systemd (say, a path the unit takes for
    granted, moved below ``root``); keep it to that.
    """
    drop_ins = sorted(Path(f"{unit_file}.d").glob("*.conf"))
    unit = parse_unit(unit_file.read_text(), *(p.read_text() for p in drop_ins))
    service = unit["Service"]
    assert service.get("Type") == ["notify"], service.get("Type")
    (exec_start,) = service["ExecStart"]
    command = shlex.split(exec_start)
    assert command[0].startswith("/"), f"ExecStart= needs an absolute path: {exec_start}"
    user = _service_user(service)
    directories = _directories(root, service, user)
    credentials = _load_credentials(root, unit_file.name, service, user)
    env = _environment(service, unit_file.name) | {
        variable: str(path) for variable, path in directories.items()
    }
    env["CREDENTIALS_DIRECTORY"] = str(credentials)
    notify_dir = host_path(root, "/run/systemd")
    notify_dir.mkdir(parents=True, exist_ok=True)
    notify = NotifySocket(notify_dir / "notify")
    env["NOTIFY_SOCKET"] = str(notify.path)
    if "WatchdogSec" in service:
        env["WATCHDOG_USEC"] = str(int(seconds(service["WatchdogSec"][-1]) * 1_000_000))
    env |= extra_env or {}
    as_user: list[str] = []
    if user is not None:
        uid, gid = user
        as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    umask = int(service.get("UMask", ["0022"])[-1], 8)
    with log.open("ab") as output:
        journal = os.fstat(output.fileno())  # stdout and stderr are "the journal"
        env["JOURNAL_STREAM"] = f"{journal.st_dev}:{journal.st_ino}"
        process = subprocess.Popen(
            [*as_user, *command],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd="/",
            umask=umask,
            start_new_session=True,
        )
    stop_timeout = seconds(service.get("TimeoutStopSec", ["90s"])[-1])
    directories["CREDENTIALS_DIRECTORY"] = credentials
    exec_reload = shlex.split(service["ExecReload"][-1]) if service.get("ExecReload") else []
    return Service(process, notify, log, stop_timeout, directories, exec_reload, as_user)
