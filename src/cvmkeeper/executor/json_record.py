"""A versioned JSON record in ``state_dir``, changed read-modify-write under an ``flock``.

The executor keeps two such records, shared by every cvmkeeper process of the host: the
stop journal (``executor.stop_journal``) and the images created and not yet listed whole
(``executor.created``). Both hold ``{"version": N, "<field>": [items]}``, take an exclusive
``flock`` on a lock file beside it (never on the record itself: the record is replaced by a
rename, and a lock on a replaced file guards nothing), read, change and write the whole
document through ``files.write_atomically``. This module is that plumbing, once; what the
items are, and what an unreadable document means (start again, or refuse), stays with
each record.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvmkeeper import files

__all__ = ["JsonRecord"]


@dataclass(frozen=True, slots=True)
class JsonRecord:
    """The document at ``path``, locked through ``lock_path``: ``{"version": version,
    field: [items]}``, written with ``indent``."""

    path: Path
    lock_path: Path
    version: int
    field: str
    indent: int = 2

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive ``flock`` on the lock file (made when missing) meanwhile."""
        fd = files.open_fd(self.lock_path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def read(self) -> Any:
        """The parsed document. A missing file raises ``FileNotFoundError``; text that is
        not UTF-8 or not JSON ``ValueError`` (``UnicodeDecodeError``,
        ``json.JSONDecodeError``): what each means is the record's to say."""
        return json.loads(files.read_text(self.path))

    def write(self, items: Iterable[Any]) -> None:
        """Replace the record with ``items`` (``files.write_atomically``)."""
        document = {"version": self.version, self.field: list(items)}
        files.write_atomically(self.path, json.dumps(document, indent=self.indent) + "\n")
