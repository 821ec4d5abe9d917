"""Prometheus metrics: real runs against the emulator feed the exporter, a real HTTP scrape
on 127.0.0.1 (port 0, read back) reads them."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tests/ helpers

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.executor import run_once
from cvmkeeper.metrics import MetricsError, MetricsExporter, parse_listen, start_metrics
from cvmkeeper.restore.actions import Waiting
from cvmkeeper.restore.drill import run_drills
from executor.world import REGION, T0, A, B, fleet, managed, policy, world


def scrape(port: int) -> dict[str, float]:
    """GET /metrics and parse the samples into {'name{labels}': value}."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.fixture
def exporter_and_client(tmp_path: Path) -> Iterator[tuple[MetricsExporter, int, Any]]:
    """An emulator world, its client, and an exporter serving on a free loopback port."""
    spec = fleet(
        instances=[{"id": A}, {"id": B, "not_supported": True}],
        images=[{"id": "img-hand0001", "name": "golden"}],
    )
    document = policy(keep_last=2)  # hourly, A and B
    with world(tmp_path, spec, document) as w:
        client = w.client()
        exporter = start_metrics("127.0.0.1:0", lambda: client.stats)
        try:
            _host, port = exporter.address
            yield exporter, port, (w, client)
        finally:
            exporter.close()


def test_a_scrape_shows_backups_quota_runs_and_api_calls(
    exporter_and_client: tuple[MetricsExporter, int, Any],
) -> None:
    exporter, port, (w, client) = exporter_and_client
    before = scrape(port)
    assert not any(name.startswith("cvmkeeper_last_backup") for name in before)

    run_once(
        w.setup(),
        client,
        RecordingAlerter(),
        now=T0 + timedelta(minutes=1),
        observe=exporter.observe,
    )
    samples = scrape(port)

    slot = T0.timestamp()
    assert (
        samples[
            f'cvmkeeper_last_backup_timestamp_seconds{{instance_id="{A}",policy="hourly",'
            f'region="{REGION}"}}'
        ]
        == slot
    )
    assert samples[f'cvmkeeper_backup_stale{{instance_id="{A}",region="{REGION}"}}'] == 0
    assert samples[f'cvmkeeper_backup_stale{{instance_id="{B}",region="{REGION}"}}'] == 1
    assert samples[f'cvmkeeper_images{{owner="cvmkeeper",region="{REGION}"}}'] == 1
    assert samples[f'cvmkeeper_images{{owner="other",region="{REGION}"}}'] == 1
    assert samples[f'cvmkeeper_image_quota{{region="{REGION}"}}'] == 10
    assert samples[f'cvmkeeper_image_quota_free{{region="{REGION}"}}'] == 8
    assert samples['cvmkeeper_runs_total{result="failed"}'] == 1  # B cannot be imaged
    assert samples['cvmkeeper_run_duration_seconds_count{result="failed"}'] == 1
    assert samples['cvmkeeper_api_calls_total{action="CreateImage"}'] == 2
    assert samples['cvmkeeper_api_calls_total{action="DescribeImages"}'] >= 1
    assert (
        samples[
            'cvmkeeper_api_errors_total{action="CreateImage",code="InvalidInstance.NotSupported"}'
        ]
        == 1
    )
    assert not any(name.startswith("python_gc") for name in samples)  # a private registry


def test_a_dry_run_is_not_counted(exporter_and_client: tuple[MetricsExporter, int, Any]) -> None:
    exporter, port, (w, client) = exporter_and_client
    run_once(
        w.setup(),
        client,
        RecordingAlerter(),
        now=T0 + timedelta(minutes=1),
        dry_run=True,
        observe=exporter.observe,
    )
    assert not any(name.startswith("cvmkeeper_runs_total") for name in scrape(port))


def test_listen_addresses_are_parsed_and_bad_ones_refused() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "localhost:", "host:99999", ":80"):
        with pytest.raises(ValueError, match="host:port"):
            parse_listen(bad)


def test_a_port_in_use_is_a_clear_error() -> None:
    first = start_metrics("127.0.0.1:0", lambda: None)
    try:
        _host, port = first.address
        with pytest.raises(MetricsError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            start_metrics(f"127.0.0.1:{port}", lambda: None)
    finally:
        first.close()


def test_without_prometheus_client_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails, as uninstalled
    with pytest.raises(MetricsError, match=r"pip install 'cvmkeeper\[metrics\]'"):
        MetricsExporter(lambda: None)


def test_drills_are_counted_with_their_time_to_ready(tmp_path: Path) -> None:
    drill = {
        "zone": f"{REGION}-3",
        "vpc_id": "vpc-drill001",
        "subnet_id": "subnet-drill001",
        "security_group_ids": ["sg-drill001"],
        "instance_type": "S5.SMALL2",
    }
    spec = fleet(
        instances=[{"id": A}],
        images=[managed(A, T0, "img-aaaa0001")],
        timing={"create_seconds": 0.2, "launch_seconds": 0.2, "terminate_seconds": 0.1},
    )
    with world(tmp_path, spec, policy(ids=[A], drill=drill)) as w:
        client = w.client()
        exporter = start_metrics("127.0.0.1:0", lambda: client.stats)
        try:
            report = run_drills(
                w.setup(),
                client,
                RecordingAlerter(),
                datetime.now(UTC),
                waiting=Waiting(seconds=10, poll_seconds=0.1),
                observe=exporter.observe_drills,
            )
            samples = scrape(exporter.address[1])
        finally:
            exporter.close()
    assert report.ok
    assert samples['cvmkeeper_drills_total{policy="hourly",result="ok"}'] == 1
    assert samples[f'cvmkeeper_drill_ok{{instance_id="{A}",policy="hourly"}}'] == 1
    assert samples[f'cvmkeeper_drill_seconds_to_ready{{instance_id="{A}",policy="hourly"}}'] > 0
