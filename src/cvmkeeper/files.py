"""The files cvmkeeper keeps in ``state_dir``: written so that a crash or a reader never
sees half of one, and opened without following symbolic links.

The daemon's state file (``scheduler.state``), the stop journal (``executor.stop_journal``)
and the record of images created but not yet seen whole (``executor.created``) are the only
files cvmkeeper writes; all go through :func:`write_atomically`.

A symbolic link planted in ``state_dir`` (by anyone who could write to the directory, or
left by a careless restore) would make cvmkeeper read, create or lock the file it points
at, with cvmkeeper's privileges. Every file there is opened with ``O_NOFOLLOW``
(:func:`open_fd`, :func:`read_text`): a link is refused with ``ELOOP`` (an ``OSError`` the
callers already report) instead of being followed. Writes go through ``mkstemp``
(``O_EXCL``) and ``os.replace``, which never follow a link.

Secret files (a SecretKey or DSN file) readable by group or others hand the account to
every local user in that group. cvmkeeper cannot fix the mode for the user (the file is
theirs, and under systemd's ``LoadCredential=`` it is already private), so
:func:`warn_if_shared` says so once per read, at WARNING, naming the file and its mode but
never its content.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

__all__ = [
    "NOFOLLOW",
    "open_fd",
    "read_text",
    "shared_mode",
    "warn_if_shared",
    "write_atomically",
]

#: the flags every open in ``state_dir`` adds
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def open_fd(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode)``."""
    return os.open(path, flags | NOFOLLOW, mode)


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path``; a symbolic link raises ``OSError`` (ELOOP), a missing
    file ``FileNotFoundError``, like ``Path.read_text``."""
    fd = open_fd(path, os.O_RDONLY)
    with os.fdopen(fd, encoding="utf-8") as handle:
        return handle.read()


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) as one step that survives a power cut.

    The text goes to a temporary file beside ``path`` (same directory, so the rename is
    atomic), which is flushed and ``fsync``-ed, renamed over ``path``, and then the
    directory is ``fsync``-ed so that the rename itself is durable. A reader sees the old
    file or the new one, never a mixture; on any error the temporary file is removed and
    the error propagates (``OSError`` for the file system's refusals).
    """
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# --- secret files readable by others ---------------------------------------------------

log = logging.getLogger("cvmkeeper.filemodes")  # the logger name users may filter on


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
        what,
        path,
        "group and others"
        if mode & stat.S_IROTH and mode & stat.S_IRGRP
        else "others"
        if mode & stat.S_IROTH
        else "its group",
        stat.S_IMODE(mode),
    )
    return True
