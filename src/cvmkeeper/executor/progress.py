"""One progress line of a run: text for whoever prints it, its meaning for whoever counts.

The executor reports each step as a line (``"ap-guangzhou: created NAME (ID) for ins-..."``).
Printing is all most receivers do (a test's list, the demo, the journal), so a line stays a
``str``. A display that counts (``cli.run_progress``: images made, waiting, failed per region)
reads :attr:`ProgressLine.kind`, :attr:`~ProgressLine.region` and
:attr:`~ProgressLine.state` instead of parsing the words back out of the text (issue #20):
the wording of a line can change without breaking the counts.
"""

from __future__ import annotations

import enum
import logging


class ProgressKind(enum.Enum):
    """What a progress line reports."""

    #: something about the run or a region as a whole (a plan, a wait, a catch-up)
    NOTE = "note"
    #: an image was made: created, adopted after a lost answer, or copied
    MADE = "made"
    #: an image was deleted (or found already gone)
    DELETED = "deleted"
    #: an image the run waited for left its busy state (``state``), or vanished (``None``)
    SETTLED = "settled"
    ERROR = "error"
    WARNING = "warning"

    @property
    def per_image(self) -> bool:
        """True for the lines about one image (shown only with ``--verbose``)."""
        return self in (ProgressKind.MADE, ProgressKind.DELETED, ProgressKind.SETTLED)

    @classmethod
    def for_level(cls, level: int) -> ProgressKind:
        """The kind of a line logged at ``level`` that names no other kind."""
        if level >= logging.ERROR:
            return cls.ERROR
        if level >= logging.WARNING:
            return cls.WARNING
        return cls.NOTE


class ProgressLine(str):
    """A progress line (its text) with what it reports as fields.

    ``region`` is ``None`` for lines about the whole run (a bad policy file); ``state`` is
    the image state a ``SETTLED`` line reports (``None``: the image vanished or was never
    listed).
    """

    __slots__ = ("kind", "region", "state")
    kind: ProgressKind
    region: str | None
    state: str | None

    def __new__(
        cls,
        text: str,
        *,
        kind: ProgressKind = ProgressKind.NOTE,
        region: str | None = None,
        state: str | None = None,
    ) -> ProgressLine:
        line = super().__new__(cls, text)
        line.kind = kind
        line.region = region
        line.state = state
        return line
