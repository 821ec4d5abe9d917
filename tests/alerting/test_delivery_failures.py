"""A notification that cannot be delivered is told to the channel's observer (the daemon's
state file and metrics), by channel name and a redacted reason, never the URL: a dead
webhook or ping URL showed only in the journal (issue #17). Real channel code over real
HTTP on 127.0.0.1: a server answering 500, and a port nothing listens on."""

from __future__ import annotations

import socket
import threading

from cvmkeeper.alerting import Failure, MonitorConfig, monitored_run
from cvmkeeper.alerting.healthchecks import HealthchecksAlerter
from cvmkeeper.alerting.webhook import WebhookAlerter
from support.http_capture import http_capture

TOKEN = "tok3n-s3cr3t-9f8e7d6c5b4a"
FAILURE = Failure(policy="web-daily", action="CreateImage", message="quota exceeded")
MONITOR = MonitorConfig(schedule="0 2 * * *")


class Outcomes:
    """A ``DeliveryObserver`` that keeps what it heard."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def __call__(self, channel: str, reason: str | None) -> None:
        with self._lock:
            self.heard.append((channel, reason))


def dead_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago and has nothing listening now."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        return int(server.getsockname()[1])


def test_a_webhook_answering_500_is_a_failure_of_channel_webhook_without_its_url() -> None:
    outcomes = Outcomes()
    with http_capture(statuses=[500] * 3) as server:
        hook = WebhookAlerter(f"{server.url}/hooks/{TOKEN}", observer=outcomes)
        hook.error(FAILURE)
        hook.close(15)
        server.wait_for(3)  # every attempt was made (retried, as before)
    [(channel, reason)] = outcomes.heard
    assert channel == "webhook"
    assert reason is not None and "HTTP 500" in reason
    assert TOKEN not in reason and server.url not in reason


def test_a_delivery_that_succeeds_again_is_told_as_such() -> None:
    outcomes = Outcomes()
    with http_capture(statuses=[500, 500, 500]) as server:
        hook = WebhookAlerter(f"{server.url}/hooks/{TOKEN}", observer=outcomes)
        hook.error(FAILURE)
        hook.warning(FAILURE)  # the server answers 200 from the 4th request on
        hook.close(15)
    assert [channel for channel, _ in outcomes.heard] == ["webhook", "webhook"]
    assert outcomes.heard[0][1] is not None and outcomes.heard[1][1] is None


def test_a_dead_healthchecks_url_is_a_failure_of_channel_healthchecks() -> None:
    outcomes = Outcomes()
    url = f"http://127.0.0.1:{dead_port()}/ping/{TOKEN}"
    pings = HealthchecksAlerter([("web-daily", url)], timeout=2, observer=outcomes)
    with monitored_run(pings, "web-daily", MONITOR):
        pass
    pings.close(20)
    assert [channel for channel, _ in outcomes.heard] == ["healthchecks", "healthchecks"]
    for _, reason in outcomes.heard:
        assert reason is not None and "failed after 3 attempts" in reason
        assert TOKEN not in reason and url not in reason
