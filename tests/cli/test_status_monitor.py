"""``cvmkeeper status`` in bounded time against a silent endpoint, loud when the cloud cannot
be read, and ``--monitor``: a Nagios/Icinga plugin (exit 0/1/2/3 and perfdata)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.cli import cli
from cvmkeeper.cli.region_reads import read_regions
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.executor import run_once
from executor.world import REGION, SECRET_ID, SECRET_KEY, T0, A, World, fleet, policy, world

BIN = Path(sys.executable).parent
#: 'label'=value[UOM];[warn];[crit];[min];[max] (Monitoring Plugins guidelines); trailing
#: fields may be left out
PERFDATA = re.compile(r"^('[^'=]+'|[^'= ]+)=(\d+(\.\d+)?|U)(;[\d:@~.]*){0,4}$")


@contextlib.contextmanager
def silent_endpoint() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        deadline = time.monotonic() + 120  # bounded even if a test forgets to stop it
        while not stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                connection, _ = server.accept()
                held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        server.close()


def silent_config(tmp_path: Path, endpoint: str) -> Path:
    key = tmp_path / "secret_key"
    key.write_text(SECRET_KEY + "\n")
    key.chmod(0o600)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "web.yaml").write_text(yaml.safe_dump(policy()))
    config = tmp_path / "cvmkeeper.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "policies_dir": "policies",
                "state_dir": "state",
                "regions": [REGION, "ap-shanghai", "ap-beijing"],
                "cloud": {"endpoint": endpoint, "scheme": "http", "timeout": "30s"},
                "credentials": {
                    "secret_id": SECRET_ID,
                    "secret_key_file": str(key),
                    "cvm_role": False,
                },
            }
        )
    )
    (tmp_path / "policies" / "web.yaml").write_text(
        yaml.safe_dump(policy() | {"regions": [REGION, "ap-shanghai", "ap-beijing"]})
    )
    return config


def run_installed(*args: str) -> tuple[int, str, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENCENTCLOUD_", "SENTRY_"))}
    started = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "cvmkeeper"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def test_a_silent_endpoint_is_reported_loudly_within_the_timeout(tmp_path: Path) -> None:
    with silent_endpoint() as endpoint:
        config = silent_config(tmp_path, endpoint)
        code, out, err, took = run_installed("status", "--config", str(config), "--timeout", "2")
        assert took < 15, f"status took {took:.1f}s against a silent endpoint"
        assert code == 1, err
        assert "CLOUD NOT READ: 3 of 3 regions could not be read" in out
        assert "STALE BACKUPS: UNKNOWN (no region could be read)" in out
        assert "STALE BACKUPS (0)" not in out and "\n  none\n\nRECENT" not in out
        assert "no answer within 2s" in out
        assert out.rstrip().endswith(
            f"needs attention: the cloud could not be read in {REGION}, ap-shanghai, ap-beijing"
        )

        code, out, _, took = run_installed(
            "status", "--config", str(config), "--timeout", "1", "--json"
        )
        assert took < 15
        assert code == 1
        report = json.loads(out)
        assert [r["error"] is not None for r in report["regions"]] == [True] * 3
        # undetermined, not "nothing stale": a script must not read [] as all fresh
        assert report["stale"] is None and report["stale_copies"] is None

        code, out, _, took = run_installed(
            "status", "--config", str(config), "--timeout", "1", "--monitor"
        )
        assert took < 15
        assert code == 3
        first = out.splitlines()[0]
        assert first.startswith("CVMKEEPER UNKNOWN - cannot read 3 of 3 regions")
        assert "unreadable_regions=3;;;0;3" in first
        # no region read: the stale counts are undetermined, not a graphed 0
        perf = perfdata(first)
        assert (perf["stale_backups"], perf["stale_copies"]) == ("U;;1;0", "U;;1;0")


def test_read_regions_keeps_order_and_reports_errors_and_the_deadline() -> None:
    release = threading.Event()

    def read(region: str) -> str:
        if region == "slow":
            release.wait(10)
        if region == "broken":
            raise CloudError(
                "AuthFailure.SignatureFailure", "bad signature", action="X", region=region
            )
        return region.upper()

    started = time.monotonic()
    try:
        got = read_regions(["b", "slow", "a", "broken"], read, 0.5)
    finally:
        release.set()
    assert time.monotonic() - started < 5
    assert list(got.read.items()) == [("b", "B"), ("a", "A")]
    assert list(got.unreadable) == ["slow", "broken"]
    assert "no answer within 0.5s" in got.unreadable["slow"]
    assert "AuthFailure.SignatureFailure: bad signature" in got.unreadable["broken"]


def configure(w: World, **sentry: Any) -> None:
    document = yaml.safe_load(w.config_path.read_text())
    document["sentry"] = sentry or {"quota_free_warning": 1}
    w.config_path.write_text(yaml.safe_dump(document))


def monitor(w: World, hours: float) -> Result:
    when = (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%MZ")
    return CliRunner().invoke(
        cli, ["status", "--config", str(w.config_path), "--at", when, "--monitor"]
    )


def perfdata(first_line: str) -> dict[str, str]:
    _, _, perf = first_line.partition(" | ")
    items = perf.split()
    for item in items:
        assert PERFDATA.match(item), item
    return dict(item.split("=", 1) for item in items)


def test_monitor_ok_then_critical_when_backups_go_stale(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A])) as w:
        configure(w)
        report = run_once(
            w.setup(),
            w.client(),
            RecordingAlerter(),
            now=T0 + timedelta(minutes=1),
            policy_names=["hourly"],
        )
        assert report.ok, report.errors
        fresh = monitor(w, 0.5)
        assert fresh.exit_code == 0, fresh.output
        first = fresh.output.splitlines()[0]
        assert first.startswith("CVMKEEPER OK - 1 policies, 1 regions, 1 instances")
        perf = perfdata(first)
        assert perf["stale_backups"] == "0;;1;0"
        assert perf[f"'{REGION}_free'"] == "9;1:;;0;10"
        assert perf[f"'{REGION}_used'"] == "1;;;0;10"

        stale = monitor(w, 5)
        assert stale.exit_code == 2
        lines = stale.output.splitlines()
        assert lines[0].startswith("CVMKEEPER CRITICAL - 1 stale backup |")
        assert perfdata(lines[0])["stale_backups"] == "1;;1;0"
        assert any(A in line and "old" in line for line in lines[1:])


def test_monitor_warns_on_low_quota(tmp_path: Path) -> None:
    with world(tmp_path, fleet(quota=2), policy(ids=[A]), quota=2) as w:
        configure(w, quota_free_warning=2)
        report = run_once(
            w.setup(),
            w.client(),
            RecordingAlerter(),
            now=T0 + timedelta(minutes=1),
            policy_names=["hourly"],
        )
        assert report.ok, report.errors
        result = monitor(w, 0.5)
        assert result.exit_code == 1, result.output
        assert result.output.startswith(f"CVMKEEPER WARNING - quota low in {REGION} (1 free) |")


def test_monitor_reports_an_invalid_config_as_unknown_not_critical(tmp_path: Path) -> None:
    bad = tmp_path / "cvmkeeper.yaml"
    bad.write_text("image_quota: many\n")
    result = CliRunner().invoke(cli, ["status", "--config", str(bad), "--monitor"])
    assert result.exit_code == 3
    assert result.output.startswith("CVMKEEPER UNKNOWN - config invalid (2 problems):")
    assert "image_quota" in result.output


def test_monitor_warns_when_a_backup_leaves_a_disk_out(tmp_path: Path) -> None:
    """Rule 10 in monitoring: a local disk no image can hold is a WARNING, named below."""
    scratch = {"id": "disk-scratch1", "type": "LOCAL_SSD", "size": 100}
    spec = fleet(instances=({"id": A, "data_disks": [scratch]},))
    with world(tmp_path, spec, policy("db", ids=[A])) as w:
        configure(w)
        report = run_once(
            w.setup(), w.client(), RecordingAlerter(), now=T0.replace(hour=1, minute=1)
        )
        assert report.ok, report.errors
        result = CliRunner().invoke(
            cli,
            ["status", "--config", str(w.config_path), "--at", "2026-11-27T01:30Z", "--monitor"],
        )
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("CVMKEEPER WARNING - 1 disk warning |")
    assert any("disk-scratch1" in line for line in lines[1:])


def test_images_against_a_silent_endpoint_is_bounded_by_its_timeout(tmp_path: Path) -> None:
    """``images`` read regions one after another, each call waiting out cloud.timeout and
    its retries: six minutes for three silent regions. Now in parallel, within --timeout."""
    with silent_endpoint() as endpoint:
        config = silent_config(tmp_path, endpoint)
        code, _, err, took = run_installed("images", "--config", str(config), "--timeout", "2")
        assert took < 15, f"images took {took:.1f}s against a silent endpoint"
        assert code == 1, err
        for region in (REGION, "ap-shanghai", "ap-beijing"):
            assert f"images: {region}: cannot read the inventory: no answer within 2s" in err
