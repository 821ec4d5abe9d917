"""Opening files in ``state_dir`` without following symbolic links.

``state_dir`` holds the daemon's state, the stop journal and its locks. A symbolic link
planted there (by anyone who could write to the directory, or left by a careless restore)
would make cvmkeeper read, create or lock the file it points at, with cvmkeeper's
privileges. Every file there is opened with ``O_NOFOLLOW``: a link is refused with
``ELOOP`` (an ``OSError`` the callers already report) instead of being followed. Writes
already go through ``mkstemp`` (``O_EXCL``) and ``os.replace``, which never follow a link.
"""

from __future__ import annotations

import os
from pathlib import Path

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
