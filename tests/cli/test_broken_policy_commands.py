"""``drill``, ``schedule``, ``simulate`` and ``restore`` with one bad policy file among good
ones (issue #19): each does its work with the good policies, names the bad file with
file:line:key on stderr (and in ``--json`` as ``broken_policy_files``) and exits 1; a
``--policy`` that only the bad file defines is refused (exit 2) with nothing done; and
``restore``, which needs no policy, works even when every policy file is bad. Real SDK,
emulator over HTTP. (``plan``, ``images``, ``status``, ``report``:
tests/cli/test_broken_policy_views.py.)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.cli import cli
from executor.world import REGION, T0, A, B, World, fleet, managed, policy, world

#: line 5 has the typo ``keep_dayly``
BROKEN = (
    "name: weekly\n"
    "regions: [ap-guangzhou]\n"
    "targets: {instance_ids: [ins-aaaaaaaa]}\n"
    "schedules: [{every: 1h}]\n"
    "retention: {keep_last: 2, keep_dayly: 7}\n"
)
AT = (T0 + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%MZ")
DRILL = {
    "every": "7d",
    "zone": f"{REGION}-3",
    "vpc_id": "vpc-drill001",
    "subnet_id": "subnet-drill001",
    "security_group_ids": ["sg-drill001"],
    "instance_type": "S5.SMALL2",
    "timeout": "1m",
}


@contextmanager
def broken_world(tmp_path: Path, *, drill: bool = False) -> Iterator[World]:
    """``hourly`` (good, targets A; with a drill key if ``drill``) and ``weekly.yaml`` (bad,
    line 5); A has an image of each policy."""
    images = [
        managed(A, T0 - timedelta(hours=5), "img-week0001", policy="weekly"),
        managed(A, T0 - timedelta(hours=1), "img-hour0001"),
    ]
    spec = fleet(images=images, launch={"private_ip": "127.0.0.1"})
    extra: dict[str, Any] = {"drill": DRILL} if drill else {}
    with world(tmp_path, spec, policy(ids=[A], **extra)) as w:
        (w.root / "policies" / "weekly.yaml").write_text(BROKEN)
        yield w


def invoke(w: World, *args: str) -> Result:
    return CliRunner().invoke(cli, [args[0], "--config", str(w.config_path), *args[1:]])


def assert_named(result: Result, command: str) -> None:
    """The bad file on stderr, with line and key."""
    assert "Traceback" not in result.output
    assert f"{command}: WARNING policy file" in result.stderr
    assert "weekly.yaml:5:" in result.stderr and "keep_dayly" in result.stderr


def assert_broken_json(entries: Any) -> None:
    [entry] = entries
    assert entry["file"].endswith("weekly.yaml") and entry["policy"] == "weekly"
    assert any(p["line"] == 5 and "keep_dayly" in p["text"] for p in entry["problems"])


def assert_refused_for_weekly(result: Result, command: str) -> None:
    """``--policy weekly``: the file and its problem said plainly, nothing done."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{command}: policy 'weekly' cannot be used: its file" in result.stderr
    assert "nothing was done" in result.stderr and "weekly.yaml:5:" in result.stderr
    assert result.stdout == ""


def launched(w: World) -> list[dict[str, Any]]:
    return [e for e in w.writes() if e["action"] == "RunInstances" and e["result"] == "ok"]


def test_schedule_shows_the_good_policy_names_the_bad_file_and_exits_1(tmp_path: Path) -> None:
    with broken_world(tmp_path) as w:
        text = invoke(w, "schedule", "--at", AT, "--count", "2")
        assert text.exit_code == 1, text.output
        assert_named(text, "schedule")
        assert text.stdout.startswith("hourly: every 1h")
        rows = json.loads(invoke(w, "schedule", "--at", AT, "--json").stdout)
        good, bad = rows  # the list keeps its shape: one row more, for the bad file
        assert good["policy"] == "hourly" and len(good["next"]) == 5
        assert bad["policy"] == "weekly" and bad["next"] == []
        assert_broken_json([bad["broken_policy_file"]])
        only = invoke(w, "schedule", "--at", AT, "--json", "--policy", "hourly")
        assert only.exit_code == 1
        assert [r["policy"] for r in json.loads(only.stdout)] == ["hourly"]
        assert_refused_for_weekly(invoke(w, "schedule", "--policy", "weekly"), "schedule")


def test_simulate_replays_a_good_policy_and_refuses_the_bad_files(tmp_path: Path) -> None:
    with broken_world(tmp_path) as w:
        text = invoke(w, "simulate", "--policy", "hourly", "--days", "2", "--at", AT)
        assert text.exit_code == 1, text.output
        assert_named(text, "simulate")
        assert "hourly: 2 days from" in text.stdout
        as_json = invoke(w, "simulate", "--policy", "hourly", "--days", "2", "--at", AT, "--json")
        assert as_json.exit_code == 1
        document = json.loads(as_json.stdout)
        assert document["policy"] == "hourly" and document["slots"] == 48
        assert_broken_json(document["broken_policy_files"])
        page = tmp_path / "ladder.html"
        refused = invoke(w, "simulate", "--policy", "weekly", "--html", str(page))
        assert_refused_for_weekly(refused, "simulate")
        assert not page.exists()


def test_drill_drills_the_good_policy_and_refuses_the_bad_files(tmp_path: Path) -> None:
    with broken_world(tmp_path, drill=True) as w:
        refused = invoke(w, "drill", "--no-alerts", "--policy", "weekly")
        assert_refused_for_weekly(refused, "drill")
        assert w.writes() == []  # not even the lease sweep
        result = invoke(w, "drill", "--no-alerts", "--json")
        assert result.exit_code == 1, result.output
        assert_named(result, "drill")
        document = json.loads(result.stdout)
        [outcome] = document["drills"]
        assert document["ok"] is True and outcome["ok"] is True
        assert (outcome["policy"], outcome["instance_id"]) == ("hourly", A)
        assert_broken_json(document["broken_policy_files"])
        assert len(launched(w)) == 1


def test_restore_works_beside_a_bad_policy_file_and_its_exit_status_is_the_restores(
    tmp_path: Path,
) -> None:
    with broken_world(tmp_path) as w:
        result = invoke(w, "restore", A, "--image", "img-week0001", "--json")
        assert result.exit_code == 0, result.output
        assert_named(result, "restore")
        document = json.loads(result.stdout)
        assert document["ok"] is True and document["image_id"] == "img-week0001"
        assert_broken_json(document["broken_policy_files"])
        [run] = launched(w)
        assert run["params"]["ImageId"] == "img-week0001"


def test_restore_needs_no_policy_even_when_every_policy_file_is_bad(tmp_path: Path) -> None:
    with broken_world(tmp_path) as w:
        (w.root / "policies" / "hourly.yaml").unlink()  # weekly.yaml, bad, is the only one
        text = invoke(w, "restore", A, "--dry-run")
        assert text.exit_code == 0, text.output
        assert_named(text, "restore")
        assert "restore point: img-hour0001" in text.stdout
        assert "dry run: RunInstances with DryRun passed" in text.stdout
        result = invoke(w, "restore", A, "--json")
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert document["ok"] is True and document["state"] == "RUNNING"
        assert_broken_json(document["broken_policy_files"])
        assert len(launched(w)) == 1
        missing = invoke(w, "restore", B, "--json")  # B has no image: refused, with the hint
        assert missing.exit_code == 2, missing.output
        refusal = json.loads(missing.stdout)["refused"]
        assert "weekly.yaml cannot be used: regions only they name are not searched" in refusal


def test_restore_works_when_the_policies_directory_holds_no_policy_file(tmp_path: Path) -> None:
    with broken_world(tmp_path) as w:
        for file in (w.root / "policies").iterdir():
            file.unlink()
        result = invoke(w, "restore", A, "--dry-run", "--json")
        assert result.exit_code == 0, result.output
        assert "restore: WARNING policy file" in result.stderr and "Traceback" not in result.output
        document = json.loads(result.stdout)
        assert document["ok"] is True and document["image_id"] == "img-hour0001"
        [entry] = document["broken_policy_files"]
        assert entry["file"].endswith("policies") and entry["problems"]
        assert launched(w) == []  # a dry run
