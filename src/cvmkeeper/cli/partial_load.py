"""Partial loading for the commands that act: ``drill``, ``schedule``, ``simulate``,
``restore`` (issue #19).

Like ``plan`` and the daemon, these commands must not be blocked by one bad policy file:
during an incident a YAML typo in an unrelated policy must not stop a restore. They load
partially, work with the good policies, name each bad file (``broken_files``) and exit 1
after their work. Two cases differ:

- the user asks by ``--policy`` for a policy that only a bad file could define: nothing is
  done, the file and its problems are said plainly, exit 2 (doing the work without the
  policy asked for would answer another question);
- ``restore`` needs the daemon config only (regions, name format, credentials, state
  dir), never a policy: it runs even when no policy file at all can be used, and its exit
  status is the restore's (a restore done beside a bad file is done whole).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from cvmkeeper.cli.broken_files import broken_lines
from cvmkeeper.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, report_config_error
from cvmkeeper.config import (
    BrokenPolicy,
    ConfigError,
    Setup,
    config_path,
    load_config,
    load_setup,
)


def load_for_choice(config_file: str | None, command: str, policy_names: Sequence[str]) -> Setup:
    """The partial setup, the bad files said on stderr; exit 2 first, doing nothing, when a
    name of ``policy_names`` can only be a policy of a bad file."""
    try:
        setup = load_setup(config_path(config_file), partial=True)
    except ConfigError as error:
        report_config_error(error)
        sys.exit(EXIT_CONFIG)
    refuse_broken_choice(setup, command, policy_names)
    for line in broken_lines(setup, command):
        click.echo(line, err=True)
    return setup


def refuse_broken_choice(setup: Setup, command: str, policy_names: Sequence[str]) -> None:
    """Exit 2 when a policy asked for is not loaded and a bad file declares it (or a bad
    file whose name cannot be read may): each such file and its problems on stderr."""
    missing = [name for name in policy_names if setup.policy(name) is None]
    if not missing:
        return
    culprits: list[tuple[str, BrokenPolicy]] = []
    for name in missing:
        named = [b for b in setup.broken if b.name == name]
        culprits += [(name, b) for b in named or [b for b in setup.broken if b.name is None]]
    if not culprits:
        return  # simply unknown: each command says so in its own words
    for name, broken in culprits:
        how = "its file" if broken.name == name else "the file that may define it,"
        click.echo(
            f"{command}: policy {name!r} cannot be used: {how} {broken.file} has problems; "
            "nothing was done (fix the file; `cvmkeeper validate` checks it)",
            err=True,
        )
        for problem in broken.problems:
            click.echo(f"  {problem}", err=True)
    sys.exit(EXIT_CONFIG)


def done_status(ok: bool, setup: Setup) -> int:
    """0 when the work went well and every policy file could be used, else 1."""
    return EXIT_OK if ok and not setup.broken else EXIT_FAILED


def load_for_restore(config_file: str | None) -> Setup:
    """The setup for ``restore``: partial, even when no policy file can be used at all;
    when the policies directory cannot be read, the daemon config alone, each problem as
    a bad file. Exit 2 only when the daemon config itself is bad."""
    path = config_path(config_file)
    try:
        setup = load_setup(path, partial=True, need_policies=False)
    except ConfigError as error:  # the policies directory cannot be read, or holds no file
        try:
            config = load_config(path)
        except ConfigError:
            report_config_error(error)
            sys.exit(EXIT_CONFIG)
        setup = Setup(config=config, policies=(), broken=_as_broken(error))
    for line in broken_lines(setup, "restore"):
        click.echo(line, err=True)
    return setup


def _as_broken(error: ConfigError) -> tuple[BrokenPolicy, ...]:
    """The problems of ``error`` grouped by file (all the policies': the daemon config alone
    loaded), in the order first seen."""
    files = dict.fromkeys(problem.file for problem in error.problems)
    return tuple(
        BrokenPolicy(file, tuple(p for p in error.problems if p.file == file)) for file in files
    )
