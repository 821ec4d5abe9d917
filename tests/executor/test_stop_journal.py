"""Rule 9 across crashes: the stop journal, on real files and against the emulator over HTTP.

The journal's own rules (an entry of a live writer is never claimed, one of a dead writer
is; clear only removes this process's entries; a broken file is refused, not overwritten)
are checked on real files, with a real child process as the other writer. The runs check
what a user sees: a journaled instance left ``STOPPED`` is started before planning with a
warning; the stop is journaled before ``StopInstances`` and cleared after the start; an
instance whose stop cannot be journaled is not stopped at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.executor import run_once
from cvmkeeper.executor.stop_journal import JOURNAL_NAME, StopJournal
from executor.world import REGION, T0, A, B, fleet, policy, world

NOW = T0.replace(minute=1)


def entries(state_dir: Path) -> list[dict[str, object]]:
    """The journal's entries as stored."""
    document = json.loads((state_dir / JOURNAL_NAME).read_text())
    assert document["version"] == 1
    return list(document["stopped"])


def dead_writer_entry(state_dir: Path, instance_id: str, region: str = REGION) -> None:
    """The journal a run SIGKILLed after ``StopInstances`` leaves (its owner lock is gone)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / JOURNAL_NAME).write_text(
        json.dumps(
            {
                "version": 1,
                "stopped": [
                    {
                        "region": region,
                        "instance_id": instance_id,
                        "stopped_at": "2026-11-26T23:00:05Z",
                        "owner": "4242-0123456789ab",
                        "pid": 4242,
                        "host": "backup-1",
                    }
                ],
            }
        )
    )


def test_record_claim_and_clear_in_one_process(tmp_path: Path) -> None:
    journal = StopJournal(
        tmp_path / "state", clock=lambda: datetime(2026, 11, 27, 1, 2, 3, tzinfo=UTC)
    )
    assert journal.claim(REGION) == []  # no file: nothing to do, nothing created
    assert not (tmp_path / "state").exists()
    journal.record(REGION, [B, A])
    journal.record("ap-shanghai", [A])
    stored = entries(tmp_path / "state")
    assert [(e["region"], e["instance_id"]) for e in stored] == [
        ("ap-guangzhou", A),
        ("ap-guangzhou", B),
        ("ap-shanghai", A),
    ]
    assert stored[0]["stopped_at"] == "2026-11-27T01:02:03Z"
    # This process's own entries are claimable (a start that failed is retried).
    assert [e.instance_id for e in journal.claim(REGION)] == [A, B]
    journal.clear(REGION, [A])
    assert [(e["region"], e["instance_id"]) for e in entries(tmp_path / "state")] == [
        ("ap-guangzhou", B),
        ("ap-shanghai", A),
    ]


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cvmkeeper.executor.stop_journal import StopJournal
    StopJournal(Path(sys.argv[1])).record("ap-guangzhou", ["ins-aaaaaaaa"])
    print("recorded", flush=True)
    time.sleep(60)
""")


@pytest.mark.slow
def test_a_live_writers_entries_are_left_to_it_a_dead_writers_are_claimed(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(state)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "recorded"
        journal = StopJournal(state)
        assert journal.claim(REGION) == []  # it is still imaging: not ours to start
        journal.clear(REGION, [A])  # nor ours to forget
        assert [e["instance_id"] for e in entries(state)] == [A]
    finally:
        writer.kill()
        writer.wait(timeout=10)
    [claimed] = StopJournal(state).claim(REGION)
    assert (claimed.instance_id, claimed.pid) == (A, writer.pid)
    # Claiming made the entry this process's own and removed the dead writer's lock file.
    assert entries(state)[0]["owner"] != f"{writer.pid}"
    assert [p.name for p in state.glob("*.owner") if str(writer.pid) in p.name] == []


def test_a_broken_journal_is_refused_not_overwritten(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / JOURNAL_NAME).write_text("{half a file")
    journal = StopJournal(state)
    with pytest.raises(OSError, match="not a cvmkeeper stop journal"):
        journal.record(REGION, [A])
    assert journal.claim(REGION) == []
    assert (state / JOURNAL_NAME).read_text() == "{half a file"


def test_a_journal_that_is_not_utf8_is_refused_like_a_broken_one(tmp_path: Path) -> None:
    """Bytes that do not decode are a broken journal too (an ``OSError`` naming it, the
    file left as it is), never a ``UnicodeDecodeError`` out of ``claim``."""
    state = tmp_path / "state"
    state.mkdir()
    (state / JOURNAL_NAME).write_bytes(b'{"version": 1, "stopped": [\xff\xfe')
    journal = StopJournal(state)
    with pytest.raises(OSError, match="not a cvmkeeper stop journal"):
        journal.record(REGION, [A])
    assert journal.claim(REGION) == []
    assert (state / JOURNAL_NAME).read_bytes() == b'{"version": 1, "stopped": [\xff\xfe'


def test_a_run_starts_what_an_interrupted_run_left_stopped_before_planning(
    tmp_path: Path,
) -> None:
    spec = fleet(instances=[{"id": A, "state": "STOPPED"}, {"id": B, "state": "STOPPED"}])
    with world(tmp_path, spec, policy(ids=[A, B], consistency="stop_start")) as w:
        dead_writer_entry(w.root / "state", A)  # A: stopped by us; B: stopped by its owner
        alerter = RecordingAlerter()
        report = run_once(w.setup(), w.client(), alerter, now=NOW)
        assert report.ok, report.errors
        writes = [(e["action"], e.get("InstanceIds")) for e in w.writes()]
        # A is started before anything else; then it is stopped and started for its image.
        assert writes[0] == ("StartInstances", [A])
        assert ("StopInstances", [A]) in writes[1:]
        assert all(ids != [B] for action, ids in writes if action.endswith("Instances"))
        assert w.instance_state(A) in ("STARTING", "RUNNING")
        assert w.instance_state(B) == "STOPPED"
        [warning] = [f for f in alerter.warnings if f.action == "StartInstances"]
        assert warning.instance == A and warning.policy == "hourly"
        assert (
            "left stopped by an interrupted cvmkeeper run (pid 4242 on backup-1" in warning.message
        )
        assert entries(w.root / "state") == []


def test_a_journaled_instance_that_runs_again_is_forgotten_without_a_start(
    tmp_path: Path,
) -> None:
    with world(tmp_path, fleet(), policy(ids=[A])) as w:  # a live policy: nothing stops
        dead_writer_entry(w.root / "state", A)
        alerter = RecordingAlerter()
        assert run_once(w.setup(), w.client(), alerter, now=NOW).ok
        assert [e["action"] for e in w.writes()] == ["CreateImage"]
        assert alerter.warnings == []
        assert entries(w.root / "state") == []


def test_the_stop_is_journaled_before_it_is_sent_and_cleared_after_the_start(
    tmp_path: Path,
) -> None:
    with world(tmp_path, fleet(), policy(ids=[A], consistency="stop_start")) as w:
        seen_while_stopped: list[list[str]] = []

        def watch(message: str) -> None:
            if "stopping" in message:
                seen_while_stopped.append(
                    [str(e["instance_id"]) for e in entries(w.root / "state")]
                )

        report = run_once(w.setup(), w.client(), RecordingAlerter(), now=NOW, progress=watch)
        assert report.ok, report.errors
        assert seen_while_stopped == [[A]]
        assert entries(w.root / "state") == []
        assert [e["action"] for e in w.writes()] == [
            "TagResources",  # the cloud mark: after the journal, before the stop
            "StopInstances",
            "CreateImage",
            "StartInstances",
            "UnTagResources",
        ]


def test_an_instance_whose_stop_cannot_be_journaled_is_not_stopped(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A], consistency="stop_start")) as w:
        (w.root / "state").write_text("a file where the state directory belongs\n")
        alerter = RecordingAlerter()
        report = run_once(w.setup(), w.client(), alerter, now=NOW)
        [outcome] = report.outcomes
        assert outcome.status == "failed"
        assert "not stopped: cannot record in" in (outcome.error or "")
        assert str(w.root / "state" / JOURNAL_NAME) in (outcome.error or "")
        assert w.writes() == []
        assert w.instance_state(A) == "RUNNING"
        [error] = alerter.errors
        assert error.instance == A and "set a writable state_dir" in error.message


@pytest.mark.parametrize("planted", ["journal", "lock"])
def test_a_symbolic_link_in_the_state_dir_is_never_followed(tmp_path: Path, planted: str) -> None:
    """issue 19: files in state_dir are opened with O_NOFOLLOW; a planted link is refused
    and the file it points at is neither read, created nor changed."""
    from cvmkeeper.executor.stop_journal import LOCK_NAME

    state = tmp_path / "state"
    state.mkdir()
    target = tmp_path / "victim"
    target.write_text('{"version": 1, "entries": []}')
    (state / (JOURNAL_NAME if planted == "journal" else LOCK_NAME)).symlink_to(target)
    journal = StopJournal(state)
    with pytest.raises(OSError):
        journal.record(REGION, [A])
    assert target.read_text() == '{"version": 1, "entries": []}'
    if planted == "lock":
        (state / LOCK_NAME).unlink()
        (state / LOCK_NAME).symlink_to(tmp_path / "created-through-the-link")
        with pytest.raises(OSError):
            journal.record(REGION, [A])
        assert not (tmp_path / "created-through-the-link").exists()
