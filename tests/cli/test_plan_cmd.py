"""``cvmkeeper plan``: read-only, per region the numbers, the steps and each image's fate."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.cli import cli
from cvmkeeper.core.naming import image_name
from executor.world import REGION, T0, A, B, fleet, managed, policy, unmanaged, world

AT = (T0 + timedelta(hours=4, minutes=1)).strftime("%Y-%m-%dT%H:%MZ")


def images() -> list[dict[str, object]]:
    """Quota 10 full: 2 unmanaged, 4 images of A and of B (hours 0-3)."""
    hand = [unmanaged("img-hand0001", "golden-1"), unmanaged("img-hand0002", "golden-2")]
    return hand + [
        managed(i, T0 + timedelta(hours=h), f"img-{i[4:8]}000{h}") for i in (A, B) for h in range(4)
    ]


def test_plan_json_has_the_numbers_the_steps_with_reasons_and_the_kept_images(
    tmp_path: Path,
) -> None:
    with world(tmp_path, fleet(images=images()), policy(keep_last=4)) as w:
        result = CliRunner().invoke(
            cli, ["plan", "--config", str(w.config_path), "--at", AT, "--json"]
        )
        assert result.exit_code == 0, result.output
        assert w.writes() == []  # read-only
        [region] = json.loads(result.stdout)["regions"]
        assert (
            region["region"],
            region["quota"],
            region["used"],
            region["unmanaged"],
            region["free"],
        ) == (REGION, 10, 10, 2, 0)
        kinds = [(s["type"], s.get("phase")) for s in region["steps"]]
        assert kinds == [
            ("delete", "before_create"),
            ("create", None),
            ("create", None),
            ("wait", None),
        ]
        early = region["steps"][0]["images"]
        assert {i["image_name"] for i in early} == {image_name(i, T0) for i in (A, B)}
        assert all("expired" in i["reason"] for i in early)
        assert all(s["reason"] for s in region["steps"] if s["type"] == "create")
        kept = {i["image_name"]: i for i in region["images"] if i["keep"]}
        assert len(kept) == 6
        assert all(any("keep_last" in r for r in i["reasons"]) for i in kept.values())


def test_plan_text_names_each_step_and_rule(tmp_path: Path) -> None:
    with world(tmp_path, fleet(images=images()), policy(keep_last=4)) as w:
        result = CliRunner().invoke(cli, ["plan", "--config", str(w.config_path), "--at", AT])
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert f"{REGION}: quota 10, used 10 (2 unmanaged), free 0" in out
        assert f"create {image_name(A, T0 + timedelta(hours=4))}" in out
        assert "delete expire (before the creates)" in out
        assert "keep: keep_last" in out
        assert "golden" not in out  # unmanaged images are counted, not listed as steps
        assert w.writes() == []


def test_plan_for_a_policy_and_a_region_filter(tmp_path: Path) -> None:
    other = policy("other", ids=[B], regions=["ap-shanghai"])
    with world(tmp_path, fleet(), policy(ids=[A]), other) as w:
        result = CliRunner().invoke(
            cli,
            [
                "plan",
                "--config",
                str(w.config_path),
                "--policy",
                "hourly",
                "--region",
                REGION,
                "--at",
                AT,
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        [region] = json.loads(result.stdout)["regions"]
        assert [s["instance_id"] for s in region["steps"] if s["type"] == "create"] == [A]


def test_plan_exits_1_when_a_region_cannot_be_read(tmp_path: Path) -> None:
    other = policy("other", ids=[B], regions=["ap-shanghai"])
    with world(tmp_path, fleet(), policy(ids=[A]), other) as w:
        result = CliRunner().invoke(cli, ["plan", "--config", str(w.config_path), "--at", AT])
        assert result.exit_code == 1
        assert "ap-shanghai: cannot read the inventory" in result.stderr
        assert f"{REGION}: quota 10" in result.stdout


def test_every_policy_appears_with_its_state(tmp_path: Path) -> None:
    """A policy that is not due is listed as such, with why and its next slot (issue #17)."""
    nightly = policy("nightly", ids=[B], schedules=[{"cron": "0 3 * * *"}], catch_up="30m")
    with world(tmp_path, fleet(), policy(ids=[A]), nightly) as w:
        text = CliRunner().invoke(cli, ["plan", "--config", str(w.config_path), "--at", AT])
        assert text.exit_code == 0, text.output
        lines = text.stdout.splitlines()
        start = lines.index("policies:")
        assert lines[start + 1 : start + 3] == [
            "  hourly: due: slot 2026-11-27T04:00Z is within its catch-up window (1h); "
            "next slot 2026-11-27T05:00Z",
            "  nightly: not due: latest slot 2026-11-27T03:00Z is older than its catch-up "
            "window (30m); next slot 2026-11-28T03:00Z",
        ]
        named = CliRunner().invoke(
            cli,
            ["plan", "--config", str(w.config_path), "--at", AT, "--policy", "nightly", "--json"],
        )
        assert named.exit_code == 0, named.output
        [state] = json.loads(named.stdout)["policies"]
        assert (state["name"], state["state"], state["latest_slot"], state["next_slot"]) == (
            "nightly",
            "named",
            "2026-11-27T03:00:00Z",
            "2026-11-28T03:00:00Z",
        )
        assert state["catch_up_seconds"] == 1800


def test_a_wait_for_many_images_names_a_few_not_all(tmp_path: Path) -> None:
    """Eight instances due at once: the wait step names five images and counts the rest
    (at 100 instances a region's wait line was 3 KB of names the creates already list)."""
    ids = [f"ins-w{n:07d}" for n in range(8)]
    spec = fleet(quota=20, instances=[{"id": i} for i in ids])
    with world(tmp_path, spec, policy(ids=ids), quota=20) as w:
        result = CliRunner().invoke(cli, ["plan", "--config", str(w.config_path), "--at", AT])
        assert result.exit_code == 0, result.output
        [wait] = [line for line in result.stdout.splitlines() if ". wait for " in line]
        assert "wait for 8 image(s) (" in wait
        assert ", and 3 more (the creates above))" in wait
        assert (
            sum(name in wait for name in (image_name(i, T0 + timedelta(hours=4)) for i in ids)) == 5
        )
