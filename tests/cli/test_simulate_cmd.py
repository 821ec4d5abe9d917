"""``cvmkeeper simulate``: what a policy keeps after many days, from the pure core."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cvmkeeper.cli import cli

CONFIG = str(Path(__file__).resolve().parents[2] / "config" / "cvmkeeper.yaml")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["simulate", "--config", CONFIG, *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_after_400_days_of_the_gfs_sample() -> None:
    code, out, err = invoke(
        "--policy", "web-daily", "--days", "400", "--at", "2026-01-01", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["policy"] == "web-daily"
    assert result["slots"] == result["created"] == 400
    assert result["deleted"] == 400 - len(result["kept"])
    assert result["peak"] == result["peak_after_rotation"] + 1
    assert result["peak_after_rotation"] <= 3
    kept = result["kept"]
    assert kept[0]["slot"] == "2027-02-04T18:00:00Z"
    assert kept[0]["reasons"][0] == "newest NORMAL"
    assert all(k["name"].endswith("-00000000") for k in kept)
    # the sample keeps today's, yesterday's and last week's newest (its bound, 3)
    assert [k["reasons"][-1] for k in kept[1:]] == [
        "keep_daily #2 (2027-02-04)",
        "keep_weekly #2 (2027-W04)",
    ]


def test_text_lists_kept_images_with_dates_and_reasons() -> None:
    code, out, _ = invoke("--policy", "db-hourly", "--days", "2", "--at", "2026-01-01T00:00Z")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        "db-hourly: 2 days from 2026-01-01T00:00:00Z: 48 slots, 48 images created, 45 deleted"
    )
    assert lines[1].startswith("most images held at once: 4 right after a create, 3 after")
    assert lines[2] == "kept at the end (3), newest first:"
    assert (
        lines[3] == "  2026-01-03T00:00:00Z  2026-01-03 00:00 Sat UTC  newest NORMAL; keep_last #1"
    )


def test_unknown_policy_is_exit_2() -> None:
    code, _, err = invoke("--policy", "nope")
    assert code == 2 and "unknown policy 'nope'" in err
