"""The test capture server's envelope parsing, checked on hand-made envelopes over HTTP."""

from __future__ import annotations

import gzip
import http.client
import json

import pytest

from support.sentry_capture import SentryCapture, parse_envelope, sentry_capture_server


def test_items_with_and_without_length_are_parsed() -> None:
    payload_with_newline = b'{"a":\n1}'
    data = (
        b'{"event_id":"abc"}\n'
        + json.dumps({"type": "attachment", "length": len(payload_with_newline)}).encode()
        + b"\n"
        + payload_with_newline
        + b"\n"
        + b'{"type":"event"}\n{"message":"hi"}\n'
        + b'{"type":"check_in","length":2}\n{}'
    )
    envelope = parse_envelope(data)
    assert envelope.headers == {"event_id": "abc"}
    assert [item.type for item in envelope.items] == ["attachment", "event", "check_in"]
    assert envelope.items[0].payload == payload_with_newline
    assert envelope.items[1].json == {"message": "hi"}
    assert envelope.items[2].json == {}


def test_a_length_beyond_the_data_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_envelope(b'{}\n{"type":"event","length":50}\n{}')


def _post(capture: SentryCapture, path: str, body: bytes, encoding: str = "") -> int:
    host, port = capture.dsn.rsplit("@", 1)[1].split("/", 1)[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"Content-Encoding": encoding} if encoding else {}
    connection.request("POST", path, body=body, headers=headers)
    status = connection.getresponse().status
    connection.close()
    return status


def test_the_server_accepts_plain_and_gzip_and_refuses_the_rest() -> None:
    envelope = b'{}\n{"type":"event"}\n{"message":"hello"}\n'
    with sentry_capture_server(project="7") as capture:
        assert capture.dsn.startswith("http://key@127.0.0.1:")
        assert capture.dsn.endswith("/7")
        assert _post(capture, "/api/7/envelope/", envelope) == 200
        assert _post(capture, "/api/7/envelope/", gzip.compress(envelope), "gzip") == 200
        assert _post(capture, "/api/7/store/", envelope) == 404
        assert _post(capture, "/api/7/envelope/", b"not json") == 400
        assert _post(capture, "/api/7/envelope/", envelope, "compress") == 400

        assert capture.wait_for(lambda c: len(c.requests) == 2, timeout=5)
        assert not capture.wait_for(lambda c: len(c.requests) == 3, timeout=0)
        assert capture.events() == [{"message": "hello"}, {"message": "hello"}]
        assert [r.project for r in capture.requests] == ["7", "7"]
        assert len(capture.rejected) == 3
