"""Text from files and from the cloud, made safe to print: one escaping rule for every output.

Image names, tags, error messages and request ids come from people and from the API. Printed
as received, an ESC sequence rewrites the terminal, a newline forges a log or journal line,
and a zero-width or bidirectional-override character makes ``web-1`` and ``web-1`` differ or
shows a name backwards. Every output path (CLI text and JSON, log lines, plan output, cloud
error text) goes through ``escape`` (values, newlines included) or ``escape_layout`` (whole
output lines, whose own newlines and tabs are layout). Validation of our own files uses
``unsafe_characters`` to refuse such characters where they are written.

The set is Unicode's control (Cc), format (Cf: zero-width, bidi controls, BOM, ...), line
separator (Zl) and paragraph separator (Zp) characters; a test checks the table below against
``unicodedata`` over every code point.
"""

from __future__ import annotations

import re
import unicodedata

_C0 = "\x00-\x1f"
_C0_BUT_LAYOUT = "\x00-\x08\x0b-\x1f"  # newline and tab are the only layout kept
_OTHERS = (
    "\x7f-\x9f"  # Cc: DEL, C1 controls; then Cf, Zl, Zp (Unicode 15)
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
)
#: Every character that must not reach an output unescaped.
UNSAFE = re.compile(f"[{_C0}{_OTHERS}]")
#: The same, except newline and tab: what a whole output line may keep as layout.
UNSAFE_IN_LAYOUT = re.compile(f"[{_C0_BUT_LAYOUT}{_OTHERS}]")


def _escaped(match: re.Match[str]) -> str:
    """``\\x1b`` for a C0 control, ``\\uNNNN`` (a surrogate pair above U+FFFF) for the rest:
    the forms a JSON string also reads, so escaping JSON output keeps it valid JSON."""
    code = ord(match.group())
    if code < 0x20:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def escape(text: str) -> str:
    """``text`` with every control, format and separator character as ``\\xNN``/``\\uNNNN``.

    For a value (a name, a tag, a message) placed into output: newlines are escaped too, so a
    value can never start a line of its own.
    """
    return UNSAFE.sub(_escaped, text) if UNSAFE.search(text) else text


def escape_layout(text: str) -> str:
    """``text`` escaped like ``escape`` except its newlines and tabs (for whole output)."""
    return UNSAFE_IN_LAYOUT.sub(_escaped, text) if UNSAFE_IN_LAYOUT.search(text) else text


def unsafe_characters(text: str) -> list[str]:
    """The unsafe characters of ``text`` described for a message (``U+202E RIGHT-TO-LEFT
    OVERRIDE``), each once, in order of appearance."""
    found: list[str] = []
    for match in UNSAFE.finditer(text):
        char = match.group()
        name = unicodedata.name(char, "control character")
        described = f"U+{ord(char):04X} {name}"
        if described not in found:
            found.append(described)
    return found
