"""Smoke tests of ``make bench``: each benchmark runs on a tiny fleet and prints every figure.

They check behaviour, never timings: the run exits 0, does exactly the work the fleet
calls for (one image per instance made, the oldest of each deleted, three ``NORMAL`` images
per instance left), and every figure docs/performance.md quotes is printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
TINY = ["--regions", "2", "--instances", "10", "--latency-ms", "0", "--create-seconds", "0.2"]


def run_bench(script: str, *args: str, timeout: float = 120) -> str:
    """Run ``bench/<script>`` with this interpreter; return its stdout (exit status 0)."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_fleet_prints_every_figure_and_does_the_work() -> None:
    out = run_bench("fleet.py", *TINY, "--baseline-instances", "2")
    assert "machine: " in out and "2 regions x 10 instances (20)" in out
    assert (
        "cvmkeeper run: exit 0, report ok: True, 20 image(s) made, 20 deleted, end state "
        "(3 NORMAL images per instance): yes"
    ) in out
    assert re.search(
        r"wall time: [\d.]+ s .*rate-limit lower bound [\d.]+ s; ratio [\d.]+ "
        r"\(target <= 1\.2: (MET|MISSED)\)",
        out,
    )
    for phase in (
        "start, read and plan",
        "creates",
        "last image NORMAL",
        "deletes",
        "report and exit",
    ):
        assert re.search(rf"where the time went .*: .*{phase} [\d.]+ s", out), phase
    assert re.search(r"API calls: \d+, minimum \d+, ratio [\d.]+ \(target <= 1\.1", out)
    assert re.search(r"^  CreateImage +20 +minimum +20$", out, re.MULTILINE)
    assert re.search(r"^  DeleteImages +2 +minimum +2$", out, re.MULTILINE)  # one batch each
    assert re.search(r"RequestLimitExceeded answers: \d+ \(target 0", out)
    assert re.search(r"peak RSS: [\d.]+ MB", out)
    assert re.search(r"CPU: [\d.]+ s \(user [\d.]+ \+ system [\d.]+\)", out)
    assert re.search(r"emulator CPU during the run \(not cvmkeeper's\): [\d.]+ s", out)
    naive = re.search(
        r"naive baseline .* measured 2 of 20 instances in [\d.]+ s with (\d+) "
        r"calls, \d+ RequestLimitExceeded, 0 error\(s\)",
        out,
    )
    assert naive, out
    # per instance: find its images, create, poll at least once, delete the oldest
    assert int(naive[1]) >= 2 * 4
    assert "extrapolated to 20 instances (linear): " in out
    assert re.search(rf"\(linear\): \d+ s, {10 * int(naive[1])} calls", out)
    assert re.search(r"cvmkeeper vs naive: [\d.]+x faster \(target >= 10x: (MET|MISSED)\)", out)


@pytest.mark.slow
def test_fleet_sizes_print_a_growth_table() -> None:
    out = run_bench("fleet.py", *TINY, "--sizes", "4,8", "--no-baseline")
    assert "naive" not in out
    assert out.count("cvmkeeper run: exit 0, report ok: True") == 2
    rows = re.findall(
        r"^ +(\d+) +2 x (\d+) +[\d.]+ +[\d.]+ +[\d.]+ +\d+ +\d+ +\d+ +[\d.]+ "
        r"+[\d.]+$",
        out,
        re.MULTILINE,
    )
    assert rows == [("4", "2"), ("8", "4")]


@pytest.mark.slow
def test_idle_daemon_is_measured_and_stops_cleanly() -> None:
    out = run_bench("idle.py", "--policies", "3", "--seconds", "2", "--settle", "0.2")
    assert "daemon idle with 3 policies" in out
    assert re.search(r"idle RSS: [\d.]+ MB \(peak [\d.]+ MB; target <= 80 MB", out)
    assert re.search(r"idle CPU: [\d.]+ s in \d+ s", out)
    assert "API calls during the window: 0; daemon exit status after SIGTERM: 0" in out


@pytest.mark.slow
def test_planning_plans_every_instance() -> None:
    out = run_bench("planning.py", "--instances", "40", "--images", "5", "--repeat", "2")
    assert (
        "210 images (5 managed per instance + 10 unmanaged) across 40 instances: 40 creates" in out
    )
    assert re.search(r"planning CPU: first [\d.]+ s, best [\d.]+ s, median [\d.]+ s of 2", out)
