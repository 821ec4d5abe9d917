"""``cvmkeeper systemd-unit``: write the systemd unit (or the template unit) from package data.

A wheel install has no repository to copy ``systemd/cvmkeeper.service`` from, so the unit
ships inside the package: ``cvmkeeper/data/cvmkeeper.service`` is a symbolic link to
``systemd/cvmkeeper.service`` in the source tree, which the sdist and the wheel carry as a
regular file (one copy to edit, never two to keep in step).

The template unit ``cvmkeeper@.service`` runs one daemon per config, for several accounts
or several configs on one host: ``cvmkeeper@prod`` reads ``/etc/cvmkeeper/prod/cvmkeeper.yaml``
and keeps its state in ``/var/lib/cvmkeeper/prod``. It is derived from the single unit by a
few exact substitutions (``template_unit``), so every sandbox setting of the plain unit holds
for each instance too; a substitution whose anchor disappears fails loudly rather than
producing a unit that silently shares files between instances.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import click

from cvmkeeper.cli.output import raw_stream

UNIT_NAME = "cvmkeeper.service"
TEMPLATE_NAME = "cvmkeeper@.service"
INSTALLED_COMMAND = "/usr/local/bin/cvmkeeper"
EXIT_EXISTS = 2

TEMPLATE_HEADER = """\
# cvmkeeper@.service: one cvmkeeper daemon per config, for several accounts or configs.
#
# cvmkeeper@NAME reads /etc/cvmkeeper/NAME/cvmkeeper.yaml (policies in
# /etc/cvmkeeper/NAME/policies) and keeps its state in /var/lib/cvmkeeper/NAME. Give each
# config its own state directory, or two daemons share one state file:
#   state_dir: /var/lib/cvmkeeper/NAME
# Install (see docs/install.md, "Installing for real"):
#   cvmkeeper systemd-unit --template --output /etc/systemd/system/cvmkeeper@.service
#   cvmkeeper config generate --output /etc/cvmkeeper/prod      # then set state_dir
#   systemctl daemon-reload && systemctl enable --now cvmkeeper@prod
#   journalctl -u cvmkeeper@prod
#   cvmkeeper status --config /etc/cvmkeeper/prod/cvmkeeper.yaml
# Credentials per instance: /etc/cvmkeeper/NAME/credentials/{secret_id,secret_key,sentry_dsn}
# with the LoadCredential= lines below, in a drop-in (systemctl edit cvmkeeper@NAME).
#
# Everything below [Unit] is the single unit cvmkeeper.service with the instance's paths.
"""

TEMPLATE_SUBSTITUTIONS: tuple[tuple[str, str], ...] = (
    (
        "Description=cvmkeeper - scheduled CVM custom-image backups for Tencent Cloud\n",
        "Description=cvmkeeper %i - scheduled CVM custom-image backups for Tencent Cloud\n",
    ),
    (
        f"\nExecStart={INSTALLED_COMMAND} daemon\n",
        f"\nExecStart={INSTALLED_COMMAND} daemon --config /etc/cvmkeeper/%i/cvmkeeper.yaml\n",
    ),
    ("\nConfigurationDirectory=cvmkeeper\n", "\nConfigurationDirectory=cvmkeeper/%i\n"),
    ("\nStateDirectory=cvmkeeper\n", "\nStateDirectory=cvmkeeper/%i\n"),
)
"""(anchor, replacement) pairs; each anchor must occur exactly once in the single unit."""
#: every mention of the credentials directory (the LoadCredential= lines and the comments
#: that create the files) moves below the instance's directory; at least one must exist
CREDENTIALS_DIR = ("/etc/cvmkeeper/credentials", "/etc/cvmkeeper/%i/credentials")


class UnitTemplateError(RuntimeError):
    """The shipped unit no longer has a line the template is derived from (a packaging bug)."""


def unit_text() -> str:
    """The single unit, as shipped in the package (``cvmkeeper/data/cvmkeeper.service``)."""
    return resources.files("cvmkeeper").joinpath("data", UNIT_NAME).read_text(encoding="utf-8")


def template_unit(unit: str) -> str:
    """``cvmkeeper@.service`` derived from the single unit ``unit``.

    The header comment (everything before ``[Unit]``) is replaced by the template's own;
    each substitution's anchor must occur exactly once, else ``UnitTemplateError``.
    """
    _header, marker, body = unit.partition("[Unit]\n")
    if not marker:
        raise UnitTemplateError(f"{UNIT_NAME} has no [Unit] section")
    for anchor, replacement in TEMPLATE_SUBSTITUTIONS:
        count = body.count(anchor)
        if count != 1:
            raise UnitTemplateError(
                f"{UNIT_NAME}: expected {anchor.strip()!r} once, found it {count} times"
            )
        body = body.replace(anchor, replacement)
    old_dir, new_dir = CREDENTIALS_DIR
    if old_dir not in body:
        raise UnitTemplateError(f"{UNIT_NAME}: no LoadCredential= path under {old_dir}")
    body = body.replace(old_dir, new_dir)
    return TEMPLATE_HEADER + "\n" + marker + body


def with_executable(unit: str, executable: str) -> str:
    """``unit`` whose ``ExecStart=`` runs ``executable`` instead of the pipx location."""
    old = f"ExecStart={INSTALLED_COMMAND} "
    if unit.count(old) != 1:
        raise UnitTemplateError(f"{UNIT_NAME}: expected one {old!r} line")
    return unit.replace(old, f"ExecStart={executable} ")


def rendered_unit(template: bool, executable: str | None) -> str:
    """The text ``systemd-unit`` writes for these options."""
    text = unit_text()
    if template:
        text = template_unit(text)
    if executable:
        text = with_executable(text, executable)
    return text


@click.command("systemd-unit")
@click.option(
    "--template",
    is_flag=True,
    help="Write the template unit cvmkeeper@.service (one daemon per config, "
    "cvmkeeper@NAME reads /etc/cvmkeeper/NAME/cvmkeeper.yaml) instead of cvmkeeper.service.",
)
@click.option(
    "--output",
    "-o",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Write the unit to FILE, e.g. /etc/systemd/system/cvmkeeper.service. "
    "Default: print it to stdout.",
)
@click.option(
    "--executable",
    metavar="PATH",
    default=None,
    help=f"The cvmkeeper command ExecStart= runs. Default: {INSTALLED_COMMAND}, where a "
    "system-wide pipx install puts it; for a venv give e.g. /opt/cvmkeeper/bin/cvmkeeper.",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists already.")
def systemd_unit_command(
    template: bool, output: Path | None, executable: str | None, force: bool
) -> None:
    """Write the systemd unit that runs the daemon, from the installed package.

    The unit is the hardened Type=notify service of the repository's
    systemd/cvmkeeper.service (its comments explain every setting). With --template it
    is cvmkeeper@.service, whose instance name picks the config:
    cvmkeeper@prod runs `cvmkeeper daemon --config /etc/cvmkeeper/prod/cvmkeeper.yaml`
    with its own state directory /var/lib/cvmkeeper/prod.

    \b
    Example (as root):
      cvmkeeper systemd-unit --output /etc/systemd/system/cvmkeeper.service
      systemctl daemon-reload && systemctl enable --now cvmkeeper

    Exit status: 0 written, 2 FILE exists already (use --force) or cannot be written.
    """
    if executable is not None and not executable.startswith("/"):
        click.echo(f"--executable {executable}: give an absolute path", err=True)
        sys.exit(EXIT_EXISTS)
    text = rendered_unit(template, executable)
    if output is None:
        # The unit is package data, not a secret: write it as it is. The redaction of every
        # command's output (cli.output) would read ``LoadCredential=secret_key:/path`` as a
        # secret and print a unit that no longer works.
        click.echo(text, nl=False, file=raw_stream(sys.stdout))
        return
    if output.exists() and not force:
        click.echo(f"{output}: exists already; use --force to overwrite it", err=True)
        sys.exit(EXIT_EXISTS)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        output.chmod(0o644)
    except OSError as error:
        click.echo(f"{output}: cannot write: {error.strerror or error}", err=True)
        sys.exit(EXIT_EXISTS)
    click.echo(f"wrote {output}")
