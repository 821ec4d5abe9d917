"""Reading YAML with positions: typed accessors that collect problems instead of raising.

PyYAML's ``safe_load`` forgets where a value came from and silently keeps the last of two
duplicate keys. Here a file is *composed* into PyYAML nodes (which keep their line and
column), and a ``Reader`` walks those nodes with small typed accessors. Each accessor
returns the value, or ``None`` after recording a ``Problem`` that names the file, position
and key path, so one pass reports every mistake in the file.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Iterator
from datetime import timedelta
from typing import TypeVar

import yaml

from cvmkeeper.config.errors import Problem
from cvmkeeper.core.durations import format_duration, parse_duration
from cvmkeeper.textsafe import unsafe_characters

Node = yaml.Node
T = TypeVar("T")

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_KINDS = {
    _STR: "a string",
    _INT: "an integer",
    _BOOL: "a boolean",
    _NULL: "null",
    _FLOAT: "a number",
    "tag:yaml.org,2002:timestamp": "a date",
}


def _kind(node: Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _KINDS.get(node.tag, f"a value tagged {node.tag}")


class Reader:
    """Typed access to the YAML nodes of one file, collecting problems as it goes."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        #: the mode of the file read (``st_mode``), when it came from a file: some keys
        #: (a plain DSN) are refused in a file that other users can read
        self.file_mode: int | None = None

    # -- reporting ----------------------------------------------------------------------

    def problem(self, node: Node | None, path: str, message: str) -> None:
        """Record a problem at ``node``'s position (or at the file when there is none)."""
        line = node.start_mark.line + 1 if node is not None else 0
        column = node.start_mark.column + 1 if node is not None else 0
        self.problems.append(Problem(self.source, line, column, path, message))

    # -- documents ----------------------------------------------------------------------

    def compose(self, text: str) -> Node | None:
        """Compose ``text`` into one YAML node tree; ``None`` (and a problem) if it cannot."""
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 0
            column = mark.column + 1 if mark is not None else 0
            what = exc.problem or exc.context or "invalid YAML"
            self.problems.append(Problem(self.source, line, column, "", f"not valid YAML: {what}"))
            return None
        except yaml.reader.ReaderError as exc:
            self.problems.append(self._forbidden_character(text, exc))
            return None
        except (yaml.YAMLError, RecursionError, ValueError) as exc:
            self.problems.append(
                Problem(self.source, 0, 0, "", f"not valid YAML: {type(exc).__name__}")
            )
            return None
        if root is None:
            self.problems.append(Problem(self.source, 0, 0, "", "the file is empty"))
        return root

    def _forbidden_character(self, text: str, exc: yaml.reader.ReaderError) -> Problem:
        """A character YAML forbids (NUL, most control characters) as ``file:line:col``.

        PyYAML's ``ReaderError`` carries no mark, only the character's offset in the text
        (``position``); the line and column are counted from it (lines end at ``\\n``).
        """
        position = exc.position if 0 <= exc.position <= len(text) else len(text)
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        character = exc.character
        code = ord(character) if isinstance(character, str) else int(character)
        return Problem(
            self.source,
            line,
            column,
            "",
            f"not valid YAML: character U+{code:04X} is not allowed (YAML forbids control "
            "and non-printable characters; remove it, or escape it inside double quotes)",
        )

    # -- structure ----------------------------------------------------------------------

    def mapping(
        self,
        node: Node,
        path: str,
        allowed: Collection[str] | None,
        required: Collection[str] = (),
    ) -> dict[str, Node] | None:
        """The keys of a mapping node; unknown, duplicate and missing keys are problems.

        ``allowed=None`` accepts any string key (for free-form maps such as tags).
        """
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, path, f"expected a mapping, got {_kind(node)}")
            return None
        result: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                self.problem(key_node, path, "merge keys (<<) are not supported; write keys out")
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
                self.problem(key_node, path, f"keys must be strings, got {_kind(key_node)}")
                continue
            key = str(key_node.value)
            key_path = f"{path}.{key}" if path else key
            if allowed is None and not self._printable(key_node, key_path, key):
                continue
            if key in result:
                first = result[key].start_mark.line + 1
                self.problem(key_node, key_path, f"duplicate key (first given on line {first})")
                continue
            if allowed is not None and key not in allowed:
                self.problem(key_node, key_path, _unknown_key(key, allowed))
                continue
            result[key] = value_node
        for key in required:
            if key not in result and not any(k.value == key for k, _ in node.value):
                where = f"{path}.{key}" if path else key
                self.problem(node, where, "required key is missing")
        return result

    def items(self, node: Node, path: str) -> Iterator[tuple[str, Node]]:
        """``(path[i], item)`` for every item of a list node; a non-list is a problem."""
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, path, f"expected a list, got {_kind(node)}")
            return
        for index, item in enumerate(node.value):
            yield f"{path}[{index}]", item

    # -- scalars ------------------------------------------------------------------------

    def string(
        self,
        node: Node,
        path: str,
        pattern: re.Pattern[str] | None = None,
        expected: str = "",
        raw: bool = False,
    ) -> str | None:
        """A string scalar (``raw=True`` also takes numbers and booleans as written)."""
        if not isinstance(node, yaml.ScalarNode) or (
            node.tag != _STR and not (raw and node.tag != _NULL)
        ):
            self.problem(node, path, f"expected a string, got {_kind(node)}")
            return None
        value = str(node.value)
        if not self._printable(node, path, value):
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.problem(node, path, f"{value!r} is not {expected}")
            return None
        return value

    def _printable(self, node: Node, path: str, value: str) -> bool:
        """False (and a problem) when ``value`` holds a control, zero-width or bidi character.

        Such a character in a name, tag or path cannot be seen, or changes what is seen
        (``\u202e`` shows a name backwards, ``\x1b`` rewrites a terminal): every string a
        file gives is refused with it, where it is written.
        """
        found = unsafe_characters(value)
        if found:
            self.problem(
                node,
                path,
                f"contains {', '.join(found)}: control, invisible (zero-width) and "
                "direction-changing characters are not allowed",
            )
        return not found

    def integer(
        self, node: Node, path: str, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        """An integer scalar within ``[minimum, maximum]``."""
        if not isinstance(node, yaml.ScalarNode) or node.tag != _INT:
            self.problem(node, path, f"expected an integer, got {_kind(node)}")
            return None
        try:
            value = int(str(node.value).replace("_", ""), 0)
        except ValueError:
            self.problem(node, path, f"{node.value!r} is not a plain decimal integer")
            return None
        if minimum is not None and value < minimum:
            self.problem(node, path, f"must be at least {minimum}, got {value}")
            return None
        if maximum is not None and value > maximum:
            self.problem(node, path, f"must be at most {maximum}, got {value}")
            return None
        return value

    def number(
        self, node: Node, path: str, minimum: float | None = None, maximum: float | None = None
    ) -> float | None:
        """An integer or decimal scalar within ``[minimum, maximum]``."""
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (_INT, _FLOAT):
            self.problem(node, path, f"expected a number, got {_kind(node)}")
            return None
        try:
            value = float(str(node.value).replace("_", ""))
        except ValueError:
            self.problem(node, path, f"{node.value!r} is not a plain decimal number")
            return None
        if not math.isfinite(value):
            self.problem(node, path, "must be a finite number")
            return None
        if minimum is not None and value < minimum:
            self.problem(node, path, f"must be at least {minimum:g}, got {value:g}")
            return None
        if maximum is not None and value > maximum:
            self.problem(node, path, f"must be at most {maximum:g}, got {value:g}")
            return None
        return value

    def boolean(self, node: Node, path: str) -> bool | None:
        """A boolean scalar (``true`` / ``false``)."""
        if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL:
            self.problem(node, path, f"expected true or false, got {_kind(node)}")
            return None
        return str(node.value).lower() in ("true", "yes", "on", "y")

    def choice(self, node: Node, path: str, choices: Collection[str]) -> str | None:
        """A string that must be one of ``choices``."""
        value = self.string(node, path)
        if value is not None and value not in choices:
            self.problem(node, path, f"{value!r} is not one of {', '.join(choices)}")
            return None
        return value

    def duration(self, node: Node, path: str, minimum: timedelta | None = None) -> timedelta | None:
        """A duration such as ``6h`` or ``1d12h``, at least ``minimum``."""
        text = self.string(node, path, raw=True)
        if text is None:
            return None
        try:
            value = parse_duration(text)
        except ValueError as exc:
            self.problem(node, path, str(exc))
            return None
        if minimum is not None and value < minimum:
            self.problem(node, path, f"must be at least {format_duration(minimum)}")
            return None
        return value

    def string_list(
        self,
        node: Node,
        path: str,
        pattern: re.Pattern[str] | None = None,
        expected: str = "",
    ) -> tuple[str, ...] | None:
        """A list of strings; repeated entries are problems."""
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, path, f"expected a list, got {_kind(node)}")
            return None
        values: list[str] = []
        ok = True
        for item_path, item in self.items(node, path):
            value = self.string(item, item_path, pattern, expected)
            if value is None:
                ok = False
            elif value in values:
                self.problem(item, item_path, f"{value!r} is listed twice")
                ok = False
            else:
                values.append(value)
        return tuple(values) if ok else None

    def checked(self, node: Node, path: str, value: T, check: Callable[[T], object]) -> T | None:
        """``value`` if ``check(value)`` does not raise ``ValueError``; else a problem."""
        try:
            check(value)
        except ValueError as exc:
            self.problem(node, path, str(exc))
            return None
        return value


def _unknown_key(key: str, allowed: Collection[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]}?)"
    return f"unknown key; allowed keys: {', '.join(sorted(allowed))}"
