"""The post-run check warns about copy sets whose newest copy is stale, once, and only
when nothing else already said why (the run's own alerts, a stale source backup)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.alerting.health_alerts import COPY_FRESHNESS_ACTION
from cvmkeeper.config import Setup, load_setup
from cvmkeeper.core.inventory import Image, ImageState, Instance, Inventory
from cvmkeeper.core.naming import image_description, image_name, image_tags
from cvmkeeper.executor.report import RunReport
from cvmkeeper.executor.run_health import check_run_health
from executor.world import DEST, REGION, A, policy, write_config

NOW = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)


def copy_setup(tmp_path: Path) -> Setup:
    """An hourly policy for A in REGION copying to DEST (config never contacted)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_config(tmp_path, "127.0.0.1:9")
    document = policy(ids=[A], keep_last=3, copies=[{"region": DEST}])
    (tmp_path / "policies" / "hourly.yaml").write_text(yaml.safe_dump(document))
    return load_setup(config)


def image(region: str, hours_ago: int, image_id: str) -> Image:
    slot = NOW.replace(minute=0) - timedelta(hours=hours_ago)
    return Image(
        image_id,
        image_name(A, slot),
        ImageState.NORMAL,
        slot,
        region,
        image_description(("hourly",), slot),
        tags=image_tags(("hourly",), A, slot),
    )


def inventories(source_age: int, copy_age: int) -> tuple[Inventory, Inventory]:
    source = Inventory(
        REGION,
        10,
        (image(REGION, source_age, "img-src"),),
        (Instance(A, "web-1", "RUNNING", REGION),),
    )
    return source, Inventory(DEST, 10, (image(DEST, copy_age, "img-copy"),), ())


def check(tmp_path: Path, source_age: int, copy_age: int) -> RecordingAlerter:
    setup = copy_setup(tmp_path)
    source, dest = inventories(source_age, copy_age)
    alerter = RecordingAlerter()
    report = RunReport(started=NOW, finished=NOW, outcomes=())
    check_run_health(
        setup, report, {REGION: source}, alerter, NOW, copy_reads={DEST: (dest, {REGION: source})}
    )
    return alerter


def test_a_stale_copy_of_a_fresh_backup_is_a_warning(tmp_path: Path) -> None:
    alerter = check(tmp_path, source_age=0, copy_age=6)
    [warning] = alerter.warnings
    assert (warning.action, warning.policy, warning.instance, warning.region) == (
        COPY_FRESHNESS_ACTION,
        "hourly",
        A,
        DEST,
    )
    assert warning.message.startswith(
        f"stale copies: copies of {A} (from {REGION}) in {DEST}: 1 held, newest "
    )


def test_fresh_copies_and_copies_of_a_stale_backup_add_no_copy_warning(tmp_path: Path) -> None:
    assert check(tmp_path / "fresh", source_age=0, copy_age=1).warnings == []
    stale_source = check(tmp_path / "stale", source_age=6, copy_age=6)
    assert [w.action for w in stale_source.warnings] == ["freshness"]  # the cause, once
