"""One error for every problem in the config and policy files, all reported at once.

Each ``Problem`` names the file, the line and column (1-based) and the key path, and says
what is allowed, so that ``cvmkeeper validate`` can print the whole list in one go:
``policies/web.yaml:7:12: retention.keep_daly: unknown key (did you mean keep_daily?)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cvmkeeper.textsafe import escape


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong with one key of one file."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        # A key or value quoted in the message may hold the very character refused: escaped.
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return escape(text)


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every reason, in file order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(set(problems)))
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid configuration")
