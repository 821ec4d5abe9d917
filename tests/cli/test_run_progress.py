"""``cvmkeeper run``'s progress: counts per region, a heartbeat when not on a terminal,
per-image lines only with --verbose, and a status line that is cleared before any warning
or log line (checked in a real pseudo-terminal)."""

from __future__ import annotations

import io
import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.cli.run_progress import RunProgress
from cvmkeeper.executor.progress import ProgressKind, ProgressLine
from executor.world import A, B, fleet, policy, world

BIN = Path(sys.executable).parent
CLEAR = "\r\x1b[K"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


G, S = "ap-guangzhou", "ap-shanghai"


def line(
    region: str, text: str, kind: ProgressKind = ProgressKind.NOTE, state: str | None = None
) -> ProgressLine:
    """A line as ``RegionRun.say`` shows it: the text with its region, kind and state."""
    return ProgressLine(f"{region}: {text}", kind=kind, region=region, state=state)


def made(region: str, text: str) -> ProgressLine:
    return line(region, text, ProgressKind.MADE)


def settled(region: str, name: str, state: str | None) -> ProgressLine:
    return line(region, f"{name} is {state or 'gone'}", ProgressKind.SETTLED, state)


def test_counts_per_region_and_what_is_printed() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = RunProgress(stream, live=False, clock=clock)
    for message in (
        line(G, "quota 10, 1 used (1 unmanaged), 3 to create, 0 to delete"),
        made(G, "created n1 (img-1) for ins-1"),
        made(G, "created n2 (img-2) for ins-2"),
        made(G, "adopted n3 (img-3) for ins-3"),
        made(S, "created n4 (img-4) for ins-4"),
        line(G, "waiting for 3 image(s) to become NORMAL"),
        settled(G, "n1", "NORMAL"),
        settled(G, "n2", "CREATEFAILED"),
        line(G, "ERROR n2 ended CREATEFAILED", ProgressKind.ERROR),
        line(G, "deleted old (img-0): expired, kept by no retention rule", ProgressKind.DELETED),
    ):
        progress(message)
    g, s = progress.regions[G], progress.regions[S]
    assert (g.made, g.normal, g.failed_images, g.waiting, g.errors, g.deleted) == (3, 1, 1, 1, 1, 1)
    assert (s.made, s.waiting) == (1, 1)
    assert stream.getvalue().splitlines() == [
        "ap-guangzhou: quota 10, 1 used (1 unmanaged), 3 to create, 0 to delete",
        "ap-guangzhou: waiting for 3 image(s) to become NORMAL",
        "ap-guangzhou: ERROR n2 ended CREATEFAILED",
    ]
    verbose = io.StringIO()
    loud = RunProgress(verbose, live=False, verbose=True, clock=clock)
    loud(made(G, "created n1 (img-1) for ins-1"))
    loud(settled(G, "n1", "NORMAL"))
    assert verbose.getvalue().splitlines() == [
        "ap-guangzhou: created n1 (img-1) for ins-1",
        "ap-guangzhou: n1 is NORMAL",
    ]


def test_counts_come_from_the_fields_never_from_the_words() -> None:
    """Issue #20: the display does not parse the text. A line worded like a create but
    reported as a note is not counted; a made image worded any way is; a plain ``str``
    (no fields) is shown as a line of the run and counted nowhere; an image that vanished
    while waited for is a failed image, and shown."""
    stream, clock = io.StringIO(), Clock()
    progress = RunProgress(stream, live=False, clock=clock)
    progress(line(G, "created n0 (img-0) for ins-0"))  # words of a create, kind NOTE
    progress(made(G, "n1 is on its way"))  # any words, kind MADE
    progress(made(G, "another one"))
    progress("ap-shanghai: created n9 (img-9) for ins-9")  # a plain str: no region counted
    progress(settled(G, "n1", None))
    counts = progress.regions[G]
    assert (counts.made, counts.failed_images, counts.waiting) == (2, 1, 1)
    assert S not in progress.regions
    assert stream.getvalue().splitlines() == [
        "ap-guangzhou: created n0 (img-0) for ins-0",
        "ap-shanghai: created n9 (img-9) for ins-9",
        "ap-guangzhou: n1 is gone",
    ]


def test_live_progress_rewrites_one_line_and_keeps_warnings() -> None:
    stream = io.StringIO()
    display = RunProgress(stream, live=True, clock=lambda: 0.0)
    display(made(G, "created 261127-0000-aaaaaaaa (img-1) for ins-aaaaaaaa"))
    display.alert(line(G, "WARNING quota full", ProgressKind.WARNING))
    display(line(G, "deleted x (img-0): expired", ProgressKind.DELETED))
    display.close()
    text = stream.getvalue()
    assert text.startswith("\r\x1b[Kap-guangzhou 1 made, 1 waiting, 0 failed | 0s")
    assert "\r\x1b[Kap-guangzhou: WARNING quota full\n" in text
    assert text.endswith("ap-guangzhou 1 made, 1 waiting, 0 failed, 1 deleted | 0s\r\x1b[K")


def test_a_heartbeat_every_minute_when_not_on_a_terminal() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = RunProgress(stream, live=False, clock=clock)
    progress(made(G, "created n1 (img-1) for ins-1"))
    for step in range(1, 6):  # a tick every second, for 5 s: no heartbeat yet
        clock.now = 100.0 + step
        progress.tick()
    assert stream.getvalue() == ""
    clock.now = 161.0
    progress.tick()
    clock.now = 162.0
    progress.tick()
    clock.now = 222.0
    progress.tick()
    assert stream.getvalue().splitlines() == [
        "still running: ap-guangzhou 1 made, 1 waiting, 0 failed | 1m1s",
        "still running: ap-guangzhou 1 made, 1 waiting, 0 failed | 2m2s",
    ]


def test_the_live_line_is_cleared_before_a_log_record() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        progress = RunProgress(stream, live=True, clock=Clock())
        with progress.running(tick_seconds=3600):
            progress(settled(G, "n1", "NORMAL"))
            logging.getLogger("cvmkeeper.test").warning("stale backup: ins-1 is 3d old")
            progress(made(G, "created n2 (img-2) for ins-2"))
        assert handler.filters == []  # removed when the run ends
    finally:
        root.removeHandler(handler)
    text = stream.getvalue()
    assert f"{CLEAR}WARNING stale backup: ins-1 is 3d old\n" in text
    assert "NORMALWARNING" not in text and "0sWARNING" not in text
    assert text.endswith(CLEAR)


def read_pty(fd: int, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """Everything written to the terminal until the process ends (bounded in time)."""
    chunks: list[bytes] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks)


def test_on_a_real_terminal_errors_and_warnings_start_on_a_clean_line(tmp_path: Path) -> None:
    # B cannot be imaged (an ERROR line); C is targeted by a policy this run does not make
    # and has no backup (a "stale backup" warning, logged, as in the issue).
    c = "ins-cccccccc"
    spec = fleet(instances=[{"id": A}, {"id": B, "not_supported": True}, {"id": c}])
    nightly = policy("nightly", ids=[c], schedules=[{"cron": "0 3 * * *"}], catch_up="off")
    with world(tmp_path, spec, policy(ids=[A, B]), nightly) as w:
        main, child = pty.openpty()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "TENCENT"))}
        env["COLUMNS"] = "200"
        proc = subprocess.Popen(
            [
                str(BIN / "cvmkeeper"),
                "run",
                "--config",
                str(w.config_path),
                "--no-alerts",
                "--at",
                "2026-11-27T00:00Z",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=child,
            env=env,
        )
        os.close(child)
        try:
            terminal = read_pty(main, proc, 60).decode(errors="replace")
            proc.wait(timeout=60)
        finally:
            os.close(main)
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 1
    assert CLEAR in terminal  # the live status line was drawn
    assert re.search(r"ap-guangzhou \d+ made, \d+ waiting, \d+ failed", terminal)
    # every error or warning line begins after a cleared line, never glued to the status
    lines = terminal.replace("\r\n", "\n").split("\n")
    flagged = [line for line in lines if "ERROR" in line or "stale" in line.lower()]
    assert any("ERROR" in line for line in flagged), terminal
    assert any("stale backup" in line for line in flagged), terminal  # the case
    # (a warning logged by the health check comes as a log record: time, level, logger)
    record = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\+0000 (WARNING|ERROR) [\w.]+: ")
    for line in flagged:
        visible = line.split(CLEAR)[-1]  # what the terminal shows once the line is done
        visible = record.sub("", visible, count=1) if record.match(visible) else visible
        assert visible.startswith(("ap-guangzhou: ERROR", "stale backup: ")), repr(line)
    assert " created " not in terminal  # no per-image lines without --verbose
    summary = proc.stdout.read().decode() if proc.stdout else ""
    assert f"failed   hourly ap-guangzhou {B} slot 2026-11-27T00:00:00Z" in summary
    assert "ap-guangzhou: 1 made, 0 already there, 1 failed, 0 deleted" in summary
    assert "created  " not in summary  # the short summary lists only what needs a person
    # the stale-backup warning printed above is counted, as the issue asks
    assert ", 1 warning(s), 1 error(s)" in summary


def test_the_ticker_leaves_the_terminal_alone_right_after_a_log_record() -> None:
    stream = io.StringIO()
    progress = RunProgress(stream, live=True, clock=Clock())
    progress(made(G, "created n1 (img-1) for ins-1"))
    progress.clear_for_log()
    before = stream.getvalue()
    progress.tick()  # within the quiet moment: no redraw that could glue to the record
    assert stream.getvalue() == before
    progress(settled(G, "n1", "NORMAL"))  # the next message redraws at once
    assert stream.getvalue().endswith("ap-guangzhou 1 made, 0 waiting, 0 failed | 0s")


def test_the_summary_and_the_json_count_the_health_warnings_printed(tmp_path: Path) -> None:
    """As a user runs it (a process, stderr to a file): the stale-backup warning printed is
    in the summary's count and in the JSON."""
    import json

    c = "ins-cccccccc"
    spec = fleet(instances=[{"id": A}, {"id": c}])
    nightly = policy("nightly", ids=[c], schedules=[{"cron": "0 3 * * *"}], catch_up="off")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "TENCENT"))}
    with world(tmp_path, spec, policy(ids=[A]), nightly) as w:

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    str(BIN / "cvmkeeper"),
                    "run",
                    "--config",
                    str(w.config_path),
                    "--no-alerts",
                    *args,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env=env,
            )

        text = run("--at", "2026-11-27T00:00Z")
        assert text.returncode == 0, text.stderr
        printed = [line for line in text.stderr.splitlines() if "stale backup" in line]
        assert len(printed) == 1, text.stderr
        assert ", 1 warning(s), 0 error(s)" in text.stdout
        as_json = run("--at", "2026-11-27T01:00Z", "--json")
        document = json.loads(as_json.stdout)
        [warning] = document["health_warnings"]
        assert warning.startswith(f"stale backup: {c} in ")


def test_the_executor_says_what_each_line_reports(tmp_path: Path) -> None:
    """Over real HTTP: the lines of a run carry their kind, region and state, so the display
    counts a create, its NORMAL state, a delete and an error without reading the words."""
    from cvmkeeper.alerting import RecordingAlerter
    from cvmkeeper.executor import run_once
    from executor.world import REGION, T0, managed

    old = [managed(A, T0 - timedelta(hours=n), f"img-old{n:05d}") for n in (1, 2)]
    spec = fleet(instances=[{"id": A}, {"id": B, "not_supported": True}], images=old)
    with world(tmp_path, spec, policy(ids=[A, B], keep_last=2)) as w:
        shown: list[str] = []
        run_once(
            w.setup(),
            w.client(),
            RecordingAlerter(),
            now=T0 + timedelta(minutes=1),
            progress=shown.append,
        )
    lines = [line for line in shown if isinstance(line, ProgressLine)]
    assert len(lines) == len(shown)  # every line of the executor carries its fields
    kinds = [(line.kind, line.state) for line in lines]
    assert (ProgressKind.MADE, None) in kinds
    assert (ProgressKind.SETTLED, "NORMAL") in kinds
    assert (ProgressKind.DELETED, None) in kinds
    assert (ProgressKind.ERROR, None) in kinds
    assert {line.region for line in lines} == {REGION}
    made_line = next(line for line in lines if line.kind is ProgressKind.MADE)
    assert A in made_line and " created " in made_line
    deleted = next(line for line in lines if line.kind is ProgressKind.DELETED)
    assert "img-old00002" in deleted  # keep_last 2: the new image and the newest old one


def test_notifications_that_cannot_be_delivered_are_counted_and_named(tmp_path: Path) -> None:
    """A webhook that refuses every POST: its warnings are printed (some while the run's
    alerts are flushed, after the images are done), and the summary counts each and says
    the run's news may have reached no one; "0 warning(s)" hid the dead channel."""
    import json

    import yaml

    from support.http_capture import http_capture

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "TENCENT"))}
    with http_capture(statuses=[403] * 20) as hook, world(tmp_path, fleet(), policy(ids=[A])) as w:
        config = yaml.safe_load(w.config_path.read_text())
        config["notify"] = {"webhook": {"url": f"{hook.url}/hook/TOKEN-canary-4711"}}
        w.config_path.write_text(yaml.safe_dump(config))

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(BIN / "cvmkeeper"), "run", "--config", str(w.config_path), *args],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env=env,
            )

        text = run("--policy", "hourly", "--at", "2026-11-27T00:00Z")
        assert text.returncode == 0, text.stderr
        refused = [line for line in text.stderr.splitlines() if "was refused (HTTP 403)" in line]
        # the check-in that starts the run and the one that ends it
        assert len(refused) == 2, text.stderr
        assert ", 2 warning(s), 0 error(s)" in text.stdout, text.stdout
        assert "NOTIFICATIONS: 2 could not be delivered" in text.stdout
        as_json = run("--policy", "hourly", "--at", "2026-11-27T01:00Z", "--json")
        assert len(json.loads(as_json.stdout)["notification_warnings"]) == 2
        for output in (text.stdout, text.stderr, as_json.stdout, as_json.stderr):
            assert "canary-4711" not in output
