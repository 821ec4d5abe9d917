"""Managed or unmanaged: the one place the planner decides which images it may touch.

docs/design.md rule 1: cvmkeeper never deletes or changes an image it did not create. An image
is *managed* only when ``naming.is_managed`` accepts it (the marker tag, the description
prefix, a name that parses, and a ``cvmkeeper:instance`` tag, if any, that agrees with the
name) **and** it is a private image of this account (a shared or public image is never
ours to delete, whatever its tags say). Everything else is unmanaged: it counts against the
quota and never appears in a ``Delete``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cvmkeeper.core.inventory import Image
from cvmkeeper.core.naming import DEFAULT_FORMAT, NameFormat, is_managed, is_pinned

#: The only ``ImageType`` cvmkeeper creates, and so the only one it may delete.
OWN_IMAGE_TYPE = "PRIVATE_IMAGE"


@dataclass(frozen=True, slots=True)
class ManagedImage:
    """An image cvmkeeper owns, with what its name and tags say about it.

    ``slot`` is the aware UTC slot parsed from the name (the image's identity, used for
    ordering); ``pinned`` is the ``cvmkeeper:pin=true`` tag; ``image_id`` is ``image.image_id``.
    """

    image: Image
    instance_id: str
    slot: datetime
    pinned: bool
    image_id: str


def classify_image(image: Image, fmt: NameFormat = DEFAULT_FORMAT) -> ManagedImage | None:
    """The ``ManagedImage`` view of ``image`` if cvmkeeper owns it, else ``None`` (hands off)."""
    if image.image_type != OWN_IMAGE_TYPE:
        return None
    parsed = is_managed(image, fmt)
    if parsed is None:
        return None
    return ManagedImage(
        image=image,
        instance_id=parsed.instance_id,
        slot=parsed.slot,
        pinned=is_pinned(image.tags),
        image_id=image.image_id,
    )


def split_images(
    images: tuple[Image, ...], fmt: NameFormat = DEFAULT_FORMAT
) -> tuple[list[ManagedImage], list[Image]]:
    """Split a region's images into (managed, unmanaged), each in input order."""
    managed: list[ManagedImage] = []
    unmanaged: list[Image] = []
    for image in images:
        owned = classify_image(image, fmt)
        if owned is None:
            unmanaged.append(image)
        else:
            managed.append(owned)
    return managed, unmanaged
