"""Structured scrubbing for Sentry: the log redaction rules plus secret-named keys."""

from __future__ import annotations

import uuid

from cvmkeeper.alerting.scrub import register_environment_secrets, scrub
from cvmkeeper.logs import REDACTED, register_secret


def test_registered_values_are_removed_anywhere_in_a_structure() -> None:
    secret = "registered-" + uuid.uuid4().hex
    register_secret(secret)
    event = {
        "message": f"failed with {secret}",
        "exception": {"values": [{"value": f"boom {secret}", "lines": [f"x={secret}", 3]}]},
        "tags": {"policy": "web"},
        "duration": 1.5,
        "nothing": None,
        f"key-{secret}": "as a key",
    }
    scrubbed = scrub(event)
    assert secret not in repr(scrubbed)
    assert scrubbed["tags"] == {"policy": "web"}
    assert scrubbed["duration"] == 1.5
    assert scrubbed["nothing"] is None
    assert scrubbed["exception"]["values"][0]["lines"][1] == 3
    assert event["message"] == f"failed with {secret}"  # the input is left as it was


def test_secret_named_keys_lose_their_whole_value() -> None:
    scrubbed = scrub(
        {
            "extra": {
                "secret_key": "whatever it is",
                "TENCENTCLOUD_SESSION_TOKEN": ["a", "b"],
                "sentry_dsn": "http://k@h/1",
                "Authorization": "TC3-HMAC-SHA256 abc",
                "empty_token": "",
                "instance": "ins-1",
            }
        }
    )
    assert scrubbed["extra"] == {
        "secret_key": REDACTED,
        "TENCENTCLOUD_SESSION_TOKEN": REDACTED,
        "sentry_dsn": REDACTED,
        "Authorization": REDACTED,
        "empty_token": "",
        "instance": "ins-1",
    }


def test_secret_shapes_are_removed_without_registration() -> None:
    unregistered = uuid.uuid4().hex
    secret_id = "AKID" + uuid.uuid4().hex
    text = (
        f"SecretKey={unregistered} id {secret_id} dsn https://{unregistered}@o1.ingest.sentry.io/5"
    )
    scrubbed = scrub([text])[0]
    assert unregistered not in scrubbed
    assert secret_id not in scrubbed
    assert "o1.ingest.sentry.io/5" in scrubbed


def test_error_codes_and_ids_an_operator_needs_survive() -> None:
    text = (
        "AuthFailure.SecretIdNotFound InvalidInstanceId.NotFound ins-0a1b2c3d "
        "img-9z8y7x6w request 6b4e0b9a-53f1-4c40-8c8e-0c2f6fa3a0c1"
    )
    assert scrub({"message": text}) == {"message": text}


def test_secret_environment_variables_are_registered_by_name() -> None:
    key = "envkey-" + uuid.uuid4().hex
    token = "envtoken-" + uuid.uuid4().hex
    harmless = "/usr/local/bin-" + uuid.uuid4().hex
    register_environment_secrets(
        {"TENCENTCLOUD_SECRET_KEY": key, "TENCENTCLOUD_SESSION_TOKEN": token, "PATH": harmless}
    )
    assert scrub(f"{key} {token} {harmless}") == f"{REDACTED} {REDACTED} {harmless}"
