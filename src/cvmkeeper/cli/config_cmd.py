"""``cvmkeeper config generate``: a commented daemon config and a sample policy to start from.

Like borgmatic's ``config generate``: a first-time user gets files that explain every key,
show its default, and pass ``cvmkeeper validate`` as written. The templates are package data
(``cvmkeeper/data/``), so an installed ``cvmkeeper`` can write them without the repository.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import click

from cvmkeeper.config.model import DEFAULT_CONFIG_PATH

CONFIG_TEMPLATE = "cvmkeeper.yaml"
POLICY_TEMPLATE = "policy.yaml"
POLICY_FILE = Path("policies") / "web-daily.yaml"
EXIT_EXISTS = 2


def template_text(name: str) -> str:
    """The text of one template shipped in ``cvmkeeper/data``."""
    return resources.files("cvmkeeper").joinpath("data", name).read_text(encoding="utf-8")


def generated_files(output: Path) -> dict[Path, str]:
    """What ``generate`` writes into ``output``: path -> text."""
    return {
        output / DEFAULT_CONFIG_PATH.name: template_text(CONFIG_TEMPLATE),
        output / POLICY_FILE: template_text(POLICY_TEMPLATE),
    }


@click.group("config")
def config_group() -> None:
    """Write a commented config and a sample policy to start from."""


@config_group.command("generate")
@click.option(
    "--output",
    "-o",
    "output",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CONFIG_PATH.parent,
    show_default=True,
    metavar="DIR",
    help=(
        f"Directory to write {DEFAULT_CONFIG_PATH.name} and {POLICY_FILE} into "
        "(created if missing)."
    ),
)
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def generate(output: Path, force: bool) -> None:
    """Write a commented daemon config and a sample policy into --output.

    The config lists every key with its default (most of them commented out) and what it
    means; the policy backs up instances tagged backup=daily every night and keeps
    daily, weekly and monthly images. Both pass `cvmkeeper validate` as written: edit the
    regions, targets and retention, then validate again.

    \b
    Example:
      cvmkeeper config generate --output /etc/cvmkeeper
      cvmkeeper validate --config /etc/cvmkeeper/cvmkeeper.yaml

    Exit status: 0 written, 2 a file exists already (use --force) or cannot be written.
    """
    files = generated_files(output)
    existing = [path for path in files if path.exists()]
    if existing and not force:
        for path in existing:
            click.echo(f"{path}: exists already; use --force to overwrite it", err=True)
        sys.exit(EXIT_EXISTS)
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            click.echo(f"wrote {path}")
    except OSError as exc:
        click.echo(f"{exc.filename or output}: cannot write: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_EXISTS)
    config_file = output / DEFAULT_CONFIG_PATH.name
    click.echo(f"next: edit them, then run  cvmkeeper validate --config {config_file}")
