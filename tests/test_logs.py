"""Log formats, journald detection and secret redaction, through the real logging machinery."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from cvmkeeper.logs import redact, register_secret, setup_logging, stream_is_journal

log = logging.getLogger("cvmkeeper.test")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def canary() -> str:
    """A fresh secret value, so tests never depend on each other's registrations."""
    return f"canary-{uuid.uuid4().hex}"


def capture(fmt: str, level: int | str = logging.DEBUG) -> io.StringIO:
    stream = io.StringIO()
    setup_logging(level, fmt, stream)
    return stream


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def boom(secret: str) -> None:
    raise RuntimeError(f"CreateImage failed with key {secret}")


# -- journal ---------------------------------------------------------------------------------


def test_journal_prefixes_each_level_with_its_syslog_priority() -> None:
    stream = capture("journal")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert lines(stream) == [
        "<7>cvmkeeper.test: d",
        "<6>cvmkeeper.test: i",
        "<4>cvmkeeper.test: w",
        "<3>cvmkeeper.test: e",
        "<2>cvmkeeper.test: c",
    ]


def test_journal_prefixes_every_line_of_a_traceback() -> None:
    stream = capture("journal")
    try:
        boom("harmless")
    except RuntimeError:
        log.exception("run failed\nfor policy web")
    output = lines(stream)
    # issue 19: a newline inside the message is escaped (it could forge a line); the
    # traceback's own lines are the record's layout, each with the priority
    assert output[0] == "<3>cvmkeeper.test: run failed\\x0afor policy web"
    assert "<3>Traceback (most recent call last):" in output
    assert output[-1] == "<3>RuntimeError: CreateImage failed with key harmless"
    assert all(line.startswith("<3>") for line in output)


def test_journal_has_no_timestamp_and_shows_extra_fields() -> None:
    stream = capture("journal")
    log.info("slot created", extra={"policy": "web", "instance": "ins-1", "region": "ap-guangzhou"})
    (line,) = lines(stream)
    assert line == "<6>cvmkeeper.test: slot created policy=web instance=ins-1 region=ap-guangzhou"


# -- text ------------------------------------------------------------------------------------


def test_text_is_readable_with_local_time_and_level() -> None:
    stream = capture("text")
    log.warning("quota %d/%d", 9, 10, extra={"region": "ap-shanghai"})
    (line,) = lines(stream)
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}[+-]\d{4}) WARNING cvmkeeper.test: "
        r"quota 9/10 region=ap-shanghai",
        line,
    )
    assert match, line
    stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f%z")
    assert abs((datetime.now().astimezone() - stamp).total_seconds()) < 60


def test_level_filters_records_below_it() -> None:
    stream = capture("text", "warning")
    log.info("hidden")
    log.warning("shown")
    assert [line.split(": ", 1)[1] for line in lines(stream)] == ["shown"]


# -- json ------------------------------------------------------------------------------------


def test_json_is_one_object_per_line_with_extra_fields() -> None:
    stream = capture("json")
    log.info("created %s", "img-1", extra={"policy": "web", "instance": "ins-1", "attempt": 2})
    log.error("second")
    first, second = (json.loads(line) for line in lines(stream))
    assert first["level"] == "INFO"
    assert first["logger"] == "cvmkeeper.test"
    assert first["message"] == "created img-1"
    assert (first["policy"], first["instance"], first["attempt"]) == ("web", "ins-1", 2)
    assert first["time"].endswith("Z")
    assert datetime.fromisoformat(first["time"]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert "exception" not in first
    assert second["level"] == "ERROR"


def test_json_carries_the_traceback_as_one_field() -> None:
    stream = capture("json")
    try:
        boom("harmless")
    except RuntimeError:
        log.exception("run failed")
    (entry,) = (json.loads(line) for line in lines(stream))
    assert entry["message"] == "run failed"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("RuntimeError: CreateImage failed with key harmless")


def test_json_stays_valid_whatever_the_extra_values_are() -> None:
    stream = capture("json")
    log.info(
        "odd extras",
        extra={"token": 5, "password": {"nested": ["x", 1]}, "level_hint": object(), "time": 1},
    )
    (entry,) = (json.loads(line) for line in lines(stream))
    assert entry["token"] == 5
    assert entry["password"] == {"nested": ["x", 1]}
    assert entry["level_hint"].startswith("<object object")
    assert entry["extra_time"] == 1  # an extra never overwrites the standard fields
    assert entry["level"] == "INFO"


# -- journald detection ----------------------------------------------------------------------


def journal_stream_of(path: Path) -> str:
    status = os.stat(path)
    return f"{status.st_dev}:{status.st_ino}"


def test_auto_is_journal_when_journal_stream_names_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        env = {"JOURNAL_STREAM": journal_stream_of(path)}
        assert stream_is_journal(stream, env)
        setup_logging("INFO", "auto", stream, env)
        log.error("to journald")
    assert path.read_text() == "<3>cvmkeeper.test: to journald\n"


def test_auto_is_text_when_journal_stream_names_another_file(tmp_path: Path) -> None:
    other = tmp_path / "journal"
    other.touch()
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        env = {"JOURNAL_STREAM": journal_stream_of(other)}
        assert not stream_is_journal(stream, env)
        setup_logging("INFO", "auto", stream, env)
        log.error("to a terminal")
    assert re.fullmatch(r"\S+ \S+ ERROR cvmkeeper.test: to a terminal\n", path.read_text())


@pytest.mark.parametrize("value", [None, "", "garbage", "12:", ":34", "a:b"])
def test_no_or_malformed_journal_stream_means_not_journal(
    tmp_path: Path, value: str | None
) -> None:
    with (tmp_path / "stderr").open("w") as stream:
        env = {} if value is None else {"JOURNAL_STREAM": value}
        assert not stream_is_journal(stream, env)


def test_a_stream_without_a_file_descriptor_is_not_the_journal() -> None:
    assert not stream_is_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


@pytest.mark.slow
def test_a_service_whose_stderr_is_the_journal_logs_with_priorities(tmp_path: Path) -> None:
    """End to end, as systemd starts us: stderr is a file, JOURNAL_STREAM names it."""
    path = tmp_path / "stderr"
    path.touch()
    program = (
        "import logging; from cvmkeeper.logs import setup_logging; setup_logging();"
        "logging.getLogger('cvmkeeper.scheduler').warning('quota nearly full')"
    )
    env = {**os.environ, "JOURNAL_STREAM": journal_stream_of(path)}
    with path.open("w") as stderr:
        subprocess.run(
            [sys.executable, "-c", program], stderr=stderr, env=env, check=True, timeout=60
        )
    assert path.read_text() == "<4>cvmkeeper.scheduler: quota nearly full\n"


# -- redaction -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "journal", "json"])
def test_registered_secret_never_reaches_any_format(fmt: str) -> None:
    secret = canary()
    register_secret(secret)
    stream = capture(fmt)
    log.info(f"in the message {secret}")
    log.info("in an argument %s", secret)
    log.info("in a repr %r", {"key": secret})
    log.info("in an extra", extra={"credential": secret, "nested": {"k": [secret]}})
    try:
        boom(secret)
    except RuntimeError:
        log.exception("in the traceback")
    log.info("in stack info", stack_info=True, extra={"trace": f"at {secret}"})
    output = stream.getvalue()
    assert secret not in output
    assert output.count("***") >= 7
    assert "CreateImage failed with key ***" in output


def test_secret_in_a_traceback_local_frame_line_is_redacted() -> None:
    secret = canary()
    register_secret(secret)
    stream = capture("text")

    def fail() -> None:
        raise ValueError("bad credential " + secret)  # the source line is in the traceback too

    try:
        fail()
    except ValueError:
        log.error("loader failed", exc_info=True)
    assert secret not in stream.getvalue()
    assert "ValueError: bad credential ***" in stream.getvalue()


def test_redaction_survives_broken_format_arguments(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = canary()
    register_secret(secret)
    stream = io.StringIO()
    ours = setup_logging(logging.INFO, "text", stream)
    # pytest's own capture handlers would raise on the bad record before ours sees it.
    monkeypatch.setattr(logging.getLogger(), "handlers", [ours])
    log.info("two placeholders %s %s", secret)  # noqa: PLE1206 - the bug under test
    assert secret not in stream.getvalue()
    assert "unformattable arguments" in stream.getvalue()
    assert secret not in capsys.readouterr().err  # logging's own error report


def test_secret_registered_after_setup_is_redacted_from_then_on() -> None:
    stream = capture("text")
    secret = canary()
    log.info("before %s", secret)
    register_secret(secret)
    log.info("after %s", secret)
    before, after = lines(stream)
    assert before.endswith(f"before {secret}")
    assert after.endswith("after ***")


def test_credential_file_newline_does_not_hide_the_value() -> None:
    secret = canary()
    register_secret(secret + "\n")
    assert redact(f"key={secret}!").startswith("key=***")
    assert redact(f"[{secret}]") == "[***]"


def test_short_and_empty_values_are_not_registered() -> None:
    register_secret("")
    register_secret(None)
    register_secret("abc")
    assert redact("abc is a word") == "abc is a word"


def test_longer_secret_containing_a_shorter_one_is_replaced_whole() -> None:
    short = canary()
    register_secret(short)
    register_secret(short + "-extended")
    assert redact(f"x {short}-extended y {short} z") == "x *** y *** z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "dsn https://0123abcd@o1.ingest.sentry.io/42 set",
            "dsn https://***@o1.ingest.sentry.io/42 set",
        ),
        ("proxy http://user:pa55@proxy:3128", "proxy http://***@proxy:3128"),
        ("SecretKey=Gu5t9xGARNpq86cd98joQYCN3Cozk1qA", "SecretKey=***"),
        ("secret_key: 'Gu5t9xGARNpq86cd98joQYCN3Cozk1qA'", "secret_key: '***'"),
        ('{"SecretKey": "Gu5t9xGARNpq86cd98joQYCN3Cozk1qA"}', '{"SecretKey": "***"}'),
        ("X-TC-Token: abcdEFGH1234", "X-TC-Token: ***"),
        ("TENCENTCLOUD_SECRET_KEY=Gu5t9x", "TENCENTCLOUD_SECRET_KEY=***"),
        ("SENTRY_DSN=https://k@h/1", "SENTRY_DSN=***"),
        (
            "Authorization: TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/"
            "2026-01-05/cvm/tc3_request, SignedHeaders=content-type;host, Signature=9f1e2d",
            "Authorization: TC3-HMAC-SHA256 Credential=AKID***MPLE/"
            "2026-01-05/cvm/tc3_request, SignedHeaders=content-type;host, Signature=***",
        ),
        ("using SecretId AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "using SecretId AKID***MPLE"),
    ],
)
def test_secret_shapes_are_redacted_without_registration(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "secret_key_file: /etc/cvmkeeper/credentials/tencentcloud-secret-key",
        "created img-8kq3d2ma for ins-2zxf1j0a in ap-guangzhou (RequestId 6f1c-4e2b)",
        "keep 7 tokens of history; password authentication is not used",
        "https://cvm.tencentcloudapi.com/ answered 200",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


# -- setup -----------------------------------------------------------------------------------


def test_a_second_setup_replaces_the_first_handler() -> None:
    first = capture("text")
    second = capture("json")
    log.info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1
    ours = [
        h
        for h in logging.getLogger().handlers
        if h.formatter is not None and type(h).__name__ == "_CvmkeeperHandler"
    ]
    assert len(ours) == 1


def test_python_warnings_go_through_the_log() -> None:
    stream = capture("journal")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old option", UserWarning, stacklevel=1)
    assert lines(stream)[0].startswith("<4>py.warnings: ")
    assert "UserWarning: old option" in stream.getvalue()


@pytest.mark.parametrize(
    ("level", "fmt", "message"),
    [
        ("LOUD", "text", "unknown log level 'LOUD'"),
        ("INFO", "xml", "unknown log format 'xml'"),
    ],
)
def test_bad_level_or_format_is_a_clear_error(level: str, fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        setup_logging(level, fmt, io.StringIO())


@pytest.mark.slow
def test_a_failed_run_under_the_journal_is_filed_as_an_error(tmp_path: Path) -> None:
    """issue 19: `ERROR cannot read the inventory` went out with priority 6 (info), so
    `journalctl -p warning` never saw a failed backup."""
    sys.path.insert(0, str(Path(__file__).parent))
    from support.echo_proxy import echo_proxy

    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "web.yaml").write_text(
        "name: web\ntargets: {instance_ids: [ins-00000001]}\nschedules: [{every: 1h}]\n"
        "retention: {keep_last: 3}\n"
    )
    path = tmp_path / "stderr"
    path.touch()
    env = {
        **os.environ,
        "JOURNAL_STREAM": journal_stream_of(path),
        "TENCENTCLOUD_SECRET_ID": "AKIDX0000000",
        "TENCENTCLOUD_SECRET_KEY": canary(),
    }
    with echo_proxy() as endpoint, path.open("w") as stderr:
        (tmp_path / "cvmkeeper.yaml").write_text(
            f"regions: [ap-guangzhou]\ncloud: {{endpoint: '{endpoint}', scheme: http}}\n"
            f"credentials: {{cvm_role: false}}\nstate_dir: {tmp_path / 'state'}\n"
            "api: {retries: {max_attempts: 1}}\n"
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cvmkeeper",
                "run",
                "--no-alerts",
                "--config",
                str(tmp_path / "cvmkeeper.yaml"),
            ],
            stderr=stderr,
            stdout=subprocess.PIPE,
            env=env,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    lines = path.read_text().splitlines()
    failed = [line for line in lines if "ERROR cannot read the inventory" in line]
    assert failed and all(line.startswith("<3>") for line in failed), lines
    assert all(re.match(r"<\d>", line) for line in lines), lines  # nothing unprefixed


@pytest.mark.parametrize("fmt", ["text", "journal", "json"])
def test_marker_fields_stay_off_the_line(fmt: str) -> None:
    """An ``extra=`` field named ``_...`` marks a record for filters (the run display's
    progress lines); it is not printed, while ordinary fields are."""
    stream = capture(fmt)
    log.warning("a progress line", extra={"_cvmkeeper_progress": True, "policy": "web"})
    text = stream.getvalue()
    assert "_cvmkeeper_progress" not in text
    assert "policy" in text and "web" in text
