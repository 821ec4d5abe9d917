"""The files cvmkeeper keeps in ``state_dir``: written so that a crash or a reader never
sees half of one, and opened without following symbolic links.

The daemon's state file (``scheduler.state``) and the stop journal (``executor.stop_journal``)
are the only files cvmkeeper writes; both go through :func:`write_atomically`.

A symbolic link planted in ``state_dir`` (by anyone who could write to the directory, or
left by a careless restore) would make cvmkeeper read, create or lock the file it points
at, with cvmkeeper's privileges. Every file there is opened with ``O_NOFOLLOW``
(:func:`open_fd`, :func:`read_text`): a link is refused with ``ELOOP`` (an ``OSError`` the
callers already report) instead of being followed. Writes go through ``mkstemp``
(``O_EXCL``) and ``os.replace``, which never follow a link.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["NOFOLLOW", "open_fd", "read_text", "write_atomically"]

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
