"""Part 6: bad input reaches the commands as a clear error, never a traceback.

``tests/config/test_fuzz.py`` fuzzes the parsers; this part goes through the CLI the way a
user does: hypothesis-generated and mutated policy files and daemon configs, truncated
and binary files, files that cannot be read (as root, modes do not stop a read, so a
directory, a missing file or a FIFO stands where a file should be) through ``validate``,
``plan``, ``run`` and ``daemon``: exit status 2, every problem line names its file (and
its line and column when the YAML has one), no ``Traceback``. And a running daemon whose
policies directory disappears, or turns to binary, keeps its last good config on SIGHUP.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvmkeeper.cli import cli
from cvmkeeper.emulator.server import running_emulator
from reliability import commands, figures

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "config"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scheduler"))
from test_daemon_e2e import DaemonProcess, Notifications, config_for
from test_daemon_e2e import fleet as daemon_fleet
from test_daemon_e2e import start_daemon as daemon_starter  # noqa: F401 - the fixture
from test_fuzz import YAML_BITS

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_POLICIES = {p.name: p.read_bytes() for p in sorted((ROOT / "policies").glob("*.yaml"))}
GOOD_CONFIG = (
    "policies_dir: policies\n"
    "regions: [ap-guangzhou]\n"
    "image_quota: 10\n"
    "credentials: {cvm_role: false}\n"
    "api: {wait_timeout: 20m, poll_interval: 5s}\n"
    "sentry: {environment: test, checkin_margin: 5m}\n"
)
GOOD_POLICY = SAMPLE_POLICIES["hourly.yaml"]
#: ``file:line:column: key: message`` or, for a whole-file problem, ``file: message``
PROBLEM = re.compile(r"^(?P<file>[^:\s]+)(?::(?P<line>\d+):(?P<column>\d+))?: \S")
DIRECTORY_PROBLEMS = ("policies directory does not exist", "policies_dir is not a directory",
                      "no policy files (*.yaml) in the policies directory")
#: what follows ``file:`` when the problem has a position
POSITION = re.compile(r":\d+:\d+$")
EXAMPLES = figures.sized(40, 400)
COMMANDS = ("validate", "plan", "run")


def home(tmp: Path, config: bytes | str = GOOD_CONFIG,
         policies: dict[str, bytes] | None = None) -> Path:
    """A config and a policies directory under ``tmp``; returns the config path."""
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "policies").mkdir(parents=True)
    for name, data in (policies if policies is not None else {"hourly.yaml": GOOD_POLICY}).items():
        (tmp / "policies" / name).write_bytes(data)
    path = tmp / "cvmkeeper.yaml"
    path.write_bytes(config.encode() if isinstance(config, str) else config)
    return path


def invoke(command: str, config: Path) -> tuple[int, str]:
    """Run one command in-process (offline: no config that loads is ever sent anywhere)."""
    cwd = os.getcwd()
    os.chdir(config.parent)
    try:
        result = CliRunner().invoke(cli, [command, "--config", str(config), "--no-alerts"]
                                    if command == "run" else [command, "--config", str(config)])
    finally:
        os.chdir(cwd)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{command} raised {result.exception!r}")
    return result.exit_code, result.output


def assert_clear_error(command: str, code: int, output: str, files: set[str]) -> int:
    """Exit 2, no traceback, every problem line names one of ``files`` (or is about the
    policies directory the config names); returns how many problems named a line."""
    assert code == 2, f"{command}: exit {code}\n{output}"
    assert "Traceback" not in output
    problems = [line for line in output.splitlines()
                if line and not re.fullmatch(r"\d+ problems? found", line)]
    assert problems, output
    with_line = 0
    for line in problems:
        head = line.split(": ", 1)[0]
        position = POSITION.search(head)
        named = head[: position.start()] if position else head
        directory_problem = line.endswith(DIRECTORY_PROBLEMS)  # names the dir as configured
        assert named in files or directory_problem, (
            f"{command}: {line!r} names no file of {files}")
        with_line += position is not None
        if "not valid YAML" in line:
            assert position is not None, line
    return with_line


def check_all_commands(config: Path, files: set[str]) -> bool:
    """validate decides; when it rejects, plan and run must reject the same way."""
    code, output = invoke("validate", config)
    assert "Traceback" not in output
    if code == 0:
        return False
    lines = assert_clear_error("validate", code, output, files)
    for command in COMMANDS[1:]:
        assert_clear_error(command, *invoke(command, config), files)
    figures.add("6", rejected=1, problems_with_line=lines)
    return True


POLICY_FILES = {"policies/hourly.yaml", "policies/fuzz.yaml", "policies", "cvmkeeper.yaml"}


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(SAMPLE_POLICIES)),
       st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 8), st.sampled_from(YAML_BITS)),
                min_size=1, max_size=5))
def test_mutated_policy_files_through_the_cli(tmp_path: Path, sample: str,
                                              edits: list[tuple[int, int, str]]) -> None:
    text = SAMPLE_POLICIES[sample].decode()
    for position, cut, insert in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + cut:]
    config = home(tmp_path / "h", policies={"hourly.yaml": GOOD_POLICY,
                                            "fuzz.yaml": text.encode()})
    check_all_commands(config, POLICY_FILES)
    figures.add("6", runs=1)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 8), st.sampled_from(YAML_BITS)),
                min_size=1, max_size=5))
def test_mutated_daemon_configs_through_the_cli(tmp_path: Path,
                                                edits: list[tuple[int, int, str]]) -> None:
    text = GOOD_CONFIG
    for position, cut, insert in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + cut:]
    config = home(tmp_path / "h", config=text)
    check_all_commands(config, POLICY_FILES)
    figures.add("6", runs=1)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.booleans())
def test_binary_files_are_rejected_cleanly(tmp_path: Path, data: bytes, as_config: bool) -> None:
    config = (home(tmp_path / "h", config=data) if as_config
              else home(tmp_path / "h", policies={"hourly.yaml": data}))
    check_all_commands(config, POLICY_FILES)
    figures.add("6", runs=1)


def test_every_truncation_of_every_sample_is_valid_or_a_clear_error(tmp_path: Path) -> None:
    rejected = 0
    step = figures.sized(23, 3)
    for name, data in SAMPLE_POLICIES.items():
        for cut in range(0, len(data), step):
            config = home(tmp_path / "h", policies={name: data[:cut]})
            rejected += check_all_commands(config, {f"policies/{name}", "policies"})
            figures.add("6", runs=1)
    config_data = GOOD_CONFIG.encode()
    for cut in range(0, len(config_data), 5):
        rejected += check_all_commands(home(tmp_path / "h", config=config_data[:cut]),
                                       POLICY_FILES)
        figures.add("6", runs=1)
    assert rejected > 10


@pytest.mark.parametrize("where", ["policies_dir", "policy_file", "secret_key_file",
                                   "dsn_file", "config"])
def test_a_directory_or_nothing_where_a_file_should_be(tmp_path: Path, where: str) -> None:
    # Tests run as root, and root reads a chmod 000 file; these really fail to read.
    config = home(tmp_path / "h")
    root = config.parent
    files = {"policies", "policies/hourly.yaml", "cvmkeeper.yaml"}
    if where == "policies_dir":
        shutil.rmtree(root / "policies")
        (root / "policies").write_text("not a directory\n")
    elif where == "policy_file":
        (root / "policies" / "hourly.yaml").unlink()
        (root / "policies" / "hourly.yaml").mkdir()
    elif where in ("secret_key_file", "dsn_file"):
        (root / "adir").mkdir()
        section = "credentials: {cvm_role: false, secret_id: AKIDX, secret_key_file: adir}" \
            if where == "secret_key_file" else "sentry: {dsn_file: adir}"
        config.write_text(GOOD_CONFIG.replace("credentials: {cvm_role: false}", section)
                          if where == "secret_key_file" else GOOD_CONFIG + section + "\n")
    else:
        config.unlink()
        config.mkdir()
    for command in COMMANDS:
        code, output = invoke(command, config)
        assert code == 2 and "Traceback" not in output, f"{where} {command}: {output}"
        if where != "config":  # click itself answers for --config (a usage error)
            assert_clear_error(command, code, output, files)
        else:
            assert "is a directory" in output
    figures.add("6", runs=len(COMMANDS), rejected=len(COMMANDS))


def test_a_control_character_is_reported_with_its_line(tmp_path: Path) -> None:
    config = home(tmp_path / "h", policies={"hourly.yaml": GOOD_POLICY + b"name: a\x00b\n"})
    code, output = invoke("validate", config)
    assert code == 2
    match = PROBLEM.match(output)
    assert match and match["line"] is not None, output


@pytest.mark.slow
def test_a_fifo_as_a_policy_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    config = home(tmp_path / "h", policies={})
    os.mkfifo(config.parent / "policies" / "hourly.yaml")
    process = commands.start(["validate", "--config", str(config)], tmp_path, "fifo")
    try:
        code: int | None = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        process.kill()
    figures.add("6", runs=1)
    assert code == 2, "validate hung on the FIFO"


@pytest.mark.slow
def test_the_daemon_refuses_a_bad_config_at_start_with_exit_2(tmp_path: Path) -> None:
    for name, data in (("binary", b"\x00\xff\xfe junk"), ("truncated", GOOD_POLICY[:400]),
                       ("schema", b"name: x\nschedules: [{every: 1x}]\n")):
        config = home(tmp_path / name, policies={"p.yaml": data})
        code, out, err = commands.run(["daemon", "--config", str(config)], tmp_path, name, 30)
        assert code == 2, out + err
        assert "Traceback" not in out + err
        assert "p.yaml" in err
        figures.add("6", runs=1, rejected=1)


@pytest.mark.slow
@pytest.mark.wallclock
def test_a_running_daemon_keeps_its_config_when_the_policies_vanish_or_turn_binary(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    start: Callable[[Path], tuple[DaemonProcess, Notifications]] = request.getfixturevalue(
        "daemon_starter")
    with running_emulator(daemon_fleet(create_seconds=0.2)) as emu:
        config = config_for(tmp_path, emu, "every: 1h")
        daemon, notify = start(config)
        assert notify.expect("READY")["STATUS"].startswith("next: web at ")
        policies = tmp_path / "policies"

        def reload(expect_rejected: bool) -> str:
            daemon.signal(signal.SIGHUP)
            notify.expect("RELOADING")
            status = notify.expect("READY")["STATUS"]
            assert ("reload rejected" in status) == expect_rejected, status
            assert status.startswith("next: web at "), status  # the last good schedule
            assert daemon.process.poll() is None
            figures.add("6", runs=1, rejected=int(expect_rejected))
            return status

        policies.rename(tmp_path / "policies.away")
        reload(expect_rejected=True)
        policies.mkdir()
        (policies / "web.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
        reload(expect_rejected=True)
        (policies / "web.yaml").write_bytes(GOOD_POLICY[:500])
        reload(expect_rejected=True)
        shutil.rmtree(policies)
        (tmp_path / "policies.away").rename(policies)
        reload(expect_rejected=False)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        log = daemon.text()
    assert "Traceback" not in log
    assert "policies directory does not exist" in log
    assert "is not UTF-8 text" in log
    assert log.count("keeping the running config") == 3
