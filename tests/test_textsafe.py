"""The one escaping rule of every output (issue 19): control, format and separator chars."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from cvmkeeper.textsafe import UNSAFE, UNSAFE_IN_LAYOUT, escape, escape_layout, unsafe_characters

#: Unicode 15 format controls that the interpreter's older unicodedata does not know yet
NEWER_FORMAT_CONTROLS = set(range(0x13439, 0x13440))


def test_the_table_is_every_control_format_and_separator_character() -> None:
    categories = {"Cc", "Cf", "Zl", "Zp"}
    expected = {c for c in range(0x110000) if unicodedata.category(chr(c)) in categories}
    table = {c for c in range(0x110000) if UNSAFE.fullmatch(chr(c))}
    assert expected <= table
    assert table - expected <= NEWER_FORMAT_CONTROLS
    layout = {c for c in range(0x110000) if UNSAFE_IN_LAYOUT.fullmatch(chr(c))}
    assert table - layout == {0x0A, 0x09}


def test_escapes_terminal_sequences_newlines_zero_width_and_bidi() -> None:
    assert escape("web\x1b[2J\n\u202eevil\u200b") == "web\\x1b[2J\\x0a\\u202eevil\\u200b"
    assert escape_layout("a\tb\nc\x1b]0;x\x07") == "a\tb\nc\\x1b]0;x\\x07"
    assert escape("\U000e0041") == "\\udb40\\udc41"
    assert escape("\x85\x7f") == "\\u0085\\u007f"
    assert escape("plain ascii and 中文 stay") == "plain ascii and 中文 stay"


def test_describes_what_it_finds_once_each() -> None:
    assert unsafe_characters("a\u202eb\u202e\x1b") == [
        "U+202E RIGHT-TO-LEFT OVERRIDE",
        "U+001B control character",
    ]
    assert unsafe_characters("fine") == []


@given(st.text())
def test_escaped_text_has_nothing_unsafe_left(text: str) -> None:
    assert not UNSAFE.search(escape(text))
    assert not UNSAFE_IN_LAYOUT.search(escape_layout(text))


@given(st.text())
def test_escaping_json_output_keeps_it_json_with_the_same_meaning(text: str) -> None:
    """JSON output (run --json, status --json) goes through the same escaping as text: the
    escapes are JSON's own, so the document stays valid and decodes to the same value."""
    import json

    document = json.dumps({"name": text}, ensure_ascii=False)
    assert json.loads(escape_layout(document)) == {"name": text}
