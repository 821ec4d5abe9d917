"""Policy files that cannot be used, as the read-only commands show them (issue #19).

``plan``, ``images``, ``status`` and ``report`` load the config partially, like ``run`` and
the daemon (``load_setup(partial=True)``): one bad policy file must not hide the state of
every other policy, least of all on the morning screen. So they show the good policies
and name each bad file loudly: a ``WARNING`` block on stderr with every problem as
``file:line:col: key: message``, a ``broken_policy_files`` list in ``--json``, and an exit
status that says something is wrong (each command's own "needs attention" code). Only
``validate`` stays strict: it is the check to run before a reload.
"""

from __future__ import annotations

from typing import Any

import click

from cvmkeeper.cli.common import load_or_exit
from cvmkeeper.config import BrokenPolicy, Setup


def load_partial_or_exit(config_file: str | None, command: str) -> Setup:
    """The setup with every good policy (exit 2 only for what stays fatal: a bad daemon
    config, no policy file, no usable policy), the bad files said on stderr."""
    setup = load_or_exit(config_file, partial=True)
    for line in broken_lines(setup, command):
        click.echo(line, err=True)
    return setup


def fate(broken: BrokenPolicy) -> str:
    """What the daemon does about the file's policy meanwhile."""
    if broken.stand_in:
        return "the daemon keeps running the version it loaded before"
    return "its policy does not run; images of policies not loaded are held, never rotated"


def broken_lines(setup: Setup, command: str) -> list[str]:
    """The stderr block: one headline per broken file, then each of its problems."""
    lines: list[str] = []
    for broken in setup.broken:
        named = f" (policy {broken.name!r})" if broken.name else ""
        lines.append(
            f"{command}: WARNING policy file {broken.file}{named} cannot be used: "
            f"{fate(broken)}; shown without it (run `cvmkeeper validate`)"
        )
        lines += [f"  {problem}" for problem in broken.problems]
    return lines


def broken_files_json(broken_files: tuple[BrokenPolicy, ...]) -> list[dict[str, Any]]:
    """``broken_policy_files`` of a ``--json`` output: each file, the policy it declares,
    whether an old version stands in, and its problems with line, column and key."""
    return [
        {
            "file": broken.file,
            "policy": broken.name,
            "old_version_kept": broken.stand_in,
            "problems": [
                {
                    "line": problem.line,
                    "column": problem.column,
                    "key": problem.path,
                    "message": problem.message,
                    "text": str(problem),
                }
                for problem in broken.problems
            ],
        }
        for broken in broken_files
    ]
