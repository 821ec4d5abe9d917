"""Idle benchmark: the daemon's memory with 100 policies, and its CPU use between runs.

Starts ``cvmkeeper emulator`` (one region, one instance per policy) and ``cvmkeeper daemon``
as child processes, with ``--policies`` policy files whose only schedule fires once a year
(at 04:17 on 1 January) and ``catch_up: off``, so no run is due while it is measured. Waits
for the daemon's ``READY=1`` on a real ``$NOTIFY_SOCKET``, lets it settle, then samples
``/proc/<pid>/status`` ``VmRSS`` and ``/proc/<pid>/stat`` ``utime + stime`` every second for
``--seconds``, and prints the resident memory (last and peak, against 80 MB) and the CPU
seconds used in the window (the target is none: at most one clock tick per 10 s, the
daemon's once-a-second main-loop tick). The emulator's call counts show that no run and no
API call happened in the window.

    .venv/bin/python bench/idle.py [--policies 100] [--seconds 20]
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import (
    CLOCK_TICK,
    FleetShape,
    clean_env,
    cpu_seconds,
    cvmkeeper_command,
    emulator,
    fleet_document,
    instance_id,
    machine,
    rss_mb,
    verdict,
    write_config,
    write_fleet,
)
from cvmkeeper.scheduler.service import LOOP_TICK

READY_TIMEOUT_SECONDS = 120.0
RSS_TARGET_MB = 80.0


def policy(number: int, region: str) -> dict[str, Any]:
    """Policy ``number``: one instance, a yearly slot, no catch-up, keep_last 3."""
    return {
        "name": f"p{number:03d}",
        "regions": [region],
        "targets": {"instance_ids": [instance_id(0, number)]},
        "schedules": [{"cron": "17 4 1 1 *"}],
        "catch_up": "off",
        "retention": {"keep_last": 3},
    }


def wait_ready(sock: socket.socket, process: subprocess.Popen[bytes]) -> None:
    """Block until the daemon sends ``READY=1`` (or fail when it exits or takes too long)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the daemon exited with {process.returncode} before READY")
        sock.settimeout(1.0)
        try:
            message = sock.recv(4096).decode("utf-8", "replace")
        except TimeoutError:
            continue
        if "READY=1" in message.split("\n"):
            return
    raise RuntimeError("no READY=1 from the daemon in time")


def main() -> int:
    """Measure; 0 when the daemon ran and stopped cleanly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=100, help="policy files (100)")
    parser.add_argument("--seconds", type=float, default=20.0, help="sampling window (20)")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds after READY before sampling (3)"
    )
    args = parser.parse_args()
    shape = FleetShape(
        regions=1, instances=args.policies, seeded=0, quota=500, latency_ms=0, create_seconds=2.0
    )
    region = shape.region_names[0]
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="cvmkeeper-idle-") as tmp:
        root = Path(tmp)
        empty = fleet_document(shape, "idle", datetime.now(UTC))  # instances, no images
        fleet_file = write_fleet(root / "fleet.json", empty)
        with emulator(fleet_file, root / "emulator.log") as emu:
            config = write_config(
                root,
                emu.endpoint,
                [region],
                shape.quota,
                [policy(n, region) for n in range(args.policies)],
            )
            notify_path = root / "notify.sock"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(notify_path))
            log_path = root / "daemon.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    cvmkeeper_command("daemon", "--config", str(config), "--log-format", "text"),
                    stdout=log,
                    stderr=log,
                    env={**clean_env(), "NOTIFY_SOCKET": str(notify_path)},
                )
                try:
                    wait_ready(sock, process)
                    time.sleep(args.settle)
                    calls_before = sum(emu.state()["calls"].values())
                    cpu_start = cpu_seconds(process.pid)
                    samples = [rss_mb(process.pid)]
                    start = time.monotonic()
                    while time.monotonic() - start < args.seconds:
                        time.sleep(min(1.0, max(0.0, args.seconds - (time.monotonic() - start))))
                        samples.append(rss_mb(process.pid))
                    window = time.monotonic() - start
                    used = cpu_seconds(process.pid) - cpu_start
                    calls = sum(emu.state()["calls"].values()) - calls_before
                finally:
                    process.send_signal(signal.SIGTERM)
                    try:
                        status = process.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        status = process.wait(timeout=10)
                    sock.close()
    print(
        f"daemon idle with {args.policies} policies ({args.policies} yearly schedules, "
        f"no catch-up), sampled every second for {window:.0f} s after READY + "
        f"{args.settle:g} s:"
    )
    peak = max(samples)
    print(
        f"idle RSS: {samples[-1]:.1f} MB (peak {peak:.1f} MB; target <= {RSS_TARGET_MB:g} "
        f"MB: {verdict(peak <= RSS_TARGET_MB)})"
    )
    allowed = CLOCK_TICK * window / 10
    print(
        f"idle CPU: {used:.2f} s in {window:.0f} s ({100 * used / window:.2f}% of one CPU; "
        f"the main loop wakes every {LOOP_TICK:g} s; target none, at most "
        f"{allowed:.2f} s: {verdict(used <= allowed)})"
    )
    print(f"API calls during the window: {calls}; daemon exit status after SIGTERM: {status}")
    return 0 if status == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
