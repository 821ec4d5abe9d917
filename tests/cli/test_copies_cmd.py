"""Copies in the commands: plan, run, images, simulate and validate show each copy region.

CliRunner with real config and policy files; plan, run and images against a two-region
emulator over HTTP with the real SDK; simulate and validate from the files alone.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.cli import cli
from cvmkeeper.core.naming import image_name
from executor.world import (
    DEST,
    REGION,
    T0,
    A,
    World,
    managed,
    policy,
    two_regions,
    world,
    write_config,
)

COPYING = policy(ids=[A], keep_last=3, copies=[{"region": DEST, "retention": {"keep_last": 2}}])


def at(hours: int, minutes: int = 1) -> str:
    """An ``--at`` value just after the slot ``hours`` after T0."""
    return (T0 + timedelta(hours=hours, minutes=minutes)).strftime("%Y-%m-%dT%H:%MZ")


def invoke(w: World, command: str, *args: str) -> Result:
    """Run a command on the world's config."""
    return CliRunner().invoke(cli, [command, "--config", str(w.config_path), *args])


def test_plan_run_and_images_show_the_copies_of_each_destination(tmp_path: Path) -> None:
    with world(tmp_path, two_regions(), COPYING) as w:
        first = invoke(w, "run", "--at", at(0), "--no-alerts", "--verbose")
        assert first.exit_code == 0, first.output
        name0 = image_name(A, T0)
        assert f"copied   copy hourly {REGION} -> {DEST} {A}" in first.stdout
        assert "ok: 1 image(s) made, 1 copied to other regions" in first.stdout

        # plan at the next slot: the source image exists, the new one is not made yet
        plan = invoke(w, "plan", "--at", at(1), "--json")
        assert plan.exit_code == 0, plan.output
        planned: dict[str, Any] = json.loads(plan.stdout)
        [copies] = planned["copies"]
        assert copies["region"] == DEST and copies["steps"] == []  # name0 is copied already
        text = invoke(w, "plan", "--at", at(1))
        assert f"{DEST} (copies into it): quota 10, used 1" in text.stdout

        second = invoke(w, "run", "--at", at(1), "--json", "--no-alerts")
        assert second.exit_code == 0, second.output
        report: dict[str, Any] = json.loads(second.stdout)
        [copy] = report["copies"]
        assert (copy["region"], copy["source_region"], copy["status"]) == (DEST, REGION, "copied")
        assert copy["image_name"] == image_name(A, T0 + timedelta(hours=1))
        assert DEST in report["copy_plans"]

        listed = invoke(w, "images", "--json")
        assert listed.exit_code == 0, listed.output
        regions = {r["region"]: r for r in json.loads(listed.stdout)["regions"]}
        assert regions[DEST]["copies_from"] == {A: REGION}
        kept = regions[DEST]["instances"][A]
        assert {image["image_name"] for image in kept} == {
            name0,
            image_name(A, T0 + timedelta(hours=1)),
        }
        assert all("keep_last" in image["kept_by"] for image in kept)
        text_list = invoke(w, "images", "--region", DEST)
        assert f"{A} (copies; the instance is in {REGION})" in text_list.stdout


def test_dry_run_shows_the_copy_step(tmp_path: Path) -> None:
    with world(tmp_path, two_regions(), COPYING) as w:
        assert invoke(w, "run", "--at", at(0), "--no-alerts", "--region", REGION).exit_code == 0
        assert w.state()["regions"][DEST]["images"] == []  # --region: the source only
        dry = invoke(w, "run", "--at", at(0, 30), "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert f"copy {image_name(A, T0)} of {A} from {REGION}" in dry.stdout
        assert w.state()["regions"][DEST]["images"] == []


def write_files(tmp_path: Path, copies: str, *, quota: int = 10) -> Path:
    """A config (never contacted) and one policy file with ``copies``."""
    config = write_config(tmp_path, "127.0.0.1:9", quota=quota)
    (tmp_path / "policies" / "web.yaml").write_text(
        "name: web\nregions: [ap-guangzhou]\ntargets: {instance_ids: [ins-aaaaaaaa, "
        "ins-bbbbbbbb]}\nschedules: [{every: 1h}]\nretention: {keep_last: 3}\n" + copies
    )
    return config


def test_validate_adds_the_copies_to_the_destination_worst_case(tmp_path: Path) -> None:
    config = write_files(tmp_path, "copies: [{region: ap-shanghai, retention: {keep_last: 6}}]\n")
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert result.exit_code == 2
    assert (
        "ap-shanghai: web copies 6 x 2 instances = 12 > quota 10: retention wants more images"
    ) in result.stderr
    fits = write_files(tmp_path, "copies: [{region: ap-shanghai}]\n")
    ok = CliRunner().invoke(cli, ["validate", "--config", str(fits)])
    assert ok.exit_code == 0, ok.stderr
    assert "copies to ap-shanghai hold at most keep_last 3 + min_keep 1" in ok.stdout
    assert (
        "quota ap-shanghai: web copies 3 x 2 instances = 6 <= quota 10 (offline: the cap "
        "image_quota)"
    ) in ok.stdout


def test_simulate_replays_each_copy_region_by_its_own_retention(tmp_path: Path) -> None:
    config = write_files(tmp_path, "copies: [{region: ap-shanghai, retention: {keep_last: 5}}]\n")
    args = [
        "simulate",
        "--config",
        str(config),
        "--policy",
        "web",
        "--days",
        "1",
        "--at",
        "2026-01-01T00:00Z",
    ]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    simulated = json.loads(result.stdout)
    assert len(simulated["kept"]) == 3
    [copies] = simulated["copies"]
    assert copies["region"] == "ap-shanghai" and copies["created"] == 24
    assert len(copies["kept"]) == 5 and copies["peak"] == 6
    text = CliRunner().invoke(cli, args)
    assert "copies kept in ap-shanghai at the end (5), newest first:" in text.stdout


def test_validate_online_names_a_region_pair_the_cloud_refuses(tmp_path: Path) -> None:
    for part in ("refused", "allowed", "empty"):
        (tmp_path / part).mkdir()
    source = [managed(A, T0, "img-src00001")]
    refused = two_regions(source_images=source, sync_disallowed_pairs=[[REGION, DEST]])
    with world(tmp_path / "refused", refused, COPYING) as w:
        result = invoke(w, "validate", "--online")
        assert result.exit_code == 0, result.output
        assert (
            f"warning: policy hourly: the cloud refuses copies from {REGION} to {DEST} "
            "(InvalidRegion.Unavailable" in result.stdout
        )
        [probe] = [e for e in w.writes() if e["action"] == "SyncImages"]
        assert probe["params"]["DryRun"] is True
        assert w.state()["regions"][DEST]["images"] == []  # nothing copied
    with world(tmp_path / "allowed", two_regions(source_images=source), COPYING) as w:
        result = invoke(w, "validate", "--online")
        assert result.exit_code == 0 and "refuses" not in result.stdout, result.output
    with world(tmp_path / "empty", refused, COPYING) as w:
        w.client().delete_images(REGION, ["img-src00001"])
        result = invoke(w, "validate", "--online")
        assert f"cannot check that {REGION} may copy to {DEST}" in result.stdout, result.output
