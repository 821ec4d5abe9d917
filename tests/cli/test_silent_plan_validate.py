"""``plan`` and ``validate --online`` against an endpoint that accepts connections and never
answers: bounded by ``--timeout`` for the whole command (regions read in parallel), every
unread region named, exit 1, no traceback (issue #17: 121 s, 60 s timeout x 2 attempts,
regions one after another)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the silent-endpoint helpers

from click.testing import CliRunner
from test_status_monitor import run_installed, silent_config, silent_endpoint

from cvmkeeper.cli import cli
from cvmkeeper.cloud.deadline import Deadline, DeadlineExceeded

REGIONS = ("ap-guangzhou", "ap-shanghai", "ap-beijing")
#: generous: the command must end near --timeout 3, never near 60 s per call and retry
BOUND = 30


def assert_named_loudly(err: str) -> None:
    assert "Traceback" not in err
    for region in REGIONS:
        assert region in err, err
    assert "no answer within 3s" in err, err


@pytest.mark.parametrize(
    "command", [("plan",), ("plan", "--json"), ("validate", "--online")], ids=" ".join
)
def test_a_silent_endpoint_is_named_within_the_timeout(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    with silent_endpoint() as endpoint:
        config = silent_config(tmp_path, endpoint)
        code, _, err, took = run_installed(*command, "--config", str(config), "--timeout", "3")
    assert took < BOUND, f"{' '.join(command)} took {took:.1f}s against a silent endpoint"
    assert code == 1, err
    assert_named_loudly(err)


@pytest.mark.parametrize("command", ["plan", "validate"])
def test_timeout_is_documented_in_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "--timeout" in result.output
    assert "default: 60" in result.output


def test_a_deadline_passed_fails_at_once_and_is_not_retried() -> None:
    ticks = iter([0.0, 5.0])
    deadline = Deadline(3, clock=lambda: next(ticks))
    with pytest.raises(DeadlineExceeded, match=r"ImageQuota in ap-beijing failed.*within 3s"):
        deadline.run("ap-beijing", "ImageQuota", lambda: pytest.fail("must not be called"))
