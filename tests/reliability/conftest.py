"""Reliability suite plumbing: the profile, the per-part summary lines, the secret canary.

``CVMKEEPER_RELIABILITY=long`` (``make reliability-long``) selects the long profile; the
short one runs in ``make test``. Each part's figures are printed by
``pytest_terminal_summary`` (shown with or without ``-s``).
"""

from __future__ import annotations

from typing import Any

import pytest

from reliability import figures


def pytest_report_header(config: pytest.Config) -> str:
    """Say which profile runs."""
    return f"cvmkeeper reliability profile: {figures.PROFILE}"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print one line of figures per reliability part that ran."""
    found = figures.lines()
    if not found:
        return
    terminalreporter.section("cvmkeeper reliability")
    for line in found:
        terminalreporter.write_line(line)
