"""``write_atomically``: the new text or the old, never a mixture, and no litter."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvmkeeper.files import write_atomically


def test_it_writes_and_replaces_leaving_only_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomically(path, "first\n")
    write_atomically(path, "second ✓\n")
    assert path.read_text(encoding="utf-8") == "second ✓\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    write_atomically(path, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomically(path, "half \ud800 written")  # a lone surrogate cannot be UTF-8
    assert path.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.json"]


def test_a_missing_directory_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "absent" / "state.json", "x")
