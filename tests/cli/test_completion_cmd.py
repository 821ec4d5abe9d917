"""``cvmkeeper completion SHELL`` prints a script that really completes in the shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cvmkeeper.cli import cli

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _cvmkeeper_completion cvmkeeper"),
        ("zsh", "#compdef cvmkeeper"),
        ("fish", "complete --no-files --command cvmkeeper"),
    ],
)
def test_completion_prints_the_script_click_generates(shell: str, marker: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell], prog_name="cvmkeeper")
    assert result.exit_code == 0, result.output
    assert marker in result.output
    recipe = CliRunner().invoke(
        cli, [], prog_name="cvmkeeper", env={"_CVMKEEPER_COMPLETE": f"{shell}_source"}
    )
    assert result.output == recipe.output


def test_unknown_shell_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["completion", "tcsh"])
    assert result.exit_code == 2
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_bash_script_completes_commands_in_a_real_bash(tmp_path: Path) -> None:
    """Source the printed script in bash and call its function as bash's completion would."""
    script = tmp_path / "complete.bash"
    printed = subprocess.run(
        [str(BIN / "cvmkeeper"), "completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    script.write_text(printed)
    probe = (
        f". {script}; COMP_WORDS=(cvmkeeper comp); COMP_CWORD=1; "
        "_cvmkeeper_completion cvmkeeper; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("_CVMKEEPER")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    ).stdout
    assert out.split() == ["completion"]
