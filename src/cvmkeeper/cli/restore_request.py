"""``cvmkeeper restore``'s options as one typed request, and how the command answers.

Split from ``restore_cmd`` (issue #20) so the command itself reads as: load, check the
request, find the restore point, restore. :class:`Reply` holds what every answer needs
(text or JSON, and the policy files that cannot be used, issue #19) so each refusal,
failure and success says them the same way.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

import click

from cvmkeeper.cli.broken_files import broken_files_json
from cvmkeeper.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, print_json
from cvmkeeper.config import BrokenPolicy
from cvmkeeper.core.restore import Placement


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    """What the user asked ``restore`` for, typed."""

    instance_id: str
    region_name: str | None
    image_id: str | None
    slot: datetime | None
    as_of: datetime | None
    new: bool
    overrides: Placement
    instance_name: str
    system_disk_only: bool
    yes: bool
    dry_run: bool
    timeout: float
    no_wait: bool
    as_json: bool

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> RestoreRequest:
        """The request of the click command's keyword arguments."""
        return cls(
            instance_id=options["instance_id"],
            region_name=options["region_name"],
            image_id=options["image_id"],
            slot=options["slot"],
            as_of=options["as_of"],
            new=options["new"],
            overrides=Placement(
                options["zone"],
                options["instance_type"],
                options["vpc_id"],
                options["subnet_id"],
                tuple(options["security_groups"]),
                options["data_disk_type"],
            ),
            instance_name=options["instance_name"],
            system_disk_only=options["system_disk_only"],
            yes=options["yes"],
            dry_run=options["dry_run"],
            timeout=options["timeout"],
            no_wait=options["no_wait"],
            as_json=options["as_json"],
        )

    @property
    def name(self) -> str:
        """The new instance's name."""
        return self.instance_name or f"restored-{self.instance_id}"

    def refusal(self) -> str:
        """Why these options do not go together, or ``""``."""
        if sum(x is not None for x in (self.image_id, self.slot, self.as_of)) > 1:
            return "give at most one of --image, --slot, --as-of"
        o = self.overrides
        placed = (o.zone, o.instance_type, o.vpc_id, o.subnet_id, o.security_group_ids)
        if not self.new and any((*placed, o.data_disk_type, self.instance_name)):
            return (
                "--zone, --instance-type, --vpc, --subnet, --security-group, "
                "--data-disk-type and --name are for --new"
            )
        if self.new and self.system_disk_only:
            return "--system-disk-only is for --in-place"
        return ""


@dataclass(frozen=True, slots=True)
class Reply:
    """How ``restore`` answers: text or ``as_json``; a policy file that cannot be used
    (``broken``) is in every JSON answer. It does not change a success's exit status: a
    restore needs no policy, so one done beside a bad file is done whole (a script that
    restores must not read "failed" and retry a launch that happened)."""

    as_json: bool
    broken: tuple[BrokenPolicy, ...] = ()

    def _print(self, document: dict[str, Any]) -> None:
        if self.as_json:
            print_json({**document, "broken_policy_files": broken_files_json(self.broken)})

    def refuse(self, message: str) -> NoReturn:
        """Nothing was done: exit 2."""
        self._print({"ok": False, "refused": message})
        click.echo(f"restore: refused: {message}", err=True)
        sys.exit(EXIT_CONFIG)

    def fail(self, message: str, extra: dict[str, Any] | None = None) -> NoReturn:
        """The cloud failed: exit 1."""
        self._print({"ok": False, "error": message, **(extra or {})})
        click.echo(f"restore: failed: {message}", err=True)
        sys.exit(EXIT_FAILED)

    def done(self, document: dict[str, Any], *, ok: bool = True) -> NoReturn:
        """Print ``document`` (JSON only) and exit 0, or 1 when not ``ok``."""
        self._print(document)
        sys.exit(EXIT_OK if ok else EXIT_FAILED)
