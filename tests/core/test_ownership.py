"""Ownership: only images with the marker AND a name that parses are managed (rule 1)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from cvmkeeper.core.inventory import Image, ImageState
from cvmkeeper.core.naming import (
    MARKER_TAG,
    PIN_TAG,
    TAG_INSTANCE,
    image_description,
    image_name,
    image_tags,
)
from cvmkeeper.core.ownership import (
    CallerIdentity,
    classify_image,
    creator_is_us,
    split_images,
)

SLOT = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
INSTANCE = "ins-6pb6lrmy"


def _own() -> Image:
    return Image(
        image_id="img-own",
        name=image_name(INSTANCE, SLOT),
        state=ImageState.NORMAL,
        created_time=SLOT,
        region="ap-guangzhou",
        description=image_description(("web",), SLOT),
        tags=image_tags(("web",), INSTANCE, SLOT),
    )


def _without_tag(image: Image, key: str) -> Image:
    return replace(image, tags={k: v for k, v in image.tags.items() if k != key})


def _with_tag(image: Image, key: str, value: str) -> Image:
    return replace(image, tags={**image.tags, key: value})


UNMANAGED = {
    "no marker tag": _without_tag(_own(), MARKER_TAG),
    "marker tag false": _with_tag(_own(), MARKER_TAG, "false"),
    "no description prefix": replace(_own(), description="nightly backup"),
    "empty description": replace(_own(), description=""),
    "name one char short": replace(_own(), name=image_name(INSTANCE, SLOT)[:-1]),
    "name with month 13": replace(_own(), name="261327-1800-6pb6lrmy"),
    "name with underscores": replace(_own(), name="261127_1800_6pb6lrmy"),
    "name upper case id": replace(_own(), name="261127-1800-6PB6LRMY"),
    "hand-made name": replace(_own(), name="my-golden-image"),
    "instance tag disagrees": _with_tag(_own(), TAG_INSTANCE, "ins-zzzzzzzz"),
    "shared image": replace(_own(), image_type="SHARED_IMAGE"),
    "public image": replace(_own(), image_type="PUBLIC_IMAGE"),
}


def test_fully_marked_image_is_managed_with_its_instance_and_slot() -> None:
    owned = classify_image(_own())
    assert owned is not None
    assert (owned.instance_id, owned.slot, owned.pinned) == (INSTANCE, SLOT, False)


def test_missing_instance_tag_is_still_managed_when_everything_else_agrees() -> None:
    owned = classify_image(_without_tag(_own(), TAG_INSTANCE))
    assert owned is not None
    assert owned.instance_id == INSTANCE


@pytest.mark.parametrize("case", sorted(UNMANAGED))
def test_anything_less_than_marker_and_parsable_name_is_unmanaged(case: str) -> None:
    assert classify_image(UNMANAGED[case]) is None


@pytest.mark.parametrize(
    ("value", "pinned"), [("true", True), ("TRUE", True), (" true ", True), ("yes", False)]
)
def test_pin_tag(value: str, pinned: bool) -> None:
    owned = classify_image(_with_tag(_own(), PIN_TAG, value))
    assert owned is not None
    assert owned.pinned is pinned


def test_split_images_keeps_input_order_and_loses_nothing() -> None:
    images = (UNMANAGED["shared image"], _own(), UNMANAGED["no marker tag"])
    managed, unmanaged = split_images(images)
    assert [m.image for m in managed] == [images[1]]
    assert unmanaged == [images[0], images[2]]


# --- issue 19: ownership needs the daemon's identity as the image's creator ---------------


ROOT = CallerIdentity(
    account_id="100000000001",
    user_id="100000000001",
    principal_id="100000000001",
    kind="RootAccount",
)
SUB_USER = CallerIdentity(
    account_id="100000000001", user_id="100000000777", principal_id="100000000777", kind="CAMUser"
)
ROLE = CallerIdentity(
    account_id="100000000001",
    user_id="4611686018427397919:cvmkeeper",
    principal_id="100000000001",
    kind="AssumedRole",
)


def test_only_the_callers_own_uin_is_its_creator() -> None:
    assert creator_is_us("100000000001", ROOT)
    assert creator_is_us("100000000777", SUB_USER)
    # the root account's images are not a sub-user daemon's to delete
    assert not creator_is_us("100000000001", SUB_USER)
    assert not creator_is_us("100000000888", SUB_USER)
    assert not creator_is_us("", ROOT)  # unknown is never proof
    assert creator_is_us("100000000001", ROLE)  # the role's key belongs to the account


def test_an_image_made_by_someone_else_is_unmanaged_whatever_it_carries() -> None:
    slot = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    image = Image(
        image_id="img-forged01",
        name=image_name("ins-6pb6lrmy", slot),
        state=ImageState.NORMAL,
        created_time=slot,
        region="ap-guangzhou",
        description=image_description(("web",), slot),
        tags=image_tags(("web",), "ins-6pb6lrmy", slot),
        creator="100000000888",
    )
    assert classify_image(image) is not None  # every marker is right
    assert classify_image(replace(image, creator_trusted=False)) is None
