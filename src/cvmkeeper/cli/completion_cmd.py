"""``cvmkeeper completion bash|zsh|fish``: print the shell completion script.

click generates the scripts itself (``_CVMKEEPER_COMPLETE=bash_source cvmkeeper``); a
command is easier to find and to remember than that environment-variable recipe, and it is
listed in ``--help``. The script it prints is exactly the one click's recipe prints, so
both keep working.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
PROG_NAME = "cvmkeeper"
COMPLETE_VAR = "_CVMKEEPER_COMPLETE"
INSTALL_HINTS = {
    "bash": "cvmkeeper completion bash > ~/.cvmkeeper-complete.bash && "
    "echo '. ~/.cvmkeeper-complete.bash' >> ~/.bashrc",
    "zsh": "cvmkeeper completion zsh > ~/.cvmkeeper-complete.zsh && "
    "echo '. ~/.cvmkeeper-complete.zsh' >> ~/.zshrc",
    "fish": "cvmkeeper completion fish > ~/.config/fish/completions/cvmkeeper.fish",
}


def completion_script(root: click.Command, shell: str) -> str:
    """The completion script of ``shell`` for the command tree under ``root``."""
    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - SHELLS are all built into click 8.1+
        raise click.BadParameter(f"no completion for {shell}")
    return cls(root, {}, PROG_NAME, COMPLETE_VAR).source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion_command(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    The script completes command names, options and choices. Load it from your shell's
    start-up file:

    \b
      bash:  cvmkeeper completion bash > ~/.cvmkeeper-complete.bash
             echo '. ~/.cvmkeeper-complete.bash' >> ~/.bashrc
      zsh:   cvmkeeper completion zsh > ~/.cvmkeeper-complete.zsh
             echo '. ~/.cvmkeeper-complete.zsh' >> ~/.zshrc
      fish:  cvmkeeper completion fish > ~/.config/fish/completions/cvmkeeper.fish

    Exit status: 0 printed, 2 an unknown shell.
    """
    click.echo(completion_script(ctx.find_root().command, shell), nl=False)
