"""Reading the documentation the way its tests need it: README.md and every page of docs/,
their marked shell blocks, their shown output, their headings, and the normalisation that lets
a real run be compared with text written down once.

Markers are HTML comments (invisible on GitHub) on the line right before a fenced block:

- ``<!-- runnable -->`` before a `` ```sh `` block: the doc test runs the block with bash
  (``set -euo pipefail``) against the emulator, and it must exit 0;
  ``<!-- runnable exit=N -->``: it must exit N (a block showing a refusal). Blocks without the
  marker (``make demo``, root and systemd steps, commands that never end) are shown only;
  ``make demo`` is run by tests/test_demo.py, the daemon line by the same file.
- ``<!-- output -->`` before a `` ```text `` block that follows a runnable block: that
  block's output (stdout and stderr, as a terminal shows them) must equal the text, after
  ``normalise``.
- ``<!-- demo-output -->`` before a `` ```text `` block: an excerpt of ``make demo``'s
  output; a line ``...`` stands for lines left out. See ``excerpt_matches``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"


def pages(root: Path = REPO) -> list[Path]:
    """Every documentation page under ``root`` in a fixed order: the README, then the
    Markdown pages of ``docs/`` by name."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def page_name(path: Path, root: Path = REPO) -> str:
    """``path`` as the repository names it (``docs/install.md``)."""
    return path.relative_to(root).as_posix()


def headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of every Markdown heading of ``text`` outside fenced blocks."""
    found: list[tuple[int, str]] = []
    fenced = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.fullmatch(r"(#{1,6}) (.+)", line)):
            found.append((len(match.group(1)), match.group(2).strip()))
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def section(title: str, root: Path = REPO) -> str:
    """The text of the section whose heading is ``## {title}``, on whichever page has it."""
    for path in pages(root):
        text = path.read_text(encoding="utf-8")
        start = text.find(f"\n## {title}\n")
        if start != -1:
            end = text.find("\n## ", start + 1)
            return text[start : end if end != -1 else len(text)]
    raise LookupError(f"no page has a section '## {title}'")


_MARKER = re.compile(r"<!--\s*([a-z-]+)(?:\s+exit=(\d+))?\s*-->")
_FENCE = re.compile(r"```(\w*)")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: its language, text, first line, marker, and the
    exit status a runnable block must end with."""

    language: str
    text: str
    line: int
    marker: str | None
    exit_code: int = 0


def blocks(text: str) -> list[Block]:
    """Every fenced block of ``text`` in order, with the marker comment right before it."""
    lines = text.splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        fence = _FENCE.fullmatch(lines[index].strip())
        if not fence:
            index += 1
            continue
        marker = None
        exit_code = 0
        if index > 0 and (match := _MARKER.fullmatch(lines[index - 1].strip())):
            marker = match.group(1)
            exit_code = int(match.group(2) or 0)
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index])
            index += 1
        indent = len(lines[start]) - len(lines[start].lstrip())
        text_block = "\n".join(line[indent:] for line in body)
        found.append(Block(fence.group(1), text_block, start + 1, marker, exit_code))
        index += 1
    return found


_NORMALISERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bimg-[0-9a-z]{8}\b"), "img-ID"),
    (re.compile(r"\bage \S+"), "age AGE"),
    # the emulator's CreatedTime of the fleet's images, at the end of an inventory line
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", re.MULTILINE), "CREATED"),
    # mktemp -d directories, wherever $TMPDIR is
    (re.compile(r"\S*/tmp\.[A-Za-z0-9]{6,}/"), "TMPDIR/"),
    (re.compile(r"Demo done in \d+ s"), "Demo done in N s"),
    # validate's next slot of each policy, in UTC and local time, which moves with the clock
    (re.compile(r"; next \d{4}-\d\d-\d\d \d\d:\d\dZ \(\d\d:\d\d "), "; next NEXT (LOCAL "),
    (re.compile(r"[ \t]+$", re.MULTILINE), ""),
)


def normalise(text: str) -> str:
    """``text`` with what differs between runs replaced: image ids, ages, creation times,
    temporary directories, the demo's duration, validate's next slots, trailing blanks."""
    for pattern, replacement in _NORMALISERS:
        text = pattern.sub(replacement, text)
    return text.strip("\n")


def excerpt_matches(excerpt: str, output: str) -> list[str]:
    """Problems comparing an excerpt with a real output (both normalised); [] if it matches.

    The excerpt is split at lines ``...``; each part must appear in the output as
    consecutive lines, the parts in order.
    """
    out_lines = normalise(output).splitlines()
    parts: list[list[str]] = [[]]
    for line in normalise(excerpt).splitlines():
        if line.strip() == "...":
            parts.append([])
        else:
            parts[-1].append(line)
    problems: list[str] = []
    position = 0
    for part in parts:
        if not part:
            continue
        found = next(
            (
                start
                for start in range(position, len(out_lines) - len(part) + 1)
                if out_lines[start : start + len(part)] == part
            ),
            None,
        )
        if found is None:
            first = part[0]
            near = [i for i, line in enumerate(out_lines) if line == first]
            problems.append(
                f"excerpt part starting {first!r} ({len(part)} lines) not found in order "
                f"after output line {position} (its first line is at {near or 'no line'})"
            )
            continue
        position = found + len(part)
    return problems
