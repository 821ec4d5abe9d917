"""``cvmkeeper systemd-unit`` writes the shipped unit, and a template unit, from package data.

The packaged unit is the repository's ``systemd/cvmkeeper.service`` byte for byte; the
template unit passes the real ``systemd-analyze verify`` and ``security`` as an instance.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

from cvmkeeper.cli import cli
from cvmkeeper.cli.systemd_unit_cmd import (
    TEMPLATE_NAME,
    UnitTemplateError,
    template_unit,
    unit_text,
)

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "cvmkeeper.service"
COMMAND = Path(sys.executable).parent / "cvmkeeper"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (.ci/run installs the 'systemd' package in CI)",
)


def _settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_packaged_unit_is_the_repository_unit_byte_for_byte() -> None:
    packaged = resources.files("cvmkeeper").joinpath("data", "cvmkeeper.service").read_bytes()
    assert packaged == UNIT.read_bytes()


def test_prints_the_unit_and_writes_it_with_mode_0644(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(cli, ["systemd-unit"])
    assert printed.exit_code == 0
    assert printed.output == UNIT.read_text(encoding="utf-8")
    target = tmp_path / "system" / "cvmkeeper.service"
    written = runner.invoke(cli, ["systemd-unit", "--output", str(target)])
    assert written.exit_code == 0, written.output
    assert written.output == f"wrote {target}\n"
    assert target.read_bytes() == UNIT.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "cvmkeeper.service"
    target.write_text("mine\n", encoding="utf-8")
    refused = CliRunner().invoke(cli, ["systemd-unit", "-o", str(target)])
    assert refused.exit_code == 2
    assert f"{target}: exists already; use --force" in refused.stderr
    assert target.read_text(encoding="utf-8") == "mine\n"
    forced = CliRunner().invoke(cli, ["systemd-unit", "-o", str(target), "--force"])
    assert forced.exit_code == 0
    assert target.read_bytes() == UNIT.read_bytes()


def test_unwritable_output_and_relative_executable_are_sentences(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    result = CliRunner().invoke(cli, ["systemd-unit", "-o", str(blocker / "sub" / "x")])
    assert result.exit_code == 2
    assert "cannot write" in result.stderr
    relative = CliRunner().invoke(cli, ["systemd-unit", "--executable", "bin/cvmkeeper"])
    assert relative.exit_code == 2
    assert "give an absolute path" in relative.stderr
    assert "Traceback" not in result.output + relative.output


def test_executable_option_changes_only_exec_start() -> None:
    result = CliRunner().invoke(cli, ["systemd-unit", "--executable", "/opt/ck/bin/cvmkeeper"])
    assert result.exit_code == 0
    shipped, got = UNIT.read_text().splitlines(), result.output.splitlines()
    changed = [(a, b) for a, b in zip(shipped, got, strict=True) if a != b]
    assert changed == [
        ("ExecStart=/usr/local/bin/cvmkeeper daemon", "ExecStart=/opt/ck/bin/cvmkeeper daemon")
    ]


def test_template_unit_takes_config_state_and_credentials_from_the_instance_name() -> None:
    result = CliRunner().invoke(cli, ["systemd-unit", "--template"])
    assert result.exit_code == 0
    plain, template = _settings(UNIT.read_text()), _settings(result.output)
    assert template["ExecStart"] == [
        "/usr/local/bin/cvmkeeper daemon --config /etc/cvmkeeper/%i/cvmkeeper.yaml"
    ]
    assert template["ConfigurationDirectory"] == ["cvmkeeper/%i"]
    assert template["StateDirectory"] == ["cvmkeeper/%i"]
    assert "%i" in template["Description"][0]
    credentials = re.findall(
        r"^#?LoadCredential(?:Encrypted)?=\w+:(\S+)$", result.output, re.MULTILINE
    )
    assert credentials and all(path.startswith("/etc/cvmkeeper/%i/") for path in credentials)
    # Every other setting (the whole sandbox) is the single unit's.
    differing = {k for k in plain.keys() | template.keys() if plain.get(k) != template.get(k)}
    assert differing == {"Description", "ExecStart", "ConfigurationDirectory", "StateDirectory"}
    assert "state_dir: /var/lib/cvmkeeper/NAME" in result.output


def test_template_derivation_fails_loudly_when_an_anchor_is_gone() -> None:
    broken = unit_text().replace("\nStateDirectory=cvmkeeper\n", "\n")
    with pytest.raises(UnitTemplateError, match="StateDirectory=cvmkeeper"):
        template_unit(broken)


def test_unit_header_cites_doc_sections_that_exist() -> None:
    for text in (UNIT.read_text(), template_unit(unit_text())):
        cited = re.findall(r'((?:README|docs/[\w-]+)\.md), "([^"]+)"', text)
        assert cited, "the unit's header names no section of the docs"
        for page, title in cited:
            page_text = (REPO / page).read_text(encoding="utf-8")
            headings = set(re.findall(r"^## (.+)$", page_text, re.MULTILINE))
            assert title in headings, (page, title)


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False
    )


def _write_template(tmp_path: Path) -> Path:
    target = tmp_path / TEMPLATE_NAME
    result = CliRunner().invoke(
        cli, ["systemd-unit", "--template", "--executable", str(COMMAND), "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    return target


def _verify_problems(template: Path, instance: str) -> list[str]:
    """verify exits 0 on unknown keys, so every output line naming the file is a problem."""
    result = _analyze("verify", str(template.parent / instance))
    names = (template.name, instance)
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if any(name in line for name in names)
    ]
    return ([f"exit {result.returncode}"] if result.returncode else []) + problems


@needs_systemd_analyze
@pytest.mark.slow
def test_template_instance_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    template = _write_template(tmp_path)
    assert _verify_problems(template, "cvmkeeper@prod.service") == []
    template.write_text(template.read_text().replace("ProtectClock=", "ProtectClok="))
    assert any("ProtectClok" in p for p in _verify_problems(template, "cvmkeeper@prod.service"))


@needs_systemd_analyze
@pytest.mark.slow
def test_template_instance_is_as_sandboxed_as_the_unit(tmp_path: Path) -> None:
    _write_template(tmp_path)
    report = _analyze(
        "security", "--offline=true", "--no-pager", str(tmp_path / "cvmkeeper@prod.service")
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", report.stdout)
    assert match, report.stdout + report.stderr
    assert float(match.group(1)) <= 2.0
