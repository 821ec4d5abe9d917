"""The daemon's state file on real files: round trip, bad files, an unwritable directory."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cvmkeeper.config import BrokenPolicy, Problem
from cvmkeeper.scheduler.state import (
    MAX_MESSAGES,
    MAX_TEXT,
    STATE_FILE_NAME,
    PolicyRun,
    StateStore,
    read_state,
)

T0 = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


def run(result: str = "ok", errors: tuple[str, ...] = ()) -> PolicyRun:
    return PolicyRun(
        kind="scheduled",
        slot=T0,
        started=T0 + timedelta(seconds=2),
        finished=T0 + timedelta(minutes=3),
        result=result,  # type: ignore[arg-type]
        errors=errors,
    )


def test_round_trip_and_a_new_store_remembers_earlier_runs(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.record("web", run(), T0 + timedelta(minutes=3))
    store.record("db", run("failed", ("InvalidInstanceId.NotFound",)), T0 + timedelta(minutes=4))

    state = read_state(tmp_path / STATE_FILE_NAME)
    assert state.pid == os.getpid()
    assert state.updated == T0 + timedelta(minutes=4)
    assert state.policies["web"] == run()
    assert state.policies["db"].errors == ("InvalidInstanceId.NotFound",)

    again = StateStore(tmp_path)
    again.record("web", run("stopped"), T0 + timedelta(hours=1))
    assert set(read_state(tmp_path / STATE_FILE_NAME).policies) == {"web", "db"}


def test_messages_are_bounded_and_on_one_line(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    many = tuple(f"error {i}\nsecond line " + "x" * 1000 for i in range(MAX_MESSAGES + 5))
    store.record("web", run("failed", many), T0)
    stored = read_state(tmp_path / STATE_FILE_NAME).policies["web"].errors
    assert len(stored) == MAX_MESSAGES
    assert all("\n" not in e and len(e) <= MAX_TEXT for e in stored)


def test_a_missing_file_is_an_empty_state_and_a_broken_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE_NAME
    assert read_state(path).policies == {}
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=str(path)):
        read_state(path)
    path.write_text('{"version": 99}', encoding="utf-8")
    with pytest.raises(ValueError, match="version 1"):
        read_state(path)


def test_a_broken_old_file_is_ignored_with_a_warning_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / STATE_FILE_NAME).write_text("garbage", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        store = StateStore(tmp_path)
    assert "ignoring the old state file" in caplog.text
    store.record("web", run(), T0)
    assert read_state(tmp_path / STATE_FILE_NAME).policies["web"] == run()


def test_an_unwritable_state_dir_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be", encoding="utf-8")
    store = StateStore(blocker / "state")
    with caplog.at_level(logging.WARNING):
        store.record("web", run(), T0)
        store.record("web", run(), T0)
    assert caplog.text.count("cannot write the state file") == 1
    assert store.last_runs()["web"] == run()  # still remembered for STATUS=


def test_a_state_file_that_is_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    """issue 19: files in state_dir are opened with O_NOFOLLOW."""
    target = tmp_path / "elsewhere.json"
    StateStore(tmp_path / "real").record("web", run(), T0)
    target.write_text((tmp_path / "real" / STATE_FILE_NAME).read_text())
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / STATE_FILE_NAME).symlink_to(target)
    with pytest.raises(OSError):
        read_state(tmp_path / "state" / STATE_FILE_NAME)


def test_broken_policy_files_round_trip_survive_a_restart_and_clear(tmp_path: Path) -> None:
    """issue 19: the files the daemon runs without stay in the file across runs and a new
    daemon, until a load without them clears them; a store with none writes no file."""
    quiet = StateStore(tmp_path / "quiet")
    quiet.record_broken([], T0)
    assert not (tmp_path / "quiet" / STATE_FILE_NAME).exists()
    problem = Problem("policies/db.yaml", 4, 5, "schedules[0].every", "not a duration: '1x'")
    store = StateStore(tmp_path)
    store.record_broken([BrokenPolicy("policies/db.yaml", (problem,), "db", stand_in=True)], T0)
    store.record("web", run(), T0 + timedelta(minutes=3))
    [record] = read_state(tmp_path / STATE_FILE_NAME).broken_files
    assert (record.file, record.policy, record.old_version_kept) == ("policies/db.yaml", "db", True)
    assert record.problems == (str(problem),)
    again = StateStore(tmp_path)  # a restarted daemon whose load found the file fixed
    again.record_broken([], T0 + timedelta(hours=1))
    state = read_state(tmp_path / STATE_FILE_NAME)
    assert state.broken_files == () and state.policies["web"] == run()
