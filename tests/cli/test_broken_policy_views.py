"""``plan``, ``images``, ``status`` (and ``--monitor``) and ``report`` with one bad policy
file among good ones (issue #19): each shows the good policies, names the bad file with
file:line:key on stderr (and in ``--json`` as ``broken_policy_files``), shows the images
it holds, and exits with its "something is wrong" status. Real SDK, emulator over HTTP.
(``validate`` stays strict: tests/cli/test_run_broken_policy.py.)
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner, Result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.cli import cli
from cvmkeeper.config import BrokenPolicy, Problem, load_setup
from cvmkeeper.core.naming import image_name
from cvmkeeper.scheduler.state import STATE_FILE_NAME, StateStore
from executor.world import HELD, T0, A, World, broken_policy_world

AT = (T0 + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%MZ")


def invoke(w: World, *args: str) -> Result:
    return CliRunner().invoke(cli, [args[0], "--config", str(w.config_path), *args[1:]])


def assert_named_on_stderr(result: Result, command: str) -> None:
    assert "Traceback" not in result.output
    assert f"{command}: WARNING policy file" in result.stderr
    assert "weekly.yaml" in result.stderr and "weekly.yaml:5:" in result.stderr
    assert "keep_dayly" in result.stderr


def assert_broken_json(document: dict[str, object]) -> None:
    [entry] = document["broken_policy_files"]  # type: ignore[misc]
    assert entry["file"].endswith("weekly.yaml") and entry["policy"] == "weekly"
    assert entry["old_version_kept"] is False
    assert any(p["line"] == 5 and "keep_dayly" in p["text"] for p in entry["problems"])


def test_plan_plans_the_good_policy_shows_the_held_images_and_exits_1(tmp_path: Path) -> None:
    with broken_policy_world(tmp_path) as w:
        text = invoke(w, "plan", "--at", AT)
        assert text.exit_code == 1, text.output
        assert_named_on_stderr(text, "plan")
        assert f"create {image_name(A, T0)}" in text.stdout  # the good policy is planned
        held = next(line for line in text.stdout.splitlines() if HELD in line)
        assert "held" in held and "DELETE" not in held
        assert "image(s) held" in text.stdout  # the plan's warning about the hold
        as_json = invoke(w, "plan", "--at", AT, "--json")
        assert as_json.exit_code == 1
        document = json.loads(as_json.stdout)
        assert_broken_json(document)
        [region] = document["regions"]
        [image] = [i for i in region["images"] if i["image_id"] == HELD]
        assert image["keep"] and any("held" in r for r in image["reasons"])
        assert w.writes() == []


def test_images_lists_the_held_image_as_held_and_exits_1(tmp_path: Path) -> None:
    with broken_policy_world(tmp_path) as w:
        result = invoke(w, "images", "--json")
        assert result.exit_code == 1, result.output
        assert_named_on_stderr(result, "images")
        document = json.loads(result.stdout)
        assert_broken_json(document)
        [region] = document["regions"]
        [image] = [i for i in region["instances"][A] if i["image_id"] == HELD]
        assert "held" in image["kept_by"] and "cannot be used" in image["kept_by"]
        assert "expires" not in image["kept_by"]


def test_status_names_the_file_and_needs_attention(tmp_path: Path) -> None:
    with broken_policy_world(tmp_path) as w:
        text = invoke(w, "status", "--at", AT)
        assert text.exit_code == 1, text.output
        assert_named_on_stderr(text, "status")
        assert "BROKEN POLICY FILES (1)" in text.stdout
        assert "weekly.yaml:5:" in text.stdout and "needs attention" in text.stdout
        assert "  hourly:" in text.stdout  # the good policy is shown
        as_json = invoke(w, "status", "--at", AT, "--json")
        assert as_json.exit_code == 1
        document = json.loads(as_json.stdout)
        assert_broken_json(document)
        assert document["ok"] is False
        assert [p["name"] for p in document["policies"]] == ["hourly"]


def test_status_monitor_is_critical_naming_the_file(tmp_path: Path) -> None:
    with broken_policy_world(tmp_path) as w:
        result = invoke(w, "status", "--at", AT, "--monitor")
        first = result.stdout.splitlines()[0]
        assert result.exit_code == 2, result.output  # CRITICAL, not UNKNOWN (3)
        assert first.startswith("CVMKEEPER CRITICAL - ") and "weekly.yaml" in first
        assert "broken_policy_files=1;" in first
        assert any("weekly.yaml:5:" in line for line in result.stdout.splitlines()[1:])


def test_status_shows_what_the_daemon_recorded_old_version_kept_is_a_warning(
    tmp_path: Path,
) -> None:
    with broken_policy_world(tmp_path) as w:
        file = str(w.root / "policies" / "weekly.yaml")
        setup = load_setup(w.config_path, partial=True)
        [own] = setup.broken
        StateStore(setup.config.state_dir).record_broken(
            [BrokenPolicy(own.file, own.problems, "weekly", stand_in=True)], T0
        )
        assert (setup.config.state_dir / STATE_FILE_NAME).exists()
        result = invoke(w, "status", "--at", AT, "--monitor")
        assert result.exit_code == 1, result.output  # WARNING: the old version runs
        assert "old version running" in result.stdout and "weekly.yaml" in result.stdout
        document = json.loads(invoke(w, "status", "--at", AT, "--json").stdout)
        [entry] = document["broken_policy_files"]
        assert entry["old_version_kept"] is True and entry["daemon_runs_without"] is True
        # fixed on disk, but the daemon has not reloaded: still named, a reload is due
        (w.root / "policies" / "weekly.yaml").unlink()
        gone = BrokenPolicy(file, (Problem(file, 5, 27, "retention", "bad"),), "weekly")
        StateStore(setup.config.state_dir).record_broken([gone], T0)
        text = invoke(w, "status", "--at", AT)
        assert text.exit_code == 1
        assert "BROKEN POLICY FILES (1)" in text.stdout and "reload" in text.stdout


def test_report_writes_the_page_naming_the_file_and_exits_1(tmp_path: Path) -> None:
    with broken_policy_world(tmp_path) as w:
        page = tmp_path / "report.html"
        result = invoke(w, "report", "--at", AT, "--html", str(page))
        assert result.exit_code == 1, result.output
        assert_named_on_stderr(result, "report")
        html = page.read_text()
        assert "POLICY FILE CANNOT BE USED" in html and "weekly.yaml:5:" in html
        assert HELD in html and "held" in html
