"""The ``cvmkeeper`` command line.

Each subcommand lives in its own module and is registered below; this package wires the
other layers together and makes no decisions of its own.
"""

from __future__ import annotations

import click

from cvmkeeper import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cvmkeeper")
def cli() -> None:
    """Scheduled, quota-aware custom-image backups for Tencent Cloud CVM instances.

    cvmkeeper reads retention policies from YAML files, calls CreateImage for CVM
    instances on each policy's schedule, and rotates old images so that every region
    stays within its custom-image quota. Images it did not create are never touched.
    """


def _register() -> None:
    """Attach every subcommand. One import per command module keeps this file stable."""
    # -- emulator (issue 2) --
    from cvmkeeper.cli.emulator_cmd import emulator

    cli.add_command(emulator)
    # -- config / validate / schedule / simulate (issue 4) --
    from cvmkeeper.cli.schedule_cmd import schedule
    from cvmkeeper.cli.simulate_cmd import simulate_command
    from cvmkeeper.cli.validate_cmd import validate

    cli.add_command(validate)
    cli.add_command(schedule)
    cli.add_command(simulate_command)
    # -- cloud (issue 3) --
    # -- plan / run / images (issue 5) --
    from cvmkeeper.cli.images_cmd import images_command
    from cvmkeeper.cli.plan_cmd import plan_command
    from cvmkeeper.cli.run_cmd import run_command

    cli.add_command(plan_command)
    cli.add_command(run_command)
    cli.add_command(images_command)
    # -- daemon (issue 6) --
    from cvmkeeper.cli.daemon_cmd import daemon

    cli.add_command(daemon)
    # -- status (issue 7) --
    from cvmkeeper.cli.status_cmd import status_command

    cli.add_command(status_command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli()
