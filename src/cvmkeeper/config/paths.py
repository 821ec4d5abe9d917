"""Making a configured path absolute without ever raising for what the path points at.

``Path.resolve(strict=False)`` raises ``RuntimeError`` on a symlink loop in Python 3.11
(and may raise ``OSError`` elsewhere), so a config whose ``policies_dir`` or key file is a
looping link ended in a traceback before any check could report it. ``os.path.realpath``
with ``strict=False`` follows what it can and returns the rest as written; the loop is then
found, and reported with file and key, when the path is opened.

:func:`read_path` is how every path key of the daemon config is read (key files, DSN
file, policies directory, state directory, notification secrets): one place that expands
``$CREDENTIALS_DIRECTORY``, refuses NUL and unknown ``~user`` with the key's name, and
never raises.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from cvmkeeper.config.reader import Node, Reader


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


#: where systemd puts a unit's credentials (``$CREDENTIALS_DIRECTORY`` of cvmkeeper.service)
SYSTEMD_CREDENTIALS = "/run/credentials/cvmkeeper.service"
_CREDENTIALS_VARIABLE = re.compile(r"\$\{CREDENTIALS_DIRECTORY\}|\$CREDENTIALS_DIRECTORY\b")


def expand_credentials_directory(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with ``$CREDENTIALS_DIRECTORY`` / ``${CREDENTIALS_DIRECTORY}`` replaced.

    The only variable a path may use: the directory systemd hands a unit's credentials in
    (``LoadCredential=``, ``LoadCredentialEncrypted=``), so key files never need to lie
    in /etc. Unset (``validate`` from a shell), it is the unit's usual directory.
    """
    env = os.environ if environ is None else environ
    directory = env.get("CREDENTIALS_DIRECTORY") or SYSTEMD_CREDENTIALS
    return _CREDENTIALS_VARIABLE.sub(lambda _match: directory, text)


def read_path(reader: Reader, node: Node, path: str, base: Path) -> Path | None:
    """The path at ``node`` (key ``path``), relative to ``base``; ``None`` after a problem
    naming the key."""
    text = reader.string(node, path)
    if text is None:
        return None
    if not text.strip():
        reader.problem(node, path, "is empty: give a path")
        return None
    if "\0" in text:
        reader.problem(node, path, "contains a NUL character; not a path")
        return None
    text = expand_credentials_directory(text)
    try:
        expanded = Path(text).expanduser()
    except RuntimeError:  # "~someone/..." for a user that does not exist
        reader.problem(node, path, f"{text!r}: no such user's home directory")
        return None
    return absolute(base / expanded)
