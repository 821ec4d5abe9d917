"""Every command's output and logging set up the same way: escaped, redacted, levelled.

Before this, only ``daemon`` set up logging: other commands printed log records through
Python's last-resort handler (unredacted), and their ``click.echo`` output carried what the
API or a proxy sent as it came (a session token echoed in an error message, ``\\x1b``
sequences, newlines forging lines). ``cli_output()`` is entered by the command group for
every command, whatever it is:

- stdout and stderr are wrapped by ``SafeStream``: each write is redacted with the same
  rules as the log lines (``cvmkeeper.logs.redact``) and escaped with ``escape_layout``
  (control, zero-width and bidi characters; newlines and tabs are the output's own layout);
- logging goes through ``setup_logging`` (redaction, journald priorities under systemd) at
  WARNING, the level the last-resort handler printed before (INFO when stderr is the
  journal); ``daemon`` replaces it with its own ``--log-level`` and ``--log-format``.

A display that draws on a terminal on purpose (the live progress line's ``\\r\\x1b[K``)
writes those few bytes through ``raw_stream``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

from cvmkeeper.logs import redact, setup_logging, stream_is_journal
from cvmkeeper.textsafe import escape_layout


class SafeStream:
    """A text stream that redacts and escapes everything written to it, then passes it on.

    It has no ``buffer`` attribute on purpose: click writes to a text stream's binary buffer
    when it finds one, which would go around the escaping.
    """

    def __init__(self, stream: TextIO) -> None:
        self.raw = stream

    def write(self, text: str) -> int:
        """Write ``text`` redacted and escaped; returns the length given (as callers expect)."""
        self.raw.write(escape_layout(redact(text)))
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        """Write every line of ``lines``."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        if name == "buffer":
            raise AttributeError(name)
        return getattr(self.raw, name)


def raw_stream(stream: TextIO | SafeStream) -> TextIO:
    """The stream under a ``SafeStream`` (for deliberate terminal control), else ``stream``."""
    return stream.raw if isinstance(stream, SafeStream) else stream


def cli_output() -> Callable[[], None]:
    """Wrap stdout/stderr and set up logging for one command; returns the undo (run it when
    the command ends, so in-process callers such as tests get their streams back)."""
    saved_out, saved_err = sys.stdout, sys.stderr
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    if not isinstance(sys.stdout, SafeStream):
        sys.stdout = SafeStream(sys.stdout)
    if not isinstance(sys.stderr, SafeStream):
        sys.stderr = SafeStream(sys.stderr)
    stderr = raw_stream(sys.stderr)
    # Under systemd (a timer's `cvmkeeper run`) the journal gets every progress line as a
    # log record with its priority; on a terminal, warnings and errors only.
    setup_logging(
        logging.INFO if stream_is_journal(stderr) else logging.WARNING, "auto", stream=stderr
    )

    def undo() -> None:
        sys.stdout, sys.stderr = saved_out, saved_err
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)

    return undo
