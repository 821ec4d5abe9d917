"""``cvmkeeper validate`` warns when an instance's policies do not fit ``cvmkeeper:policy``
(255 characters a tag value holds; ``core.naming.policy_tag_value``)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cvmkeeper.cli import cli
from executor.world import A, B, World, policy, write_config

LONG = [f"{letter}{'-long-policy-name' * 3}".ljust(63, "x") for letter in "abcde"]


def validate(tmp_path: Path, *documents: dict[str, object]) -> str:
    config = write_config(tmp_path, "127.0.0.1:9", quota=20)
    World(None, tmp_path, config).write_policies(*documents)  # type: ignore[arg-type]
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_validate_warns_about_an_instance_whose_policy_names_do_not_fit(tmp_path: Path) -> None:
    out = validate(
        tmp_path,
        *(policy(name, ids=[A], keep_last=1) for name in LONG[:4]),
        policy(LONG[4], ids=[A, B], keep_last=1),
    )
    [warning] = [line for line in out.splitlines() if "cvmkeeper:policy" in line]
    assert warning.startswith(f"warning: instance {A} is targeted by 5 policies")
    assert "names 3 and counts 2 (+2)" in warning


def test_four_long_names_fit_and_draw_no_warning(tmp_path: Path) -> None:
    out = validate(tmp_path, *(policy(name, ids=[A], keep_last=1) for name in LONG[:4]))
    assert "cvmkeeper:policy" not in out
