"""What the benchmarks share: an emulated fleet, processes to measure, the machine they ran on.

The benchmarks measure cvmkeeper as users run it: ``cvmkeeper emulator`` and ``cvmkeeper
run`` / ``cvmkeeper daemon`` are separate processes (so the emulator's CPU and memory are
never counted as cvmkeeper's), talking real HTTP over 127.0.0.1. This module builds the
fleet file (instances and pre-seeded managed images named, tagged and described by
``cvmkeeper.core.naming``, exactly as cvmkeeper makes them), starts and stops the emulator,
writes a daemon config pointing at it, and runs a child process while measuring its wall
time, peak RSS and CPU seconds (``os.wait4`` gives the rusage of that one child).
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from cvmkeeper.core.naming import image_description, image_name, image_tags
from cvmkeeper.emulator.http import CONTROL_TOKEN_ENV, CONTROL_TOKEN_HEADER

#: Region names used in order (``--regions`` takes the first R of them).
REGIONS: tuple[str, ...] = (
    "ap-guangzhou",
    "ap-shanghai",
    "ap-beijing",
    "ap-chengdu",
    "ap-nanjing",
    "ap-hongkong",
    "ap-singapore",
    "ap-tokyo",
    "eu-frankfurt",
    "na-ashburn",
)
#: The key pair the emulator accepts; public test values, never a real credential.
SECRET_ID = "AKIDBENCH00000000000000000000000000000"  # noqa: S105
SECRET_KEY = "bench-secret-key"  # noqa: S105
#: The tag every benchmark instance carries; the benchmark policy targets it.
BENCH_TAG = {"bench": "fleet"}
#: Variables that must not leak into the measured processes (real accounts, alerting).
SCRUBBED_ENV = (
    "SENTRY_DSN",
    "TENCENTCLOUD_SECRET_ID",
    "TENCENTCLOUD_SECRET_KEY",
    "TENCENTCLOUD_SESSION_TOKEN",
    "CVMKEEPER_CONFIG",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "CREDENTIALS_DIRECTORY",
)
EMULATOR_START_SECONDS = 300.0
#: Seconds per clock tick of /proc/<pid>/stat times.
CLOCK_TICK = 1.0 / os.sysconf("SC_CLK_TCK")


def instance_id(region_index: int, number: int) -> str:
    """A valid CVM id (``ins-`` + 8 lowercase alphanumerics), unique across the fleet."""
    return f"ins-b{region_index}{number:06d}"


@dataclass(frozen=True)
class FleetShape:
    """How big the emulated account is and how fast it answers."""

    regions: int
    instances: int  # per region
    seeded: int  # managed images per instance before the run
    quota: int
    latency_ms: float
    create_seconds: float

    @property
    def region_names(self) -> tuple[str, ...]:
        """The regions of the fleet."""
        return REGIONS[: self.regions]

    @property
    def total_instances(self) -> int:
        """Instances in all regions."""
        return self.regions * self.instances


def fleet_document(shape: FleetShape, policy: str, slot: datetime) -> dict[str, Any]:
    """The fleet mapping: every instance tagged ``BENCH_TAG``, each with ``shape.seeded``
    managed images of the hourly slots before ``slot`` (as cvmkeeper names them)."""
    if shape.regions > len(REGIONS):
        raise ValueError(f"at most {len(REGIONS)} regions")
    regions: dict[str, Any] = {}
    for r, region in enumerate(shape.region_names):
        instances = []
        images = []
        for n in range(shape.instances):
            iid = instance_id(r, n)
            instances.append({"id": iid, "tags": dict(BENCH_TAG)})
            for k in range(1, shape.seeded + 1):
                old = slot - timedelta(hours=k)
                images.append(
                    {
                        "id": f"img-s{r}{n:05d}{k}",
                        "name": image_name(iid, old),
                        "description": image_description((policy,), old),
                        "tags": image_tags((policy,), iid, old),
                        "instance_id": iid,
                        "created_time": old.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                )
        regions[region] = {"quota": shape.quota, "instances": instances, "images": images}
    return {
        "credentials": {"secret_id": SECRET_ID, "secret_key": SECRET_KEY},
        "latency_ms": shape.latency_ms,
        "seed": 1,
        "timing": {"create_seconds": shape.create_seconds},
        "regions": regions,
    }


def write_fleet(path: Path, document: Mapping[str, Any]) -> Path:
    """Write a fleet file (JSON is YAML, and much faster to write for big fleets)."""
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def write_config(
    root: Path,
    endpoint: str,
    regions: Sequence[str],
    quota: int,
    policies: Sequence[Mapping[str, Any]],
) -> Path:
    """A daemon config for the emulator at ``endpoint`` (documented rate limits, default
    retries and polling), the secret key in a 0600 file, and one file per policy."""
    key_file = root / "secret_key"
    key_file.write_text(SECRET_KEY + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    policy_dir = root / "policies"
    policy_dir.mkdir(exist_ok=True)
    for document in policies:
        (policy_dir / f"{document['name']}.yaml").write_text(yaml.safe_dump(dict(document)))
    (root / "state").mkdir(exist_ok=True)
    config = {
        "policies_dir": "policies",
        "regions": list(regions),
        "image_quota": quota,
        "state_dir": str(root / "state"),
        "cloud": {"endpoint": endpoint, "scheme": "http", "timeout": "30s"},
        "credentials": {
            "secret_id": SECRET_ID,
            "secret_key_file": str(key_file),
            "cvm_role": False,
        },
        "api": {"wait_timeout": "30m"},
    }
    path = root / "cvmkeeper.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def clean_env() -> dict[str, str]:
    """The environment for measured processes: ours, without credentials and DSNs."""
    return {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}


def cvmkeeper_command(*args: str) -> list[str]:
    """``python -m cvmkeeper ARGS`` with the interpreter running the benchmark."""
    return [sys.executable, "-m", "cvmkeeper", *args]


class EmulatorProcess:
    """A ``cvmkeeper emulator`` child process serving a fleet file on 127.0.0.1."""

    def __init__(self, fleet_file: Path, log_file: Path) -> None:
        """Start the emulator and wait for its ``listening on URL`` line."""
        self._log = log_file.open("wb")
        #: this run's token for the emulator's control endpoints (/_emulator/*)
        self.control_token = secrets.token_urlsafe(24)
        self.process = subprocess.Popen(
            cvmkeeper_command("emulator", "--fleet", str(fleet_file), "--port", "0"),
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**clean_env(), CONTROL_TOKEN_ENV: self.control_token},
        )
        self.url = self._read_url()
        self.endpoint = self.url.removeprefix("http://")

    def _read_url(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + EMULATOR_START_SECONDS
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, left))
            if not ready:
                self.stop()
                raise RuntimeError("the emulator did not start in time")
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                self.stop()
                raise RuntimeError("the emulator exited before listening; see its log")
            line += chunk
        text = line.decode().strip()
        if not text.startswith("listening on http://"):
            self.stop()
            raise RuntimeError(f"unexpected emulator output: {text!r}")
        return text.removeprefix("listening on ")

    def state(self) -> dict[str, Any]:
        """``GET /_emulator/state``: regions, call and error counts, history."""
        return emulator_state(self.url, self.control_token)

    def stop(self) -> None:
        """SIGTERM, then wait (kill after 10 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


@contextmanager
def emulator(fleet_file: Path, log_file: Path) -> Iterator[EmulatorProcess]:
    """Serve ``fleet_file`` from a child process for the ``with`` block."""
    process = EmulatorProcess(fleet_file, log_file)
    try:
        yield process
    finally:
        process.stop()


def emulator_state(url: str, token: str) -> dict[str, Any]:
    """``GET /_emulator/state`` over HTTP, as any outside tool would read it (with the
    emulator's control token)."""
    request = urllib.request.Request(  # noqa: S310 - http only
        f"{url}/_emulator/state", headers={CONTROL_TOKEN_HEADER: token}
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        state: dict[str, Any] = json.load(response)
    return state


@dataclass(frozen=True)
class Measured:
    """How one child process ran: exit status, wall seconds, peak RSS, CPU seconds."""

    exit_code: int
    wall_seconds: float
    peak_rss_mb: float
    user_seconds: float
    system_seconds: float
    started_at: float = 0.0  # epoch seconds, to set against the emulator's history
    ended_at: float = 0.0

    @property
    def cpu_seconds(self) -> float:
        """User plus system CPU time."""
        return self.user_seconds + self.system_seconds


def run_measured(
    command: Sequence[str], stdout: Path, stderr: Path, timeout_seconds: float
) -> Measured:
    """Run ``command`` to completion (killed after ``timeout_seconds``) and measure it.

    The rusage comes from ``os.wait4`` on this child alone, so nothing else the benchmark
    started (the emulator) is counted.
    """
    with stdout.open("wb") as out, stderr.open("wb") as err:
        started_at = time.time()
        start = time.monotonic()
        process = subprocess.Popen(list(command), stdout=out, stderr=err, env=clean_env())
        timer = threading.Timer(timeout_seconds, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall = time.monotonic() - start
        process.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        exit_code=process.returncode,
        wall_seconds=wall,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        user_seconds=usage.ru_utime,
        system_seconds=usage.ru_stime,
        started_at=started_at,
        ended_at=started_at + wall,
    )


def rss_mb(pid: int) -> float:
    """``VmRSS`` of a running process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """``utime + stime`` of a running process (all its threads) so far, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK  # fields 14 and 15 of stat


def machine() -> str:
    """``2 CPUs (AMD EPYC), Python 3.11.7, Linux 6.1``: where the figures came from."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def verdict(met: bool) -> str:
    """How a target is shown: met or missed (targets are printed, never asserted)."""
    return "MET" if met else "MISSED"
