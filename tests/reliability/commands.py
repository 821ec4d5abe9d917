"""``cvmkeeper`` as a real process, for the crash, bad-input and secrets parts.

Output goes to files under the test's directory so that a killed process loses nothing
and the secrets part can scan every byte any command wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Environment variables that would change what a command does; never inherited.
_SCRUBBED = (
    "SENTRY_DSN",
    "CREDENTIALS_DIRECTORY",
    "JOURNAL_STREAM",
    "WATCHDOG_USEC",
    "NOTIFY_SOCKET",
    "TENCENTCLOUD_SECRET_ID",
    "TENCENTCLOUD_SECRET_KEY",
)


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a ``cvmkeeper`` process: ours minus cloud and systemd settings."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class Process:
    """A started ``cvmkeeper`` command with its stdout and stderr files."""

    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        """Everything written so far, stdout then stderr."""
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def kill(self) -> bool:
        """SIGKILL it if it still runs; True when it was killed by this call."""
        if self.popen.poll() is not None:
            return False
        self.popen.kill()
        self.popen.wait(timeout=10)
        return True

    def wait(self, timeout: float) -> int:
        """Wait for the exit status."""
        return self.popen.wait(timeout=timeout)


def start(
    args: Sequence[str], directory: Path, name: str, env: Mapping[str, str] | None = None
) -> Process:
    """Start ``python -m cvmkeeper ARGS`` with output in ``directory/name.{out,err}``."""
    stdout, stderr = directory / f"{name}.out", directory / f"{name}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        popen = subprocess.Popen(
            [sys.executable, "-m", "cvmkeeper", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=command_env(env),
        )
    return Process(popen, stdout, stderr)


def run(
    args: Sequence[str],
    directory: Path,
    name: str,
    timeout: float = 60,
    env: Mapping[str, str] | None = None,
) -> tuple[int, str, str]:
    """Run a command to its end; return (exit status, stdout, stderr)."""
    process = start(args, directory, name, env)
    try:
        code = process.wait(timeout)
    finally:
        process.kill()
    return (
        code,
        process.stdout.read_text(errors="replace"),
        process.stderr.read_text(errors="replace"),
    )


def poll(check: Callable[[], Any], timeout: float, every: float = 0.01) -> Any:
    """Poll ``check`` until truthy (bounded in count and time); None when it never was."""
    deadline = time.monotonic() + timeout
    # The deadline is the bound; the count is a backstop four times the sleeps it needs,
    # so a sleep that returns early (a clock shim under load) cannot end the wait early.
    for _ in range(4 * int(timeout / every) + 1):
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(every)
    return None
