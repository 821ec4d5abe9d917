"""What to tell an administrator whose command finds no credentials on the daemon's host.

Under systemd the daemon gets its keys through ``LoadCredential=``: systemd copies the
root-only files (``/etc/cvmkeeper/credentials/secret_id`` and ``secret_key`` in the
documented setup) into a private ``$CREDENTIALS_DIRECTORY`` that only the service sees.
``cvmkeeper status`` typed in a root shell has no such directory and fails. The documented
way is to point the command at the same files: ``$CREDENTIALS_DIRECTORY`` is the first
source of the default chain (``cloud.credentials``), so

    sudo CREDENTIALS_DIRECTORY=/etc/cvmkeeper/credentials cvmkeeper status

reads exactly what the service reads, with the files' own permissions deciding who may.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cvmkeeper.cloud.credentials import CREDENTIALS_DIRECTORY_ENV, CredentialsNotFoundError

#: where docs/install.md and the unit's comments tell administrators to keep the key files
DOCUMENTED_DIRECTORY = Path("/etc/cvmkeeper/credentials")


def credentials_hint(
    error: Exception,
    command: str,
    environ: Mapping[str, str] | None = None,
    directory: Path = DOCUMENTED_DIRECTORY,
) -> list[str]:
    """Lines that say what to do after ``error`` (none when it is not "nothing found")."""
    env = os.environ if environ is None else environ
    if not isinstance(error, CredentialsNotFoundError) or env.get(CREDENTIALS_DIRECTORY_ENV):
        return []
    lines = [
        "hint: the daemon gets its keys from systemd (LoadCredential=), which only the "
        "service can see.",
    ]
    where = str(directory)
    if directory.is_dir():
        lines.append(f"  {where} exists: as a user who can read it (root), run")
    else:
        lines.append("  With the key files where docs/install.md puts them, run as root")
    lines += [
        f"    {CREDENTIALS_DIRECTORY_ENV}={where} cvmkeeper {command}",
        "  or give credentials: secret_id and secret_key_file in the config, or "
        "TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY.",
    ]
    return lines
