"""The real sentry-sdk, driven by SentryAlerter, sending real envelopes to a local server."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import sentry_sdk

from cvmkeeper import __version__
from cvmkeeper.alerting.alerter import NullAlerter
from cvmkeeper.alerting.events import Failure, MonitorConfig, failure_fingerprint, monitor_slug
from cvmkeeper.alerting.sentry import AlertingConfigError, SentryAlerter, build_alerter
from cvmkeeper.logs import register_secret
from support.sentry_capture import SentryCapture


@dataclass(frozen=True)
class SentrySettings:
    """The settings build_alerter reads, as the config layer provides them."""

    dsn: str | None = None
    dsn_file: Path | None = None
    environment: str = "production"
    server_name: str | None = None


NOT_FOUND = Failure(
    policy="web-daily",
    action="CreateImage",
    message="CreateImage ins-0a1b2c3d: The instance ins-0a1b2c3d does not exist",
    instance="ins-0a1b2c3d",
    region="ap-guangzhou",
    tencent_code="InvalidInstanceId.NotFound",
    request_id="6b4e0b9a-53f1-4c40-8c8e-0c2f6fa3a0c1",
)
DAILY = MonitorConfig(
    schedule="30 2 * * 0",
    timezone="Asia/Shanghai",
    checkin_margin=10,
    max_runtime=90,
    failure_issue_threshold=2,
    recovery_threshold=3,
)


def test_an_error_failure_is_one_event_with_its_tags_and_fingerprint(
    alerter: SentryAlerter, capture: SentryCapture
) -> None:
    alerter.error(NOT_FOUND)
    alerter.flush(timeout=5)

    [event] = capture.events()
    assert event["level"] == "error"
    assert event["fingerprint"] == [
        "cvmkeeper",
        "web-daily",
        "CreateImage",
        "InvalidInstanceId.NotFound",
    ]
    assert event["tags"] == {
        "policy": "web-daily",
        "instance": "ins-0a1b2c3d",
        "region": "ap-guangzhou",
        "action": "CreateImage",
        "tencent_code": "InvalidInstanceId.NotFound",
        "request_id": "6b4e0b9a-53f1-4c40-8c8e-0c2f6fa3a0c1",
    }
    assert event["message"] == NOT_FOUND.message
    assert event["environment"] == "test"
    assert event["release"] == f"cvmkeeper@{__version__}"
    assert event["server_name"] == "backup-host-1"
    [request] = capture.requests
    assert request.project == "1"
    assert request.headers["Content-Encoding"] == "gzip"  # the server really decompressed it


def test_twenty_failing_runs_of_one_cause_share_one_fingerprint(
    alerter: SentryAlerter, capture: SentryCapture
) -> None:
    for run in range(20):
        alerter.error(
            Failure(
                policy="web-daily",
                action="CreateImage",
                message=f"run {run}: instance ins-{run:08x} not found",
                instance=f"ins-{run:08x}",
                region="ap-guangzhou",
                tencent_code="InvalidInstanceId.NotFound",
                request_id=str(uuid.uuid4()),
            )
        )
    alerter.flush(timeout=10)

    events = capture.events()
    assert len(events) == 20
    assert len({e["event_id"] for e in events}) == 20
    assert {tuple(e["fingerprint"]) for e in events} == {tuple(failure_fingerprint(NOT_FOUND))}
    assert len({e["tags"]["request_id"] for e in events}) == 20


def test_a_warning_is_a_warning_level_event(alerter: SentryAlerter, capture: SentryCapture) -> None:
    alerter.warning(
        Failure(
            policy="web-daily",
            action="rotate",
            message="quota full: evicted img-0001 (retention wanted more than the quota holds)",
            level="warning",
            region="ap-guangzhou",
            extra={"evicted_image": "img-0001"},
        )
    )
    alerter.flush(timeout=5)

    [event] = capture.events()
    assert event["level"] == "warning"
    assert event["tags"] == {"policy": "web-daily", "region": "ap-guangzhou", "action": "rotate"}
    assert event["fingerprint"] == ["cvmkeeper", "web-daily", "rotate", "-"]
    assert event["extra"]["evicted_image"] == "img-0001"


def test_a_failure_with_an_exception_carries_the_exception(
    alerter: SentryAlerter, capture: SentryCapture
) -> None:
    try:
        raise ConnectionResetError("connection reset by peer during DescribeImages")
    except ConnectionResetError as exc:
        alerter.error(
            Failure(
                policy="db-hourly",
                action="DescribeImages",
                message="DescribeImages failed after 5 attempts",
                region="ap-shanghai",
                exception=exc,
            )
        )
    alerter.flush(timeout=5)

    [event] = capture.events()
    [exception] = event["exception"]["values"]
    assert exception["type"] == "ConnectionResetError"
    assert "DescribeImages" in exception["value"]
    assert event["contexts"]["failure"]["message"] == "DescribeImages failed after 5 attempts"
    assert event["tags"]["action"] == "DescribeImages"
    frames = exception["stacktrace"]["frames"]
    assert frames and all("vars" not in frame for frame in frames)  # no local variables


def test_a_good_run_checks_in_in_progress_then_ok_with_the_monitor_config(
    alerter: SentryAlerter, capture: SentryCapture
) -> None:
    slug = monitor_slug("web-daily")
    check_in_id = alerter.checkin_start(slug, DAILY)
    alerter.checkin_finish(slug, check_in_id, ok=True, config=DAILY)
    alerter.flush(timeout=5)

    start, finish = capture.checkins()
    assert (start["status"], finish["status"]) == ("in_progress", "ok")
    assert start["check_in_id"] == finish["check_in_id"] == check_in_id
    assert start["monitor_slug"] == finish["monitor_slug"] == "web-daily"
    expected_config = {
        "schedule": {"type": "crontab", "value": "30 2 * * 0"},
        "timezone": "Asia/Shanghai",
        "checkin_margin": 10,
        "max_runtime": 90,
        "failure_issue_threshold": 2,
        "recovery_threshold": 3,
    }
    assert start["monitor_config"] == finish["monitor_config"] == expected_config
    assert finish["duration"] >= 0
    assert finish["environment"] == "test"
    assert capture.events() == []  # a good run raises no alert


def test_a_failed_run_checks_in_error_with_an_interval_schedule(
    alerter: SentryAlerter, capture: SentryCapture
) -> None:
    every_six_hours = MonitorConfig(schedule=(6, "hour"))
    check_in_id = alerter.checkin_start("db-6h", every_six_hours)
    alerter.error(NOT_FOUND)
    alerter.checkin_finish("db-6h", check_in_id, ok=False, config=every_six_hours)
    alerter.flush(timeout=5)

    statuses = [c["status"] for c in capture.checkins()]
    assert statuses == ["in_progress", "error"]
    assert capture.checkins()[1]["monitor_config"]["schedule"] == {
        "type": "interval",
        "value": 6,
        "unit": "hour",
    }
    assert len(capture.events()) == 1


def test_logged_errors_are_breadcrumbs_never_events(
    alerter: SentryAlerter, capture: SentryCapture
) -> None:
    """APScheduler logs job exceptions itself; only the explicit alert may become an event."""
    try:
        raise RuntimeError("job crashed")
    except RuntimeError:
        logging.getLogger("apscheduler.executors.default").exception(
            'Job "backup web-daily" raised an exception'
        )
    logging.getLogger("cvmkeeper.scheduler").error("a run of web-daily failed")
    alerter.error(NOT_FOUND)
    alerter.flush(timeout=5)

    [event] = capture.events()
    assert event["tags"]["tencent_code"] == "InvalidInstanceId.NotFound"
    crumbs = [c["message"] for c in event["breadcrumbs"]["values"]]
    assert 'Job "backup web-daily" raised an exception' in crumbs
    assert "a run of web-daily failed" in crumbs


def test_a_canary_secret_never_leaves_the_process(
    capture: SentryCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_key = "CanarySecretKey" + uuid.uuid4().hex  # 47 characters, like nothing else
    secret_id = "AKID" + uuid.uuid4().hex + "Zz"  # a SecretId nobody registered
    config_secret = "ConfigToken" + uuid.uuid4().hex
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", secret_key)
    alerter = build_alerter(SentrySettings(dsn=capture.dsn, environment="test"))
    assert isinstance(alerter, SentryAlerter)
    register_secret(config_secret)  # as the config loader does when it reads a secret
    try:
        logging.getLogger("cvmkeeper.cloud").info("signing with %s and %s", secret_id, secret_key)
        try:
            raise PermissionError(f"AuthFailure.SignatureFailure with key {secret_key}")
        except PermissionError as exc:
            alerter.error(
                Failure(
                    policy="web-daily",
                    action="CreateImage",
                    message=f"credentials {secret_id}/{secret_key} rejected",
                    tencent_code="AuthFailure.SignatureFailure",
                    extra={"note": f"key was {secret_key}", "loaded": config_secret},
                    exception=exc,
                )
            )
        alerter.warning(
            Failure(
                policy="web-daily",
                action="config",
                level="warning",
                message=f"SecretKey={secret_key} token: {config_secret}",
            )
        )
        alerter.flush(timeout=5)
    finally:
        alerter.close(timeout=5)

    assert len(capture.events()) == 2
    sent = capture.all_bytes()
    for secret in (secret_key, secret_id, config_secret):
        assert secret.encode() not in sent
    assert b"***" in sent  # it was scrubbed, not merely left out
    assert b"AuthFailure.SignatureFailure" in sent  # and the useful part survived


def test_no_dsn_means_a_null_alerter_said_once_and_nothing_sent(
    capture: SentryCapture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cvmkeeper.alerting")
    alerter = build_alerter(SentrySettings(), environ={})
    assert isinstance(alerter, NullAlerter)
    check_in_id = alerter.checkin_start("web-daily", DAILY)
    alerter.error(NOT_FOUND)
    alerter.checkin_finish("web-daily", check_in_id, ok=False, config=DAILY)
    alerter.flush(timeout=1)

    assert not sentry_sdk.get_client().is_active()
    assert sentry_sdk.capture_message("anyone there?") is None
    records = [r for r in caplog.records if r.name.startswith("cvmkeeper.alerting")]
    assert [(r.levelno, "alerting is off" in r.getMessage()) for r in records] == [
        (logging.INFO, True)
    ]
    assert capture.requests == []


def test_no_alerts_switch_wins_over_a_dsn(capture: SentryCapture) -> None:
    alerter = build_alerter(SentrySettings(dsn=capture.dsn), environ={}, enabled=False)
    assert isinstance(alerter, NullAlerter)
    assert not sentry_sdk.get_client().is_active()


def _round_trip(alerter: object, capture: SentryCapture) -> None:
    """Send one error through ``alerter`` and check it reached ``capture``."""
    assert isinstance(alerter, SentryAlerter)
    try:
        alerter.error(NOT_FOUND)
        alerter.flush(timeout=5)
    finally:
        alerter.close(timeout=5)
    assert len(capture.events()) == 1


def test_the_dsn_can_come_from_sentry_dsn(capture: SentryCapture) -> None:
    _round_trip(build_alerter(SentrySettings(), environ={"SENTRY_DSN": capture.dsn}), capture)


def test_the_dsn_can_come_from_a_systemd_credential(capture: SentryCapture, tmp_path: Path) -> None:
    (tmp_path / "sentry_dsn").write_text(capture.dsn + "\n")
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    _round_trip(build_alerter(SentrySettings(), environ=environ), capture)


def test_the_config_dsn_wins_over_the_environment(capture: SentryCapture) -> None:
    environ = {"SENTRY_DSN": "http://otherkey@127.0.0.1:9/2"}
    _round_trip(build_alerter(SentrySettings(dsn=capture.dsn), environ=environ), capture)


def test_the_on_log_line_names_the_project_but_not_the_key(
    capture: SentryCapture, caplog: pytest.LogCaptureFixture
) -> None:
    key = uuid.uuid4().hex
    dsn = capture.dsn.replace("//key@", f"//{key}@")
    caplog.set_level(logging.INFO, logger="cvmkeeper.alerting")
    _round_trip(build_alerter(SentrySettings(dsn=dsn), environ={}), capture)
    assert "alerting is on: project 1 at 127.0.0.1" in caplog.text
    assert key not in caplog.text
    # the DSN key authenticates the request, and nowhere else does it appear
    [request] = capture.requests
    assert key in request.headers["X-Sentry-Auth"]
    assert key.encode() not in request.body


def test_an_unreadable_dsn_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "sentry_dsn"
    with pytest.raises(AlertingConfigError, match=str(missing)):
        build_alerter(SentrySettings(dsn_file=missing), environ={})


def test_a_malformed_dsn_is_an_error_that_does_not_repeat_it() -> None:
    dsn = "https://0123456789abcdef0123456789abcdef@sentry.example.com"  # no project id
    with pytest.raises(AlertingConfigError, match="SENTRY_DSN") as raised:
        build_alerter(SentrySettings(), environ={"SENTRY_DSN": dsn})
    assert "0123456789abcdef" not in str(raised.value)


def test_the_client_sends_no_pii_and_no_local_variables(alerter: SentryAlerter) -> None:
    client = sentry_sdk.get_client()
    assert client.is_active()
    assert client.should_send_default_pii() is False
    assert client.options["include_local_variables"] is False


def test_closing_leaves_no_active_client(capture: SentryCapture) -> None:
    alerter = SentryAlerter(capture.dsn)
    alerter.error(NOT_FOUND)
    alerter.close(timeout=5)  # delivers what was queued

    assert len(capture.events()) == 1
    assert not sentry_sdk.get_client().is_active()
    alerter.error(NOT_FOUND)  # after close: dropped, and no exception
    assert len(capture.events()) == 1


class _Secret:
    """Holds a value the way the config's ``Secret`` does: only ``reveal()`` gives it."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value


@dataclass(frozen=True)
class _SecretDsnSettings:
    dsn: _Secret
    dsn_file: Path | None = None
    environment: str = "staging"
    server_name: str | None = None


def test_a_dsn_held_as_a_secret_is_revealed_only_to_sentry(capture: SentryCapture) -> None:
    alerter = build_alerter(_SecretDsnSettings(dsn=_Secret(capture.dsn)), environ={})
    _round_trip(alerter, capture)
    assert capture.events()[0]["environment"] == "staging"


def test_no_trace_propagation_headers_reach_the_tencent_api(
    alerter: SentryAlerter, capture: SentryCapture
) -> None:
    """issue 19: sentry-sdk adds ``sentry-trace`` and ``baggage`` (with the DSN's public key)
    to every outgoing HTTP request; they must never go to the Tencent API."""
    from cvmkeeper.cloud.client import CloudClient
    from cvmkeeper.cloud.credentials import Credentials
    from cvmkeeper.cloud.transport import EndpointConfig
    from cvmkeeper.emulator.server import running_emulator

    fleet = {"regions": {"ap-guangzhou": {"instances": [{"id": "ins-00000001"}]}}}
    with running_emulator(fleet) as emu, sentry_sdk.start_transaction(name="run", op="run"):
        client = CloudClient.over_http(
            Credentials(emu.secret_id, emu.secret_key), EndpointConfig(emu.endpoint, "http", 5)
        )
        client.list_images("ap-guangzhou")
        client.image_quota("ap-guangzhou")
        client.list_instances("ap-guangzhou")
        seen = emu.header_names
    assert "x-tc-action" in seen  # the requests were recorded
    assert not {"sentry-trace", "baggage", "traceparent"} & seen, sorted(seen)
