"""Managed or unmanaged: the one place the planner decides which images it may touch.

docs/design.md rule 1: cvmkeeper never deletes or changes an image it did not create. An image
is *managed* only when ``naming.is_managed`` accepts it (the marker tag, the description
prefix, a name that parses, and a ``cvmkeeper:instance`` tag, if any, that agrees with the
name) **and** it is a private image of this account (a shared or public image is never
ours to delete, whatever its tags say). Everything else is unmanaged: it counts against the
quota and never appears in a ``Delete``.

Tags, the description and the name can be written by anyone allowed to tag or rename an
image, so they are not proof alone: an image is managed only if its ``ImageCreator`` is the
identity the daemon calls the API as (``creator_is_us``, checked by the cloud client when
it reads the images, once the caller's identity is known; ``Image.creator_trusted``). An
image that carries the marker but fails that check is unmanaged (and reported by the
client). See docs/trust.md.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from cvmkeeper.core.inventory import Image
from cvmkeeper.core.naming import (
    DEFAULT_FORMAT,
    DESCRIPTION_PREFIX,
    MARKER_TAG,
    MARKER_VALUE,
    NameFormat,
    is_managed,
    is_pinned,
)

#: The only ``ImageType`` cvmkeeper creates, and so the only one it may delete.
OWN_IMAGE_TYPE = "PRIVATE_IMAGE"


@dataclass(frozen=True, slots=True)
class ManagedImage:
    """An image cvmkeeper owns, with what its name and tags say about it.

    ``slot`` is the aware UTC slot parsed from the name (the image's identity, used for
    ordering); ``pinned`` is the ``cvmkeeper:pin=true`` tag; ``image_id`` is ``image.image_id``.
    ``hold`` is set by the planner for an image it must keep whatever the rules say (its
    reason: a slot after now, a policy that no longer exists); a held image is also
    ``pinned``, so every guard that spares pins spares it.
    """

    image: Image
    instance_id: str
    slot: datetime
    pinned: bool
    image_id: str
    hold: str = ""
    #: recognised by name and cvmkeeper's record of its own creates while its tags do not
    #: show yet (``Inventory.provisional``): counted by retention, never deleted
    provisional: bool = False


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    """Who the daemon calls the API as (STS ``GetCallerIdentity``).

    ``account_id``: the root account's UIN; ``user_id``: the caller (a UIN, or
    ``roleId:sessionName`` for a role); ``principal_id``: the UIN that owns the key;
    ``kind``: ``Type`` as reported.
    """

    account_id: str
    user_id: str
    principal_id: str
    arn: str = ""
    kind: str = ""

    @property
    def creator_ids(self) -> frozenset[str]:
        """The ``ImageCreator`` values an image made with these credentials can carry: the
        caller's and the key owner's UIN. The root account's UIN counts only when the
        caller is the root account itself: an image a person made as root and tagged is
        not the daemon's to delete when the daemon runs as a sub-user."""
        ids = {self.user_id, self.principal_id}
        if self.user_id == self.account_id:
            ids.add(self.account_id)
        return frozenset(i for i in ids if i)


def creator_is_us(creator: str, identity: CallerIdentity) -> bool:
    """True when an image whose ``ImageCreator`` is ``creator`` was made with the daemon's
    identity. An empty creator is never ours (unknown is not proof)."""
    return bool(creator) and creator in identity.creator_ids


def looks_managed(image: Image) -> bool:
    """True when ``image`` carries cvmkeeper's marker tag (whoever wrote it)."""
    return image.tags.get(MARKER_TAG) == MARKER_VALUE


def renamed_out(images: Iterable[Image], fmt: NameFormat = DEFAULT_FORMAT) -> list[Image]:
    """Images cvmkeeper made (its marker, its description prefix, our private image by our
    identity) whose name no longer parses under ``fmt``: what a changed ``name_template``
    turns into unmanaged images. They count against the quota and are never rotated, so
    ``validate --online`` says so (issue 19)."""
    return [
        image
        for image in images
        if image.image_type == OWN_IMAGE_TYPE
        and image.creator_trusted
        and looks_managed(image)
        and image.description.startswith(DESCRIPTION_PREFIX)
        and fmt.parse(image.name) is None
    ]


def classify_image(
    image: Image, fmt: NameFormat = DEFAULT_FORMAT, provisional: Collection[str] = ()
) -> ManagedImage | None:
    """The ``ManagedImage`` view of ``image`` if cvmkeeper owns it, else ``None`` (hands off).

    ``provisional``: ids cvmkeeper itself created recently (its record in ``state_dir``,
    ``Inventory.provisional``). Such an image listed before its tags show is ours by its
    name, its creator and that record: managed, but ``provisional`` (never deleted on that
    basis; issue #18). An image that shows other tags but not the marker is not.
    """
    if image.image_type != OWN_IMAGE_TYPE:
        return None
    if not image.creator_trusted:  # made by another identity: marker or not, hands off
        return None
    parsed = is_managed(image, fmt)
    if parsed is None:
        if image.image_id not in provisional or image.tags:
            return None
        parsed = fmt.parse(image.name)
        if parsed is None:
            return None
        return ManagedImage(
            image=image,
            instance_id=parsed.instance_id,
            slot=parsed.slot,
            pinned=False,
            image_id=image.image_id,
            provisional=True,
        )
    return ManagedImage(
        image=image,
        instance_id=parsed.instance_id,
        slot=parsed.slot,
        pinned=is_pinned(image.tags),
        image_id=image.image_id,
    )


def split_images(
    images: tuple[Image, ...],
    fmt: NameFormat = DEFAULT_FORMAT,
    provisional: Collection[str] = (),
) -> tuple[list[ManagedImage], list[Image]]:
    """Split a region's images into (managed, unmanaged), each in input order
    (``provisional``: see :func:`classify_image`)."""
    managed: list[ManagedImage] = []
    unmanaged: list[Image] = []
    for image in images:
        owned = classify_image(image, fmt, provisional)
        if owned is None:
            unmanaged.append(image)
        else:
            managed.append(owned)
    return managed, unmanaged
