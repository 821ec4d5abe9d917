"""Local files written so that a crash or a reader never sees half of one.

The daemon's state file (``scheduler.state``) and the stop journal (``executor.stop_journal``)
are the only files cvmkeeper writes; both go through :func:`write_atomically`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


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
