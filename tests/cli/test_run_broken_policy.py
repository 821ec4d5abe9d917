"""``cvmkeeper run`` and ``validate`` with one bad policy file among good ones (issue #19).

``run`` makes the good policies' slots, prints the bad file with file:line:key and the
images it holds, and exits 1 (an error, not a refused config); ``validate`` is the check
command and still fails with exit 2 naming every problem.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.cli import cli
from cvmkeeper.core.naming import image_name
from executor.world import HELD, T0, A, broken_policy_world, fleet, policy, world


def test_run_makes_the_good_policies_and_exits_1_naming_the_bad_file_and_held_images(
    tmp_path: Path,
) -> None:
    with broken_policy_world(tmp_path) as w:
        at = (T0 + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%MZ")
        result = CliRunner().invoke(
            cli, ["run", "--config", str(w.config_path), "--at", at, "--no-alerts"]
        )
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert "weekly.yaml:5:" in result.output and "keep_dayly" in result.output
        assert HELD in result.output and "held" in result.output
        assert image_name(A, T0) in w.image_names()  # the good policy ran
        named = CliRunner().invoke(
            cli, ["run", "--config", str(w.config_path), "--policy", "weekly", "--no-alerts"]
        )
        assert named.exit_code == 2
        assert "'weekly' cannot be used" in named.output and "weekly.yaml:5:" in named.output


def test_validate_still_fails_with_exit_2_naming_every_problem(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A])) as w:
        w.write_broken_weekly()
        (w.root / "policies" / "daily.yaml").write_text("name: daily\nschedules: [{every: 1x}]\n")
        result = CliRunner().invoke(cli, ["validate", "--config", str(w.config_path)])
        assert result.exit_code == 2, result.output
        assert "weekly.yaml:5:" in result.output and "daily.yaml:2:" in result.output
        assert "Traceback" not in result.output
