"""Making a configured path absolute without ever raising for what the path points at.

``Path.resolve(strict=False)`` raises ``RuntimeError`` on a symlink loop in Python 3.11
(and may raise ``OSError`` elsewhere), so a config whose ``policies_dir`` or key file is a
looping link ended in a traceback before any check could report it. ``os.path.realpath``
with ``strict=False`` follows what it can and returns the rest as written; the loop is then
found, and reported with file and key, when the path is opened.
"""

from __future__ import annotations

import os
from pathlib import Path


def absolute(path: Path) -> Path:
    """``path`` made absolute with symlinks followed as far as they go; never raises."""
    try:
        return Path(os.path.realpath(path))
    except (OSError, RuntimeError, ValueError):
        return Path(os.path.abspath(path))


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (shorter messages)."""
    try:
        return str(absolute(path).relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)
