"""Packaging: ``python -m build`` makes an sdist that carries the unit, the sample config and
the policies, and a wheel that installs into a fresh venv as a working ``cvmkeeper`` (its
templates included, so ``config generate`` works without the repository)."""

from __future__ import annotations

import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from cvmkeeper import __version__

REPO = Path(__file__).resolve().parents[1]

SDIST_MUST_HOLD = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "MANIFEST.in",
    "Makefile",
    "systemd/cvmkeeper.service",
    "monitoring/cvmkeeper-dashboard.json",
    "monitoring/cvmkeeper-alerts.yaml",
    "config/cvmkeeper.yaml",
    "config/demo.yaml",
    "config/demo-secret-key",
    "config/fleet-demo.yaml",
    "policies/daily-gfs.yaml",
    "policies/hourly.yaml",
    "policies/stop-start.yaml",
    "scripts/demo.sh",
    "src/cvmkeeper/data/cvmkeeper.yaml",
    "src/cvmkeeper/data/policy.yaml",
    "src/cvmkeeper/cli/__init__.py",
    "tests/docs/test_readme.py",
    "docs/design.md",
    "docs/README.md",
    "docs/install.md",
    "docs/policies.md",
    "docs/operations.md",
    "docs/alerting.md",
    "CONTRIBUTING.md",
    "CHANGELOG.md",
)
WHEEL_MUST_HOLD = (
    "cvmkeeper/__init__.py",
    "cvmkeeper/py.typed",
    "cvmkeeper/data/cvmkeeper.yaml",
    "cvmkeeper/data/policy.yaml",
    "cvmkeeper/data/cvmkeeper.service",
    "cvmkeeper-0.1.0.dist-info/licenses/LICENSE",
    "cvmkeeper/cli/config_cmd.py",
    "cvmkeeper/emulator/server.py",
)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sdist_carries_the_unit_config_policies_and_demo(dists: tuple[Path, Path]) -> None:
    sdist, _ = dists
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    top = names[0].split("/")[0]
    assert top == f"cvmkeeper-{__version__}"
    inside = {name.removeprefix(f"{top}/") for name in names}
    missing = [path for path in SDIST_MUST_HOLD if path not in inside]
    assert not missing, missing
    assert not [name for name in inside if "__pycache__" in name or name.endswith(".pyc")]
    assert not [name for name in inside if name.startswith((".venv/", ".git/"))]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheel_holds_the_package_and_its_templates(dists: tuple[Path, Path]) -> None:
    _, wheel = dists
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    missing = [path for path in WHEEL_MUST_HOLD if path not in names]
    assert not missing, missing
    assert "cvmkeeper = cvmkeeper.cli:main" in scripts
    assert not [name for name in names if name.startswith("tests/")]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheel_installs_into_a_fresh_venv_as_a_working_command(
    wheel_venv: Path, tmp_path: Path
) -> None:
    venv = wheel_venv
    command = venv / "bin" / "cvmkeeper"

    def cvmkeeper(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(command), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )

    version = cvmkeeper("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"cvmkeeper, version {__version__}"
    generated = cvmkeeper("config", "generate", "--output", "etc")
    assert generated.returncode == 0, generated.stderr
    validated = cvmkeeper("validate", "--config", "etc/cvmkeeper.yaml")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "ok: 1 policies valid" in validated.stdout
    unit = cvmkeeper("systemd-unit")
    assert unit.returncode == 0, unit.stderr
    assert unit.stdout == (REPO / "systemd" / "cvmkeeper.service").read_text(encoding="utf-8")
    template = cvmkeeper("systemd-unit", "--template")
    assert "ConfigurationDirectory=cvmkeeper/%i" in template.stdout
    listing = cvmkeeper("--help")
    assert listing.returncode == 0
    assert "emulator" in listing.stdout and "daemon" in listing.stdout
