"""The command line explains itself: every command's help renders with a description and
every option documented; completion scripts come out for bash and zsh; commands load lazily;
``config generate`` writes files that validate."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cvmkeeper.cli import COMMANDS, cli
from cvmkeeper.config import load_setup

BIN = Path(sys.executable).parent


CommandPath = tuple[tuple[str, ...], click.Command]


def walk(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[CommandPath]:
    """Every command under ``group`` (groups included), with its argv path."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from walk(command, (*path, name))


ALL_COMMANDS = list(walk(cli))


def test_every_registered_command_is_listed_and_loads() -> None:
    names = {path[0] for path, _ in ALL_COMMANDS}
    assert names == set(COMMANDS)
    assert {" ".join(path) for path, _ in ALL_COMMANDS} >= {"config generate", "emulator inventory"}


def test_top_level_help_lists_every_command_with_its_short_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for path, command in ALL_COMMANDS:
        if len(path) == 1:
            short = command.get_short_help_str(limit=45)
            assert short, path
            assert f"  {path[0]} " in result.output
            assert short.rstrip(".")[:30] in result.output, path


@pytest.mark.parametrize(
    ("path", "command"), ALL_COMMANDS, ids=[" ".join(path) for path, _ in ALL_COMMANDS]
)
def test_help_renders_with_a_description_and_every_option_documented(
    path: tuple[str, ...], command: click.Command
) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert f"{' '.join(path)} [OPTIONS]" in result.output.splitlines()[0]
    assert command.help and len(command.help.split()) >= 5, f"{path}: no real description"
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        assert param.help, f"{' '.join(path)} {param.opts}: undocumented option"
        for opt in param.opts:
            assert opt in result.output, f"{' '.join(path)}: {opt} missing from the help"


def test_config_generate_writes_files_that_validate(tmp_path: Path) -> None:
    out = tmp_path / "etc"
    result = CliRunner().invoke(cli, ["config", "generate", "--output", str(out)])
    assert result.exit_code == 0, result.output
    config = out / "cvmkeeper.yaml"
    policy = out / "policies" / "web-daily.yaml"
    assert f"wrote {config}" in result.output
    assert config.read_text(encoding="utf-8").startswith("# cvmkeeper daemon config")
    validated = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert validated.exit_code == 0, validated.output
    assert "ok: 1 policies valid" in validated.output
    setup = load_setup(config)
    assert [p.name for p in setup.policies] == ["web-daily"]
    assert setup.policies[0].source.endswith("web-daily.yaml") or policy.is_file()
    assert setup.config.image_quota is None  # no cap: the account's own quota
    assert setup.config.offline_quota == 10


def test_config_generate_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["config", "generate", "-o", str(tmp_path)]).exit_code == 0
    config = tmp_path / "cvmkeeper.yaml"
    config.write_text("regions: [ap-shanghai]\n", encoding="utf-8")
    refused = runner.invoke(cli, ["config", "generate", "-o", str(tmp_path)])
    assert refused.exit_code == 2
    assert f"{config}: exists already; use --force" in refused.stderr
    assert config.read_text(encoding="utf-8") == "regions: [ap-shanghai]\n"
    forced = runner.invoke(cli, ["config", "generate", "-o", str(tmp_path), "--force"])
    assert forced.exit_code == 0
    assert config.read_text(encoding="utf-8").startswith("# cvmkeeper daemon config")


def test_config_generate_reports_an_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    result = CliRunner().invoke(cli, ["config", "generate", "-o", str(blocker / "sub")])
    assert result.exit_code == 2
    assert "cannot write" in result.stderr
    assert "Traceback" not in result.output


def test_generated_config_mentions_every_config_key() -> None:
    from cvmkeeper.cli.config_cmd import CONFIG_TEMPLATE, template_text
    from cvmkeeper.config import daemon_file

    text = template_text(CONFIG_TEMPLATE)
    keys = [
        *daemon_file.CONFIG_KEYS,
        *daemon_file.CLOUD_KEYS,
        *daemon_file.CREDENTIAL_KEYS,
        *daemon_file.SENTRY_KEYS,
        *daemon_file.API_KEYS,
        *daemon_file.RETRY_KEYS,
    ]
    for key in keys:
        assert f"{key}:" in text, f"the generated config does not show {key}"


@pytest.mark.parametrize(
    ("shell", "marker"), [("bash", "complete -o nosort -F"), ("zsh", "#compdef cvmkeeper")]
)
def test_completion_script_in_process(shell: str, marker: str) -> None:
    result = CliRunner().invoke(
        cli, [], prog_name="cvmkeeper", env={"_CVMKEEPER_COMPLETE": f"{shell}_source"}
    )
    assert result.exit_code == 0
    assert marker in result.output
    assert "_CVMKEEPER_COMPLETE" in result.output


def completion_env(**extra: str) -> dict[str, str]:
    """The environment of the installed console script, with completion variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("_CVMKEEPER")}
    return env | extra


@pytest.mark.slow
def test_installed_command_completes_command_names_and_options() -> None:
    command = str(BIN / "cvmkeeper")
    for shell in ("bash", "zsh"):
        script = subprocess.run(
            [command],
            env=completion_env(_CVMKEEPER_COMPLETE=f"{shell}_source"),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "_cvmkeeper_completion" in script, shell
    names = subprocess.run(
        [command],
        env=completion_env(
            _CVMKEEPER_COMPLETE="bash_complete", COMP_WORDS="cvmkeeper s", COMP_CWORD="1"
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert {"plain,schedule", "plain,simulate", "plain,status"} <= set(names)
    options = subprocess.run(
        [command],
        env=completion_env(
            _CVMKEEPER_COMPLETE="bash_complete", COMP_WORDS="cvmkeeper run --dry", COMP_CWORD="2"
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert options == ["plain,--dry-run"]


@pytest.mark.slow
def test_running_one_command_does_not_import_the_others() -> None:
    code = (
        "import sys; from cvmkeeper.cli import cli; "
        "cli.get_command(None, 'run'); "
        "print(sorted(m for m in sys.modules "
        "if m.startswith(('cvmkeeper.cli.', 'cvmkeeper.scheduler'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "cvmkeeper.cli.run_cmd" in out
    for other in ("emulator_cmd", "daemon_cmd", "status_cmd", "config_cmd", "cvmkeeper.scheduler"):
        assert other not in out, f"{other} imported for `run`: {out}"
