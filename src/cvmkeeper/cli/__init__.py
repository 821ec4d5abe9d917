"""The ``cvmkeeper`` command line.

Each subcommand lives in its own module; this package wires the other layers together and
makes no decisions of its own. The group loads a command's module only when that command
runs (click's documented lazy-group pattern), so ``cvmkeeper run`` does not pay for the
emulator's or the daemon's imports. ``--help`` and shell completion import every command,
so the listing always shows each command's own short help.
"""

from __future__ import annotations

import importlib

import click

from cvmkeeper import __version__

COMMANDS: dict[str, str] = {
    # name: "module:attribute" of the click command, in the order of a first run
    "config": "cvmkeeper.cli.config_cmd:config_group",
    "validate": "cvmkeeper.cli.validate_cmd:validate",
    "schedule": "cvmkeeper.cli.schedule_cmd:schedule",
    "simulate": "cvmkeeper.cli.simulate_cmd:simulate_command",
    "plan": "cvmkeeper.cli.plan_cmd:plan_command",
    "run": "cvmkeeper.cli.run_cmd:run_command",
    "images": "cvmkeeper.cli.images_cmd:images_command",
    "status": "cvmkeeper.cli.status_cmd:status_command",
    "restore": "cvmkeeper.cli.restore_cmd:restore_command",
    "drill": "cvmkeeper.cli.drill_cmd:drill_command",
    "daemon": "cvmkeeper.cli.daemon_cmd:daemon",
    "emulator": "cvmkeeper.cli.emulator_cmd:emulator",
}
"""Every subcommand, by name. Adding a command is one line here."""


class LazyGroup(click.Group):
    """A click group whose subcommands are imported from ``module:attribute`` on first use."""

    def __init__(self, *args: object, lazy_commands: dict[str, str], **kwargs: object) -> None:
        """Like ``click.Group``, plus ``lazy_commands`` mapping names to import paths."""
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, eager and lazy, sorted as click lists them."""
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command called ``cmd_name``, importing its module if it is a lazy one."""
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            self.add_command(self._load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, cmd_name: str) -> click.Command:
        module_name, _, attribute = self.lazy_commands[cmd_name].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}:{attribute} is not a click command")
        return command


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="cvmkeeper")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Scheduled, quota-aware custom-image backups for Tencent Cloud CVM instances.

    cvmkeeper reads retention policies from YAML files, calls CreateImage for CVM
    instances on each policy's schedule, and rotates old images so that every region
    stays within its custom-image quota. Images it did not create are never touched.

    \b
    First steps:
      cvmkeeper config generate --output DIR   a commented config and a sample policy
      cvmkeeper validate --config DIR/cvmkeeper.yaml
      cvmkeeper plan --config DIR/cvmkeeper.yaml

    Every command reads --config FILE (default: $CVMKEEPER_CONFIG, else
    /etc/cvmkeeper/cvmkeeper.yaml). Shell completion: see README.md, "Commands".
    """
    # Every command's output is escaped and redacted and its logging set up the same way.
    from cvmkeeper.cli.output import cli_output  # noqa: PLC0415  (keeps `--help` fast)

    ctx.call_on_close(cli_output())


def main() -> None:
    """Console-script entry point."""
    cli()
