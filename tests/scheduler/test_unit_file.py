"""The shipped systemd unit passes the real ``systemd-analyze`` checks the issue names.

``verify`` refuses a unit whose ExecStart= binary is missing, and the unit points at
``/usr/local/bin/cvmkeeper`` where an install puts it. So the test copies the unit and changes
only that path, to the ``cvmkeeper`` console script of the environment running the tests;
every other byte is what users install. ``security --offline=true`` needs no binary and
rates the shipped file itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "cvmkeeper.service"
INSTALLED_COMMAND = "/usr/local/bin/cvmkeeper"
MAX_EXPOSURE = 2.0

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (.ci/run installs the 'systemd' package in CI)",
)


def _directives(text: str) -> dict[str, list[str]]:
    """``Key`` -> values, from the active (uncommented) lines of a unit file."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";", "[")):
            continue
        key, _, value = stripped.partition("=")
        found.setdefault(key, []).append(value)
    return found


def _unit_with_test_command(tmp_path: Path) -> Path:
    """A copy of the shipped unit whose ExecStart= runs this environment's ``cvmkeeper``."""
    command = Path(sys.executable).parent / "cvmkeeper"
    assert command.is_file(), f"{command} missing: is the package installed in this venv?"
    text = UNIT.read_text()
    rewritten = text.replace(f"ExecStart={INSTALLED_COMMAND} ", f"ExecStart={command} ")
    assert rewritten.count(f"ExecStart={command} ") == 1
    copy = tmp_path / UNIT.name
    copy.write_text(rewritten)
    return copy


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False
    )


def _verify_problems(unit: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about ``unit``: its exit and every line naming it.

    verify exits 0 on an unknown key or an unparsable value (it only warns), so any line
    that mentions the unit counts as a problem, not just the exit code.
    """
    result = _analyze("verify", str(unit))
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if unit.name in line or str(unit) in line
    ]
    if result.returncode != 0:
        problems.insert(0, f"exit {result.returncode}")
    return problems


def _exposure(unit: Path) -> tuple[float, str]:
    """The overall exposure ``systemd-analyze security --offline=true`` gives, and its report."""
    result = _analyze("security", "--offline=true", "--no-pager", str(unit))
    report = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", report)
    assert match, f"no overall exposure in systemd-analyze output:\n{report}"
    return float(match.group(1)), report


def test_unit_has_the_service_contract_the_daemon_relies_on() -> None:
    settings = _directives(UNIT.read_text())
    assert settings["Type"] == ["notify"]
    assert settings["ExecStart"] == [f"{INSTALLED_COMMAND} daemon"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["DynamicUser"] == ["yes"]
    assert settings["StateDirectory"] == ["cvmkeeper"]
    assert settings["ConfigurationDirectory"] == ["cvmkeeper"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert settings["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "@system-service" in settings["SystemCallFilter"]
    for key in ("WatchdogSec", "TimeoutStopSec"):
        assert len(settings[key]) == 1
    assert settings["WantedBy"] == ["multi-user.target"]


def _credential_lines(text: str) -> list[str]:
    return re.findall(r"^#(LoadCredential=.*)$", text, re.MULTILINE)


def test_unit_carries_no_secret_and_documents_load_credential() -> None:
    """The commented LoadCredential= lines use the names the loaders read."""
    from cvmkeeper.alerting.sentry import CREDENTIAL_NAME as SENTRY_DSN_FILE
    from cvmkeeper.cloud.credentials import SECRET_ID_FILE, SECRET_KEY_FILE

    text = UNIT.read_text()
    settings = _directives(text)
    assert "Environment" not in settings  # secrets come through LoadCredential=, not here
    assert "EnvironmentFile" not in settings
    names = [line.removeprefix("LoadCredential=").split(":")[0] for line in _credential_lines(text)]
    assert names == [SECRET_ID_FILE, SECRET_KEY_FILE, SENTRY_DSN_FILE]


@needs_systemd_analyze
@pytest.mark.slow
def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    assert _verify_problems(_unit_with_test_command(tmp_path)) == []


@needs_systemd_analyze
@pytest.mark.slow
def test_documented_load_credential_lines_verify_when_enabled(tmp_path: Path) -> None:
    unit = _unit_with_test_command(tmp_path)
    text = unit.read_text()
    enabled = _credential_lines(text)
    assert enabled
    for line in enabled:
        text = text.replace(f"#{line}", line)
    unit.write_text(text)
    assert _credential_lines(text) == []
    assert _verify_problems(unit) == []


@needs_systemd_analyze
@pytest.mark.slow
def test_verify_check_catches_a_misspelt_directive(tmp_path: Path) -> None:
    """Guards the check above: verify exits 0 on typos, so the test must read its output."""
    unit = _unit_with_test_command(tmp_path)
    unit.write_text(unit.read_text().replace("ProtectClock=yes", "ProtectClok=yes"))
    problems = _verify_problems(unit)
    assert any("ProtectClok" in line for line in problems), problems


@needs_systemd_analyze
@pytest.mark.slow
def test_systemd_analyze_security_rates_the_unit_at_most_2() -> None:
    exposure, report = _exposure(UNIT)
    assert exposure <= MAX_EXPOSURE, report


@needs_systemd_analyze
@pytest.mark.slow
def test_security_check_notices_a_weakened_sandbox(tmp_path: Path) -> None:
    """Guards the check above: the parsed score really moves with the unit's settings."""
    weakened = tmp_path / UNIT.name
    kept = [
        line
        for line in UNIT.read_text().splitlines()
        if not line.startswith(
            (
                "DynamicUser=",
                "ProtectSystem=",
                "CapabilityBoundingSet=",
                "SystemCallFilter=",
                "PrivateUsers=",
            )
        )
    ]
    weakened.write_text("\n".join(kept) + "\n")
    shipped, _ = _exposure(UNIT)
    exposure, report = _exposure(weakened)
    assert exposure > max(shipped, MAX_EXPOSURE), report


MDWE_PROBE = """
import ctypes, mmap, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    pass
else:
    sys.exit("MDWE is not in force: a writable+executable mapping was allowed")
import ssl, yaml, sentry_sdk, tenacity, click, apscheduler.schedulers.background
from tencentcloud.cvm.v20170312 import cvm_client
import cvmkeeper.scheduler.sdnotify, cvmkeeper.logs
from click.testing import CliRunner
from cvmkeeper.cli import cli
ssl.create_default_context()
result = CliRunner().invoke(cli, ["--help"])
assert result.exit_code == 0, result.output
print("ok")
"""


@pytest.mark.slow
def test_python_stack_runs_under_memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute=yes does not break CPython and the libraries the daemon loads.

    The kernel's PR_SET_MDWE (Linux 6.3+) enforces the same rule as the unit's setting (no
    writable+executable memory) without needing systemd; the probe proves the rule is in
    force, then imports and runs the stack.
    """
    result = subprocess.run(
        [sys.executable, "-c", MDWE_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _encrypted_lines(text: str) -> list[str]:
    return re.findall(r"^#(LoadCredentialEncrypted=.*)$", text, re.MULTILINE)


def test_unit_forbids_core_dumps_and_documents_encrypted_credentials() -> None:
    """issue 19: a core dump would hold the keys; credentials can be encrypted at rest."""
    from cvmkeeper.alerting.sentry import CREDENTIAL_NAME as SENTRY_DSN_FILE
    from cvmkeeper.cloud.credentials import SECRET_ID_FILE, SECRET_KEY_FILE

    text = UNIT.read_text()
    assert _directives(text)["LimitCORE"] == ["0"]
    names = [
        line.removeprefix("LoadCredentialEncrypted=").split(":")[0]
        for line in _encrypted_lines(text)
    ]
    assert names == [SECRET_ID_FILE, SECRET_KEY_FILE, SENTRY_DSN_FILE]
    assert "systemd-creds encrypt --name=$n" in text


@needs_systemd_analyze
@pytest.mark.slow
def test_documented_encrypted_credential_lines_verify_when_enabled(tmp_path: Path) -> None:
    unit = _unit_with_test_command(tmp_path)
    text = unit.read_text()
    for line in _encrypted_lines(text):
        text = text.replace(f"#{line}", line)
    unit.write_text(text)
    assert _encrypted_lines(text) == []
    assert _verify_problems(unit) == []
