"""DescribeImages entries with the fields the SDK model says "may return null" (issue #18)."""

from __future__ import annotations

import logging

import pytest

from cvmkeeper.cloud.models import image_from_api

ENTRY = {
    "ImageId": "img-aaaa0001",
    "ImageName": "golden",
    "ImageState": "NORMAL",
    "ImageType": "PRIVATE_IMAGE",
    "CreatedTime": "2026-11-27T01:02:03Z",
    "SyncPercent": 100,
    "Tags": [{"Key": "k", "Value": "v"}],
}


def test_null_created_time_and_absent_tags_are_unknown_and_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="cvmkeeper.cloud.models")
    entry = {**ENTRY, "CreatedTime": None, "SyncPercent": None}
    del entry["Tags"]
    image = image_from_api(entry, "ap-guangzhou")
    assert image.created_time is None  # neither "now" nor the epoch
    assert dict(image.tags) == {}
    assert "img-aaaa0001" in caplog.text and "without CreatedTime" in caplog.text


def test_an_image_in_flight_without_time_is_not_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="cvmkeeper.cloud.models")
    entry = {**ENTRY, "ImageState": "CREATING", "CreatedTime": "", "Tags": None}
    image = image_from_api(entry, "ap-guangzhou")
    assert (image.created_time, dict(image.tags)) == (None, {})
    assert caplog.text == ""


def test_a_present_time_and_tags_are_read() -> None:
    image = image_from_api(ENTRY, "ap-guangzhou")
    assert image.created_time is not None and image.created_time.isoformat() == (
        "2026-11-27T01:02:03+00:00"
    )
    assert dict(image.tags) == {"k": "v"}
