"""The package imports and its command line answers, installed as a user would have it."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from cvmkeeper import __version__
from cvmkeeper.cli import cli


def test_version_is_the_installed_distribution_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"cvmkeeper, version {__version__}"
    assert __version__ != "0.0.0+unknown"


def test_module_entry_point_prints_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cvmkeeper", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "quota" in proc.stdout
