"""The Grafana dashboard and the Prometheus alert rules in ``monitoring/`` fit the daemon:
every expression parses as PromQL (``promql-parser``, the Rust PromQL parser of GreptimeDB,
the same grammar as Prometheus), and every metric they read is one the exporter serves,
as a real scrape over HTTP on 127.0.0.1 shows."""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tests/ helpers

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.executor import run_once
from cvmkeeper.metrics import start_metrics
from executor.world import T0, A, B, fleet, policy, world

promql_parser = pytest.importorskip("promql_parser")

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "monitoring" / "cvmkeeper-dashboard.json"
RULES = REPO / "monitoring" / "cvmkeeper-alerts.yaml"
#: Prometheus's own series, which no exporter serves
PROMETHEUS_SERIES = {"up"}
#: Grafana's variables, replaced by what Grafana would put there before the query runs
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$region": ".*"}


def dashboard_exprs() -> list[str]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in document["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    return exprs


def rule_exprs() -> list[str]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert rules and all({"alert", "expr", "labels", "annotations"} <= set(r) for r in rules)
    assert all(r["labels"]["severity"] in ("warning", "critical") for r in rules)
    return [str(rule["expr"]) for rule in rules]


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr!r}"
    return expr


def selected_metrics(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The metric names a real exporter serves after a real run (one failed instance, so
    every series, errors included, exists)."""
    spec = fleet(instances=[{"id": A}, {"id": B, "not_supported": True}])
    document = policy(keep_last=2)  # hourly, A and B
    with world(tmp_path_factory.mktemp("world"), spec, document) as w:
        client = w.client()
        exporter = start_metrics("127.0.0.1:0", lambda: client.stats)
        try:
            run_once(
                w.setup(),
                client,
                RecordingAlerter(),
                now=T0 + timedelta(minutes=1),
                observe=exporter.observe,
            )
            _, port = exporter.address
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as got:
                text = got.read().decode()
        finally:
            exporter.close()
    return {
        re.split(r"[{ ]", line)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.mark.parametrize("expr", dashboard_exprs() + rule_exprs())
def test_every_expression_parses(expr: str) -> None:
    promql_parser.parse(grafana_to_promql(expr))


def test_the_parser_really_rejects_bad_promql() -> None:
    for bad in ("sum(cvmkeeper_images", "rate(cvmkeeper_runs_total)", "cvmkeeper_images{"):
        with pytest.raises(ValueError):
            promql_parser.parse(bad)


def test_every_metric_used_is_exported(exported: set[str]) -> None:
    assert "cvmkeeper_runs_total" in exported and "cvmkeeper_api_errors_total" in exported
    used: set[str] = set()
    for expr in dashboard_exprs() + rule_exprs():
        used |= selected_metrics(grafana_to_promql(expr))
    assert used - PROMETHEUS_SERIES <= exported, sorted(used - PROMETHEUS_SERIES - exported)
    # and the dashboard shows every family the daemon exports
    families = {re.sub(r"_(bucket|count|sum|created|total)$", "", n) for n in exported}
    shown = {re.sub(r"_(bucket|count|sum|created|total)$", "", n) for n in used}
    assert families <= shown, sorted(families - shown)


def test_dashboard_is_importable_json_with_unique_panel_ids() -> None:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in document["panels"]]
    assert len(ids) == len(set(ids))
    assert document["uid"] == "cvmkeeper"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in document["panels"])


#: the labels Prometheus attaches to every scraped series: a metric label of the same name
#: is renamed ``exported_instance`` at scrape time, so rules grouping ``by (instance)``
#: group by the daemon's host:port and an alert names the host, not the CVM instance
TARGET_LABELS = {"instance", "job"}


def test_no_metric_label_collides_with_a_prometheus_target_label() -> None:
    exporter = start_metrics("127.0.0.1:0", dict)
    try:
        families = [value for value in vars(exporter).values() if hasattr(value, "_labelnames")]
    finally:
        exporter.close()
    assert len(families) >= 10
    labels = {name: set(family._labelnames) for family in families for name in [family._name]}
    assert not {n: ls & TARGET_LABELS for n, ls in labels.items() if ls & TARGET_LABELS}
    assert "instance_id" in labels["cvmkeeper_backup_stale"]
    # and the per-CVM-instance rules group and name by that label
    stale = next(r for r in rule_exprs() if "cvmkeeper_backup_stale" in r)
    assert "by (region, instance_id)" in stale
    assert "$labels.instance }}" not in RULES.read_text(encoding="utf-8")
