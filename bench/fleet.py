"""Fleet benchmark: one ``cvmkeeper run`` over R regions x N instances, against the rate limits.

Starts ``cvmkeeper emulator`` as a child process (documented rate limits, ``--latency-ms``
per call, images ``CREATING`` for ``--create-seconds``) with every instance already holding
three managed images, and runs ``cvmkeeper run`` as another child process with one policy,
``keep_last: 3``, over all instances: it creates one image per instance, waits for them,
and deletes the oldest image of each. It prints:

- wall time against the rate-limit lower bound (per region: creates / 10/s + delete calls
  / 10/s + one image-creation time; regions run in parallel), as a ratio;
- API calls by action against the minimum (creates + ceil(deletes / batch) + one paged read
  of quota, images and instances + one poll round of the new images), per action and in all;
- ``RequestLimitExceeded`` answers the emulator gave;
- peak RSS and CPU seconds of the ``cvmkeeper run`` process alone;
- the same fleet backed up by the hand-written script of ``naive.py`` (on a sample of
  ``--baseline-instances`` instances, extrapolated linearly: the script is sequential), and
  cvmkeeper's time and calls as ratios to it.

Targets are printed with MET / MISSED; they are never asserted. Exit status 1 only when a
run itself failed. ``--sizes 100,500,2000`` repeats the cvmkeeper run for several fleet
sizes (total instances, split over the regions) and prints how time and memory grow.

    .venv/bin/python bench/fleet.py                  # 5 x 200, about a minute and a half
    .venv/bin/python bench/fleet.py --sizes 100,500,2000 --no-baseline
    .venv/bin/python bench/fleet.py --regions 2 --instances 10 --latency-ms 0 \\
        --create-seconds 0.2 --baseline-instances 2     # smoke profile, seconds
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import (
    BENCH_TAG,
    SECRET_ID,
    SECRET_KEY,
    FleetShape,
    Measured,
    cpu_seconds,
    cvmkeeper_command,
    emulator,
    fleet_document,
    instance_id,
    machine,
    run_measured,
    verdict,
    write_config,
    write_fleet,
)
from cvmkeeper.core.plan import DELETE_BATCH_SIZE
from cvmkeeper.emulator.fleet import DEFAULT_RATE_LIMITS
from naive import POLL_SECONDS, run_naive

POLICY = "bench"
KEEP_LAST = 3
PAGE = 100  # DescribeImages / DescribeInstances page size
RUN_TIMEOUT_SECONDS = 3600.0
WRITE_RATE = DEFAULT_RATE_LIMITS["CreateImage"]
#: The last line ``cvmkeeper run`` prints (the plain text output, as a cron job runs it).
SUMMARY = re.compile(
    r"^(?P<status>ok|FAILED): (?P<made>\d+) image\(s\) made, "
    r"(?P<deleted>\d+) deleted",
    re.MULTILINE,
)
assert DEFAULT_RATE_LIMITS["DeleteImages"] == WRITE_RATE


@dataclass(frozen=True)
class RunFigures:
    """What one measured ``cvmkeeper run`` did and cost."""

    shape: FleetShape
    measured: Measured
    created: int
    deleted: int
    report_ok: bool
    end_state_ok: bool
    calls: dict[str, int]
    minimum: dict[str, int]
    throttled: int
    timeline: list[tuple[str, float]]
    emulator_cpu_seconds: float

    @property
    def lower_bound(self) -> float:
        """Seconds the rate limits allow at best (regions in parallel, all equal)."""
        return lower_bound_seconds(self.shape)

    @property
    def wall_ratio(self) -> float:
        """Wall time over the lower bound."""
        return self.measured.wall_seconds / self.lower_bound

    @property
    def total_calls(self) -> int:
        """API calls the emulator received from the run."""
        return sum(self.calls.values())

    @property
    def total_minimum(self) -> int:
        """The fewest calls such a run can make."""
        return sum(self.minimum.values())


def deletes_per_region(shape: FleetShape) -> int:
    """Images retention expires in one region: each instance's oldest beyond ``keep_last``."""
    return shape.instances * max(0, shape.seeded + 1 - KEEP_LAST)


def lower_bound_seconds(shape: FleetShape) -> float:
    """Per region: creates / 10/s + delete calls / 10/s, plus one image-creation time."""
    delete_calls = math.ceil(deletes_per_region(shape) / DELETE_BATCH_SIZE)
    return (shape.instances + delete_calls) / WRITE_RATE + shape.create_seconds


def minimum_calls(shape: FleetShape) -> dict[str, int]:
    """The fewest calls per action: every write once, every read in as few pages as can be."""
    per_region = {
        "CreateImage": shape.instances,
        "DeleteImages": math.ceil(deletes_per_region(shape) / DELETE_BATCH_SIZE),
        "DescribeImageQuota": 1,
        # one paged listing of the region's images, then one poll round of the new ones
        "DescribeImages": math.ceil(shape.instances * shape.seeded / PAGE)
        + math.ceil(shape.instances / PAGE),
        "DescribeInstances": math.ceil(shape.instances / PAGE),
    }
    return {action: count * shape.regions for action, count in per_region.items()}


def end_state_ok(state: dict[str, Any], shape: FleetShape) -> bool:
    """Every instance holds exactly ``keep_last`` images, all ``NORMAL``."""
    for region in shape.region_names:
        images = state["regions"][region]["images"]
        if len(images) != shape.instances * KEEP_LAST:
            return False
        if any(image["ImageState"] != "NORMAL" for image in images):
            return False
    return True


def policy_document(shape: FleetShape) -> dict[str, Any]:
    """``keep_last: 3`` over every benchmark instance, hourly."""
    return {
        "name": POLICY,
        "regions": list(shape.region_names),
        "targets": {"tags": dict(BENCH_TAG)},
        "schedules": [{"every": "1h"}],
        "retention": {"keep_last": KEEP_LAST},
    }


def the_slot() -> datetime:
    """The slot the run makes: this hour (the fleet holds the three hours before it)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def measure_run(shape: FleetShape, workdir: Path) -> RunFigures:
    """Serve a fresh fleet, run ``cvmkeeper run`` once as a child process, and measure it."""
    workdir.mkdir(parents=True, exist_ok=True)
    slot = the_slot()
    fleet_file = write_fleet(workdir / "fleet.json", fleet_document(shape, POLICY, slot))
    with emulator(fleet_file, workdir / "emulator.log") as emu:
        config = write_config(
            workdir, emu.endpoint, shape.region_names, shape.quota, [policy_document(shape)]
        )
        at = (slot + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%MZ")
        emulator_cpu = cpu_seconds(emu.process.pid)
        measured = run_measured(
            cvmkeeper_command(
                "run", "--config", str(config), "--policy", POLICY, "--at", at, "--no-alerts"
            ),
            workdir / "run.out",
            workdir / "run.log",
            RUN_TIMEOUT_SECONDS,
        )
        emulator_cpu = cpu_seconds(emu.process.pid) - emulator_cpu
        state = emu.state()
    summary = SUMMARY.search((workdir / "run.out").read_text(encoding="utf-8"))
    return RunFigures(
        shape=shape,
        measured=measured,
        created=int(summary["made"]) if summary else 0,
        deleted=int(summary["deleted"]) if summary else 0,
        report_ok=bool(summary and summary["status"] == "ok"),
        end_state_ok=end_state_ok(state, shape),
        calls={k: int(v) for k, v in state["calls"].items()},
        minimum=minimum_calls(shape),
        throttled=int(state["errors"].get("RequestLimitExceeded", 0)),
        timeline=timeline(state["history"], measured),
        emulator_cpu_seconds=emulator_cpu,
    )


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def timeline(history: list[dict[str, Any]], measured: Measured) -> list[tuple[str, float]]:
    """Where the wall time went in the region that finished last: the phases between the
    process start, its first and last ``CreateImage``, its last image becoming ``NORMAL``,
    its ``DeleteImages`` calls and the exit, from the emulator's history (times to the
    millisecond, on this machine's clock)."""
    deleting = [e for e in history if e["action"] == "DeleteImages"]
    if not deleting:
        return []
    last = max(deleting, key=lambda e: _epoch(e["time"]))["region"]
    mine = [e for e in history if e["region"] == last]
    creates = [_epoch(e["time"]) for e in mine if e["action"] == "CreateImage"]
    deletes = [_epoch(e["time"]) for e in mine if e["action"] == "DeleteImages"]
    ready = [
        _epoch(e["time"]) for e in mine if e["action"] == "_transition" and e.get("to") == "NORMAL"
    ]
    if not (creates and deletes and ready):
        return []
    marks = [
        ("start, read and plan", min(creates)),
        ("creates", max(creates)),
        ("last image NORMAL", max(ready)),
        ("noticed, read again, plan", min(deletes)),
        ("deletes", max(deletes)),
        ("report and exit", measured.ended_at),
    ]
    phases: list[tuple[str, float]] = []
    previous = measured.started_at
    for name, moment in marks:
        phases.append((name, moment - previous))
        previous = moment
    return phases


@dataclass(frozen=True)
class Baseline:
    """The hand-written script on a sample, and what it would take for the whole fleet."""

    sampled: int
    seconds: float
    calls: int
    throttled: int
    errors: list[str]
    total_instances: int

    @property
    def scale(self) -> float:
        """Whole fleet / sample (the script is sequential: its cost is linear)."""
        return self.total_instances / self.sampled

    @property
    def fleet_seconds(self) -> float:
        """Extrapolated seconds for the whole fleet."""
        return self.seconds * self.scale

    @property
    def fleet_calls(self) -> float:
        """Extrapolated calls for the whole fleet."""
        return self.calls * self.scale


def measure_baseline(shape: FleetShape, workdir: Path, sample: int) -> Baseline:
    """Run the naive script on a fresh, identical fleet, over ``sample`` instances taken
    round-robin from the regions (all of them when ``sample`` is 0 or larger)."""
    workdir.mkdir(parents=True, exist_ok=True)
    slot = the_slot()
    fleet_file = write_fleet(workdir / "fleet.json", fleet_document(shape, POLICY, slot))
    everyone = [
        (region, instance_id(r, n))
        for n in range(shape.instances)
        for r, region in enumerate(shape.region_names)
    ]
    chosen = everyone if sample <= 0 else everyone[:sample]
    with emulator(fleet_file, workdir / "emulator.log") as emu:
        result = run_naive(
            emu.endpoint, SECRET_ID, SECRET_KEY, instances=chosen, slot=slot, keep=KEEP_LAST
        )
        state = emu.state()
    return Baseline(
        sampled=len(chosen),
        seconds=result.seconds,
        calls=sum(int(v) for v in state["calls"].values()),
        throttled=int(state["errors"].get("RequestLimitExceeded", 0)),
        errors=result.errors,
        total_instances=shape.total_instances,
    )


def print_run(figures: RunFigures) -> None:
    """Every figure of one run, with its target."""
    shape, m = figures.shape, figures.measured
    print(
        f"cvmkeeper run: exit {m.exit_code}, report ok: {figures.report_ok}, "
        f"{figures.created} image(s) made, {figures.deleted} deleted, end state "
        f"({KEEP_LAST} NORMAL images per instance): {'yes' if figures.end_state_ok else 'NO'}"
    )
    print(
        f"wall time: {m.wall_seconds:.2f} s (process start to exit); rate-limit lower bound "
        f"{figures.lower_bound:.2f} s; ratio {figures.wall_ratio:.3f} "
        f"(target <= 1.2: {verdict(figures.wall_ratio <= 1.2)})"
    )
    ratio = figures.total_calls / figures.total_minimum
    if figures.timeline:
        print(
            "  where the time went (the region that finished last): "
            + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in figures.timeline)
        )
    print(
        f"API calls: {figures.total_calls}, minimum {figures.total_minimum}, ratio "
        f"{ratio:.3f} (target <= 1.1: {verdict(ratio <= 1.1)})"
    )
    for action in sorted(set(figures.calls) | set(figures.minimum)):
        print(
            f"  {action:20} {figures.calls.get(action, 0):7d}   minimum "
            f"{figures.minimum.get(action, 0):7d}"
        )
    print(
        f"RequestLimitExceeded answers: {figures.throttled} "
        f"(target 0: {verdict(figures.throttled == 0)})"
    )
    rss_note = ""
    if shape.total_instances == 1000:
        rss_note = f" (target <= 120 MB for 1000 instances: {verdict(m.peak_rss_mb <= 120)})"
    print(f"peak RSS: {m.peak_rss_mb:.1f} MB{rss_note}")
    print(
        f"CPU: {m.cpu_seconds:.2f} s (user {m.user_seconds:.2f} + system "
        f"{m.system_seconds:.2f}), {100 * m.cpu_seconds / m.wall_seconds:.0f}% of the wall time"
    )
    print(
        f"emulator CPU during the run (not cvmkeeper's): {figures.emulator_cpu_seconds:.2f} s, "
        f"{100 * figures.emulator_cpu_seconds / m.wall_seconds:.0f}% of one CPU"
    )


def print_baseline(figures: RunFigures, baseline: Baseline) -> None:
    """The naive script's figures and cvmkeeper's ratios to them."""
    print(
        f"naive baseline (sequential SDK script, {POLL_SECONDS:g} s polls): measured "
        f"{baseline.sampled} of {baseline.total_instances} instances in "
        f"{baseline.seconds:.2f} s with {baseline.calls} calls, "
        f"{baseline.throttled} RequestLimitExceeded, {len(baseline.errors)} error(s)"
    )
    for error in baseline.errors[:5]:
        print(f"  error: {error}")
    if baseline.sampled < baseline.total_instances:
        print(
            f"  extrapolated to {baseline.total_instances} instances (linear): "
            f"{baseline.fleet_seconds:.0f} s, {baseline.fleet_calls:.0f} calls"
        )
    speedup = baseline.fleet_seconds / figures.measured.wall_seconds
    calls = figures.total_calls / baseline.fleet_calls
    print(
        f"cvmkeeper vs naive: {speedup:.1f}x faster (target >= 10x: {verdict(speedup >= 10)}); "
        f"time ratio {1 / speedup:.4f}; call ratio {calls:.3f}"
    )


def print_sizes(rows: list[RunFigures]) -> None:
    """How wall time, calls and memory grow with the fleet."""
    print("growth with fleet size:")
    print(
        f"  {'instances':>9} {'regions x N':>11} {'wall s':>8} {'bound s':>8} {'ratio':>6} "
        f"{'calls':>6} {'min':>6} {'RLE':>4} {'RSS MB':>7} {'CPU s':>6}"
    )
    for f in rows:
        print(
            f"  {f.shape.total_instances:9d} {f'{f.shape.regions} x {f.shape.instances}':>11} "
            f"{f.measured.wall_seconds:8.2f} {f.lower_bound:8.2f} {f.wall_ratio:6.3f} "
            f"{f.total_calls:6d} {f.total_minimum:6d} {f.throttled:4d} "
            f"{f.measured.peak_rss_mb:7.1f} {f.measured.cpu_seconds:6.2f}"
        )


def shape_for(args: argparse.Namespace, instances: int) -> FleetShape:
    """The fleet shape of one run (quota big enough to create before deleting)."""
    quota = args.quota or max(500, (args.seeded + 1) * instances)
    return FleetShape(
        regions=args.regions,
        instances=instances,
        seeded=args.seeded,
        quota=quota,
        latency_ms=args.latency_ms,
        create_seconds=args.create_seconds,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=5, help="regions (5)")
    parser.add_argument("--instances", type=int, default=200, help="instances per region (200)")
    parser.add_argument(
        "--seeded", type=int, default=3, help="managed images per instance before the run (3)"
    )
    parser.add_argument(
        "--quota",
        type=int,
        default=0,
        help="image quota per region (default: max(500, (seeded+1) x N))",
    )
    parser.add_argument("--latency-ms", type=float, default=30.0, help="per call (30)")
    parser.add_argument(
        "--create-seconds", type=float, default=2.0, help="CREATING -> NORMAL (2.0)"
    )
    parser.add_argument(
        "--sizes", default="", help="comma-separated total instance counts, e.g. 100,500,2000"
    )
    parser.add_argument(
        "--baseline-instances",
        type=int,
        default=20,
        help="instances the naive script backs up, extrapolated (20; 0: all)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive script")
    args = parser.parse_args(argv)
    if not 1 <= args.regions <= 10 or args.instances < 1 or args.seeded < KEEP_LAST:
        parser.error(f"need 1-10 regions, >= 1 instance and --seeded >= {KEEP_LAST}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every cvmkeeper run succeeded."""
    args = parse_args(argv)
    print(f"machine: {machine()}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="cvmkeeper-bench-") as tmp:
        root = Path(tmp)
        if args.sizes:
            rows = []
            for size in (int(s) for s in args.sizes.split(",") if s.strip()):
                shape = shape_for(args, max(1, size // args.regions))
                print(
                    f"\n== {shape.total_instances} instances ({shape.regions} regions x "
                    f"{shape.instances}), quota {shape.quota}, latency {shape.latency_ms:g} ms,"
                    f" create {shape.create_seconds:g} s, DeleteImages batch "
                    f"{DELETE_BATCH_SIZE}",
                    flush=True,
                )
                figures = measure_run(shape, root / f"size-{size}")
                print_run(figures)
                ok &= figures.measured.exit_code == 0
                rows.append(figures)
            print()
            print_sizes(rows)
            return 0 if ok else 1
        shape = shape_for(args, args.instances)
        print(
            f"fleet: {shape.regions} regions x {shape.instances} instances "
            f"({shape.total_instances}), {shape.seeded} managed images each, quota "
            f"{shape.quota} per region, latency {shape.latency_ms:g} ms, create "
            f"{shape.create_seconds:g} s, documented rate limits, DeleteImages batch "
            f"{DELETE_BATCH_SIZE}",
            flush=True,
        )
        figures = measure_run(shape, root / "cvmkeeper")
        print_run(figures)
        ok = figures.measured.exit_code == 0
        if not ok:
            sys.stdout.write((root / "cvmkeeper" / "run.log").read_text()[-3000:])
        if not args.no_baseline:
            print(flush=True)
            baseline = measure_baseline(shape, root / "naive", args.baseline_instances)
            print_baseline(figures, baseline)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
