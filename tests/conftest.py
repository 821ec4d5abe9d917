"""The test suite's root: makes ``tests/`` importable, so every test module, whatever its
folder, reaches the shared helpers as ``support.<module>`` (``tests/support``).

It also holds the session fixtures of the packaging tests, ``dists`` (``python -m build``)
and ``wheel_venv`` (the wheel in a fresh venv): tests/test_packaging.py and
tests/test_install_journey.py both use them, and building and installing once keeps CI
short."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel that ``python -m build`` makes (the wheel from the sdist).

    Session-scoped: tests/test_packaging.py and tests/test_install_journey.py share one
    build, which takes most of a minute.
    """
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sdists = list(out.glob("cvmkeeper-*.tar.gz"))
    wheels = list(out.glob("cvmkeeper-*-py3-none-any.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, list(out.iterdir())
    return sdists[0], wheels[0]


@pytest.fixture(scope="session")
def wheel_venv(dists: tuple[Path, Path]) -> Iterator[Path]:
    """A fresh venv with only the wheel installed (docs/install.md's venv install), once per
    session.

    It lies in a directory every user can read, like ``/opt/cvmkeeper``: pytest's own
    temporary directories are private to the user running the tests, and the install
    journey runs the daemon as an unprivileged user, as ``DynamicUser=yes`` does.
    """
    _, wheel = dists
    opt = Path(tempfile.mkdtemp(prefix="cvmkeeper-opt-"))
    try:
        opt.chmod(0o755)
        venv = opt / "cvmkeeper"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        install = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert install.returncode == 0, install.stderr[-3000:]
        yield venv
    finally:
        shutil.rmtree(opt, ignore_errors=True)
