"""Notification channels besides Sentry, each against a local capture server over real
HTTP on 127.0.0.1: the signed webhook, Healthchecks pings per policy, Apprise (json://);
their config (file:line:key, never the URL), and that no URL secret reaches a log line."""

from __future__ import annotations

import io
import json
import logging
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvmkeeper.alerting import Failure, MonitorConfig, RecordingAlerter, monitored_run
from cvmkeeper.alerting.channels import FanOutAlerter, channel_alerters, with_notifications
from cvmkeeper.alerting.delivery import public_url
from cvmkeeper.alerting.healthchecks import HealthchecksAlerter
from cvmkeeper.alerting.sentry import AlertingConfigError
from cvmkeeper.alerting.webhook import SCHEMA, SIGNATURE_HEADER, WebhookAlerter, verify
from cvmkeeper.config import ConfigError
from cvmkeeper.config.loader import load_config
from cvmkeeper.config.model import NotifySettings, Secret, WebhookSettings
from cvmkeeper.logs import setup_logging
from support.http_capture import http_capture

REPO = Path(__file__).resolve().parents[2]
MONITOR = MonitorConfig(schedule="0 2 * * *")
TOKEN = "tok3n-s3cr3t-9f8e7d6c"
FAILURE = Failure(
    policy="web-daily",
    action="CreateImage",
    message="quota exceeded",
    instance="ins-6pb6lrmy",
    region="ap-guangzhou",
    tencent_code="ImageQuotaLimitExceeded",
    request_id="req-1",
    extra={"slot": "2026-11-27T18:00:00Z"},
)


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = setup_logging(logging.DEBUG, "text", stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def test_webhook_posts_a_signed_documented_json_body() -> None:
    secret = b"shared-webhook-key"
    with http_capture() as server:
        hook = WebhookAlerter(f"{server.url}/hooks/{TOKEN}", secret, host="backup-1")
        hook.error(FAILURE)
        with monitored_run(hook, "web-daily", MONITOR) as run:
            run.fail()
        hook.close(10)
        got = server.wait_for(3)
    assert [r.path for r in got] == [f"/hooks/{TOKEN}"] * 3
    for request in got:
        assert request.headers["Content-Type"] == "application/json"
        assert verify(secret, request.body, request.headers[SIGNATURE_HEADER])
        assert not verify(b"wrong-key", request.body, request.headers[SIGNATURE_HEADER])
    error, start, end = (r.json for r in got)
    assert error["schema"] == SCHEMA and error["kind"] == "error"
    assert got[0].headers["X-Cvmkeeper-Event"] == "error"
    assert {
        k: error[k]
        for k in ("policy", "action", "region", "instance", "tencent_code", "request_id", "host")
    } == {
        "policy": "web-daily",
        "action": "CreateImage",
        "region": "ap-guangzhou",
        "instance": "ins-6pb6lrmy",
        "tencent_code": "ImageQuotaLimitExceeded",
        "request_id": "req-1",
        "host": "backup-1",
    }
    assert error["extra"] == {"slot": "2026-11-27T18:00:00Z"}
    assert error["summary"] == (
        "cvmkeeper ERROR web-daily ap-guangzhou ins-6pb6lrmy: quota exceeded"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", error["time"])
    assert (start["kind"], start["status"], end["status"]) == ("check_in", "in_progress", "error")
    assert start["check_in_id"] == end["check_in_id"]


def test_webhook_retries_a_5xx_and_gives_up_on_a_4xx(log_text: io.StringIO) -> None:
    with http_capture(statuses=[503]) as server:
        hook = WebhookAlerter(f"{server.url}/{TOKEN}")
        hook.warning(Failure(policy="p", action="a", message="m", level="warning"))
        hook.flush(10)
        assert len(server.wait_for(2)) == 2  # 503, then 200
        assert SIGNATURE_HEADER not in server.requests[0].headers  # no secret_file: unsigned
        server.statuses.append(404)
        hook.error(FAILURE)
        hook.close(10)
        assert len(server.wait_for(3)) == 3  # the 404 is not retried
    assert "error event was refused (HTTP 404); not retried" in log_text.getvalue()
    assert TOKEN not in log_text.getvalue()


def test_healthchecks_pings_start_success_and_fail_per_policy() -> None:
    with http_capture() as server:
        pings = HealthchecksAlerter(
            [
                ("web-daily", f"{server.url}/ping/{TOKEN}"),
                ("Nightly DB", f"{server.url}/ping/other-uuid"),
            ]
        )
        with monitored_run(pings, "web-daily", MONITOR):
            pass
        with monitored_run(pings, "web-daily", MONITOR) as run:
            run.fail()
        with monitored_run(pings, "not-configured", MONITOR):
            pass
        from cvmkeeper.alerting import monitor_slug

        with monitored_run(pings, monitor_slug("Nightly DB"), MONITOR):
            pass
        pings.close(10)
        got = server.wait_for(6)
    paths = [r.path.split("?")[0] for r in got]
    assert paths == [
        f"/ping/{TOKEN}/start",
        f"/ping/{TOKEN}",
        f"/ping/{TOKEN}/start",
        f"/ping/{TOKEN}/fail",
        "/ping/other-uuid/start",
        "/ping/other-uuid",
    ]
    rids = [r.path.split("rid=")[1] for r in got]
    assert rids[0] == rids[1] and rids[2] == rids[3] and rids[0] != rids[2]
    assert re.fullmatch(r"[0-9a-f-]{36}", rids[0])
    assert got[3].body == b"cvmkeeper: web-daily FAILED"


def test_apprise_json_url_delivers_errors_and_failed_runs() -> None:
    pytest.importorskip("apprise")
    with http_capture() as server:
        host_port = server.url.removeprefix("http://")
        [channel] = channel_alerters(
            NotifySettings(apprise=(Secret(f"json://{host_port}/a"),)), host="backup-1"
        )
        channel.error(FAILURE)
        channel.checkin_finish(
            "web-daily", channel.checkin_start("web-daily", MONITOR), True, MONITOR
        )
        channel.checkin_finish("web-daily", "x", False, MONITOR)
        channel.close(15)
        got = server.wait_for(2)
    assert len(got) == 2  # a good run is not sent
    error, failed = (r.json for r in got)
    assert error["type"] == "failure"
    assert error["title"] == ("cvmkeeper ERROR web-daily ap-guangzhou ins-6pb6lrmy: quota exceeded")
    assert error["message"] == "quota exceeded"
    assert failed["title"] == "cvmkeeper run of web-daily FAILED"


def test_fan_out_keeps_sentrys_check_in_id_and_survives_a_broken_channel(
    log_text: io.StringIO,
) -> None:
    class Broken(RecordingAlerter):
        def error(self, failure: Failure) -> None:
            raise RuntimeError("channel down")

    first, broken = RecordingAlerter(), Broken()
    fan = FanOutAlerter([first, broken])
    check_in_id = fan.checkin_start("web-daily", MONITOR)
    assert check_in_id == first.checkins[0].check_in_id
    fan.error(FAILURE)
    fan.checkin_finish("web-daily", check_in_id, True, MONITOR)
    assert first.errors == [FAILURE]
    assert first.checkin_statuses("web-daily") == ["in_progress", "ok"]
    assert broken.checkin_statuses("web-daily") == ["in_progress", "ok"]
    assert "a notification channel failed on error: channel down" in log_text.getvalue()


def test_no_channel_means_the_alerter_itself() -> None:
    sentry = RecordingAlerter()
    assert with_notifications(sentry, NotifySettings()) is sentry
    hooked = NotifySettings(webhook=WebhookSettings(url=Secret("http://127.0.0.1:9/x")))
    assert with_notifications(sentry, hooked, enabled=False) is sentry


def test_a_missing_secret_file_is_a_config_error(tmp_path: Path) -> None:
    settings = NotifySettings(
        webhook=WebhookSettings(url=Secret("http://127.0.0.1:9/x"), secret_file=tmp_path / "nope")
    )
    with pytest.raises(AlertingConfigError, match=r"notify.webhook.secret_file .*nope"):
        channel_alerters(settings)


def test_unreachable_webhook_logs_without_its_token(log_text: io.StringIO) -> None:
    with http_capture() as server:
        dead = server.url
    hook = WebhookAlerter(f"{dead}/hooks/{TOKEN}?key={TOKEN}", timeout=1)
    hook._delivery._sleep = lambda _seconds: None  # no backoff pauses in this test
    hook.error(FAILURE)
    hook.close(15)
    logging.getLogger("test").warning("posting to %s/hooks/%s failed", dead, TOKEN)
    text = log_text.getvalue()
    assert "failed after 3 attempts" in text
    assert TOKEN not in text
    assert public_url(f"{dead}/hooks/{TOKEN}") == f"{dead}/***"


def test_only_token_like_parts_of_a_url_are_secrets(log_text: io.StringIO) -> None:
    """The redactor is process-wide: a URL's words must stay readable everywhere."""
    from cvmkeeper.alerting.delivery import register_url_secret

    register_url_secret(f"https://alerts.example.com/cvmkeeper/hooks/{TOKEN}?key=abcdefgh")
    logging.getLogger("cvmkeeper.test").warning(
        "cvmkeeper hooks: posting to %s failed; key=abcdefgh", TOKEN
    )
    line = log_text.getvalue()
    assert "cvmkeeper hooks: posting to *** failed" in line
    assert TOKEN not in line and "abcdefgh" not in line


def config_file(tmp_path: Path, notify: str) -> Path:
    path = tmp_path / "cvmkeeper.yaml"
    path.write_text("notify:\n" + textwrap.indent(textwrap.dedent(notify), "  "))
    return path


def test_notify_config_reads_every_channel(tmp_path: Path) -> None:
    config = load_config(
        config_file(
            tmp_path,
            f"""\
        webhook: {{url: "https://alerts.example.com/{TOKEN}", secret_file: key,
                   timeout: 3s}}
        healthchecks: {{web-daily: "https://hc-ping.com/{TOKEN}"}}
        apprise: ["ntfys://ntfy.sh/{TOKEN}"]
        apprise_urls_file: urls
        """,
        )
    )
    notify = config.notify
    assert notify.webhook is not None
    assert notify.webhook.url.reveal() == f"https://alerts.example.com/{TOKEN}"
    assert notify.webhook.secret_file == (tmp_path / "key").resolve()
    assert notify.webhook.timeout.total_seconds() == 3
    assert [(p, u.reveal()) for p, u in notify.healthchecks] == [
        ("web-daily", f"https://hc-ping.com/{TOKEN}")
    ]
    assert [u.reveal() for u in notify.apprise] == [f"ntfys://ntfy.sh/{TOKEN}"]
    assert TOKEN not in repr(config)


def test_notify_config_problems_name_file_line_key_and_never_the_url(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        f"""\
        webhook: {{url: "ftp://x/{TOKEN}"}}
        healthchecks: {{web-daily: "not a url {TOKEN}"}}
        apprise: ["{TOKEN}"]
        pager: yes
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert TOKEN not in text
    assert f"{path.name}:2:18: notify.webhook.url: is not an http(s) URL" in text.replace(
        str(path), path.name
    )
    assert "notify.healthchecks.web-daily: is not an http(s) URL" in text
    assert "notify.apprise[0]: is not an Apprise URL" in text
    assert "notify.pager: unknown key" in text or "pager: unknown key" in text


def test_docs_and_generated_config_name_every_notify_key() -> None:
    from cvmkeeper.config.notify_file import NOTIFY_KEYS, WEBHOOK_KEYS

    readme = (REPO / "docs" / "alerting.md").read_text(encoding="utf-8")
    generated = (REPO / "src/cvmkeeper/data/cvmkeeper.yaml").read_text(encoding="utf-8")
    for key in NOTIFY_KEYS:
        assert f"notify.{key}" in readme, key
        assert f"{key}:" in generated, key
    for key in WEBHOOK_KEYS:
        assert f"notify.webhook.{key}" in readme, key


def test_the_schema_in_the_docstring_lists_every_field_sent() -> None:
    from cvmkeeper.alerting import webhook

    doc = webhook.__doc__ or ""
    sent = {
        **webhook.failure_document(FAILURE, "h"),
        **webhook.check_in_document("s", "i", "ok", "h"),
    }
    for key in sent:
        assert f'"{key}"' in doc, key
    assert json.loads(json.dumps(sent))


def test_cvmkeeper_run_sends_its_failures_to_the_webhook(tmp_path: Path) -> None:
    """The wiring: a manual run over the emulator posts the failed slot to the webhook."""
    import yaml
    from click.testing import CliRunner

    from cvmkeeper.cli import cli
    from executor.world import A, fleet, policy, world

    key = tmp_path / "webhook_secret"
    key.write_text("shared-key\n")
    with (
        http_capture() as server,
        world(tmp_path, fleet(instances=[{"id": A, "not_supported": True}]), policy(ids=[A])) as w,
    ):
        document = yaml.safe_load(w.config_path.read_text())
        document["notify"] = {"webhook": {"url": f"{server.url}/{TOKEN}", "secret_file": str(key)}}
        w.config_path.write_text(yaml.safe_dump(document))
        result = CliRunner().invoke(
            cli, ["run", "--config", str(w.config_path), "--policy", "hourly"]
        )
        assert result.exit_code == 1, result.output
        got = server.wait_for(1)
    errors = [r for r in got if r.json["kind"] == "error"]
    assert errors, [r.json for r in got]
    assert errors[0].json["instance"] == A
    assert errors[0].json["tencent_code"] == "InvalidInstance.NotSupported"
    assert verify(b"shared-key", errors[0].body, errors[0].headers[SIGNATURE_HEADER])
    assert TOKEN not in result.output


def test_apprise_retries_only_the_service_that_failed(log_text: io.StringIO) -> None:
    """Two Apprise URLs, one answering 503 every time: the working one gets each alert
    once, not once per retry of the other; the failure names how many services missed it."""
    pytest.importorskip("apprise")
    with http_capture() as good, http_capture(statuses=[503] * 10) as bad:
        urls = tuple(Secret(f"json://{s.url.removeprefix('http://')}/a") for s in (good, bad))
        [channel] = channel_alerters(NotifySettings(apprise=urls), host="backup-1")
        channel.error(FAILURE)
        channel.close(15)
        assert len(bad.wait_for(3)) == 3  # tried three times
        assert len(good.requests) == 1
    assert "could not deliver to 1 of 2 services" in log_text.getvalue()


def test_a_healthchecks_key_that_names_no_policy_is_a_config_problem(tmp_path: Path) -> None:
    """``fleet-dialy: URL`` loaded without a word: fleet-daily's runs were never pinged, and
    a Healthchecks check that never got a ping stays "new" and never alerts."""
    from cvmkeeper.config import load_setup

    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "web.yaml").write_text(
        "name: web-daily\nregions: [ap-guangzhou]\ntargets: {tags: {backup: daily}}\n"
        "schedules: [{cron: '0 2 * * *'}]\nretention: {keep_last: 3}\n"
    )
    path = config_file(tmp_path, f'healthchecks: {{web-dialy: "https://hc-ping.com/{TOKEN}"}}\n')
    path.write_text(path.read_text() + "policies_dir: policies\n")
    with pytest.raises(ConfigError) as caught:
        load_setup(path)
    text = str(caught.value)
    assert (
        "notify.healthchecks.web-dialy: no policy has this name (did you mean web-daily?)" in text
    )
    assert TOKEN not in text
    path.write_text(path.read_text().replace("web-dialy", "web-daily"))
    assert load_setup(path).config.notify.healthchecks[0][0] == "web-daily"
