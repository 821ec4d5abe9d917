"""Warnings about secret files that other users can read.

A SecretKey or DSN file readable by group or others hands the account to every local user
in that group. cvmkeeper cannot fix the mode for the user (the file is theirs, and under
systemd's ``LoadCredential=`` it is already private), so it says so once per read, at
WARNING, naming the file and its mode but never its content.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def shared_mode(mode: int) -> bool:
    """True when ``mode`` lets the group or others read the file."""
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))


def warn_if_shared(path: Path, what: str, mode: int | None = None) -> bool:
    """Log a warning when the ``what`` file at ``path`` is readable by group or others.

    ``mode`` is the file's ``st_mode`` when the caller already has it (from ``fstat`` of
    the descriptor it read); else the path is stat'ed. Returns True when it warned.
    """
    if mode is None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return False
    if not stat.S_ISREG(mode) or not shared_mode(mode):
        return False
    log.warning(
        "%s file %s is readable by %s (mode %04o): anyone there can use it; chmod 600 it, "
        "or hand it over with systemd LoadCredential=/LoadCredentialEncrypted=",
        what, path, "group and others" if mode & stat.S_IROTH and mode & stat.S_IRGRP
        else "others" if mode & stat.S_IROTH else "its group", stat.S_IMODE(mode),
    )
    return True
