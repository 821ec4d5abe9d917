"""``make demo`` works on a fresh clone, as a newcomer would run it, and the daemon command it
prints works against the same emulator.

The clone is of /work/main's committed HEAD (``git clone`` of the repository), so it proves
what is committed, with a ``.venv`` that ``make`` creates and fills from the package
registry: slow, and still in CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvmkeeper.emulator.server import running_emulator
from docs.readme import REPO, blocks, excerpt_matches, pages

BIN = Path(sys.executable).parent
DEMO_ENDPOINT = "127.0.0.1:8765"


def newcomer_env(home: Path) -> dict[str, str]:
    """A shell environment without this project's venv or any cvmkeeper/cloud settings."""
    path = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and Path(entry).resolve() != BIN.resolve()
    ]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TENCENTCLOUD_", "SENTRY_", "CVMKEEPER_", "PYTHON"))
        and key not in ("VIRTUAL_ENV", "CREDENTIALS_DIRECTORY")
    }
    return env | {"PATH": os.pathsep.join(path), "HOME": str(home), "TMPDIR": str(home)}


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and entry.name != str(os.getpid()):
            found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.mark.slow
@pytest.mark.wallclock
@pytest.mark.timeout(1800)
def test_make_demo_on_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "cvmkeeper"
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    assert not (clone / ".venv").exists()
    proc = subprocess.run(
        ["make", "demo"],
        cwd=clone,
        env=newcomer_env(home),
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert (clone / ".venv" / "bin" / "cvmkeeper").is_file()
    # What the issue asks of the demo, as it prints it.
    assert "created  db-hourly ap-guangzhou ins-7hq3m1zc slot 2026-11-28T23:00:00Z" in output
    assert "deleted  ap-guangzhou 261128-2000-7hq3m1zc" in output
    assert "== cvmkeeper images" in output and "== cvmkeeper status" in output
    assert "cvmkeeper daemon --config config/demo.yaml" in output
    assert "ap-guangzhou: 8/10 images used, 2 free (7 by cvmkeeper, 1 others)" in output
    # The docs' excerpt (docs/operations.md) is what the clone's demo printed.
    shown = [
        block
        for page in pages(clone)
        for block in blocks(page.read_text(encoding="utf-8"))
        if block.marker == "demo-output"
    ]
    assert len(shown) == 1
    problems = excerpt_matches(shown[0].text, proc.stdout)
    assert not problems, "\n".join(problems)
    # Nothing left running, nothing left behind but the venv.
    assert processes_mentioning(str(clone)) == []
    assert not (clone / ".demo-state").exists()
    assert [p for p in home.iterdir() if p.name.startswith("tmp.")] == []
    # The inventory the SDK reads, unmanaged images included, and no secret on the screen.
    assert "region ap-guangzhou: 1/10 custom images, 3 instances" in proc.stdout
    assert "img-golden01" in proc.stdout and "img-legacy02" in proc.stdout
    secret_key = (clone / "config" / "demo-secret-key").read_text(encoding="utf-8").strip()
    assert secret_key not in output
    # The demo reports its own duration ("well under a minute" is a figure, not a test).
    assert "Demo done in " in proc.stdout


@pytest.mark.slow
@pytest.mark.wallclock
def test_the_daemon_command_the_demo_prints_runs_against_the_emulator(tmp_path: Path) -> None:
    """``cvmkeeper daemon --config config/demo.yaml`` against the demo fleet: catch-up makes
    every policy's latest slot, SIGTERM stops it cleanly.

    It runs on the real clock, and the verdict is the same at every instant: each sample
    policy's latest slot is always inside its catch-up window (web-daily's ``catch_up: 1d``
    and the others' default of one period), so the catch-up makes one slot per instance,
    whichever slots those are."""
    demo_text = (REPO / "scripts" / "demo.sh").read_text(encoding="utf-8")
    assert "cvmkeeper daemon --config config/demo.yaml" in demo_text
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "demo-secret-key", tmp_path / "config")
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    with running_emulator(REPO / "config" / "fleet-demo.yaml") as emulator:
        config = (REPO / "config" / "demo.yaml").read_text(encoding="utf-8")
        assert DEMO_ENDPOINT in config
        (tmp_path / "config" / "demo.yaml").write_text(
            config.replace(DEMO_ENDPOINT, emulator.endpoint), encoding="utf-8"
        )
        log = tmp_path / "daemon.log"
        with log.open("w") as sink:
            daemon = subprocess.Popen(
                [
                    str(BIN / "cvmkeeper"),
                    "daemon",
                    "--config",
                    "config/demo.yaml",
                    "--log-format",
                    "text",
                ],
                cwd=tmp_path,
                env=newcomer_env(tmp_path),
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and "catch-up finished" not in log.read_text():
                    assert daemon.poll() is None, log.read_text()
                    time.sleep(0.2)
            finally:
                daemon.send_signal(signal.SIGTERM)
                code = daemon.wait(timeout=90)
        text = log.read_text()
        assert "catch-up finished: ok (5 slots)" in text, text
        assert code == 0, text
        state = emulator.core.call("DescribeImages", "ap-guangzhou", {"Limit": 100})
        names = [image["ImageName"] for image in state["ImageSet"]]
        assert any(name.endswith("-7hq3m1zc") for name in names), names
    assert (tmp_path / ".demo-state" / "daemon-state.json").is_file()
    shown = "".join(page.read_text(encoding="utf-8") for page in pages())
    assert shown.count("cvmkeeper daemon --config config/demo.yaml") >= 1
