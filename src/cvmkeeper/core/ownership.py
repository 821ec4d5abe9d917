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

A copy (issue #18): ``SyncImages`` may leave a copy without the source's tags and
description, and cvmkeeper tags it through the Tag API only after the copy exists (and
tags may take a while to show). Until then the copy is recognised by where it came from
(``classify_copy``): a private image of this identity whose name parses and is the name of
a managed image in a source region that was read, for the same instance. The name is a
pure function of (instance, slot) and unique per region, and ``SyncImages`` is sent with
that name, so such an image can only be the copy. Such a ``ManagedImage`` has
``untagged=True``: the executor tags it. Without its source (rotated away before the tags
were ever set) it is unmanaged again: counted, never touched.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cvmkeeper.core.inventory import Image, Inventory
from cvmkeeper.core.naming import (
    DEFAULT_FORMAT,
    DESCRIPTION_PREFIX,
    MARKER_TAG,
    MARKER_VALUE,
    TAG_INSTANCE,
    NameFormat,
    copy_tags,
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
    #: a copy recognised by its source (``classify_copy``), not yet by its own tags
    untagged: bool = False


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


def copy_origins(
    sources: Iterable[Inventory], fmt: NameFormat = DEFAULT_FORMAT
) -> dict[str, ManagedImage]:
    """Name -> managed image, over the source regions' inventories (any state: a source is
    ``SYNCING`` while it is copied): what ``classify_copy`` looks names up in."""
    return {
        owned.image.name: owned
        for inventory in sources
        for image in inventory.images
        if (owned := classify_image(image, fmt)) is not None
    }


def classify_copy(
    image: Image, origins: Mapping[str, ManagedImage], fmt: NameFormat = DEFAULT_FORMAT
) -> ManagedImage | None:
    """The ``ManagedImage`` view (``untagged=True``) of a copy not yet carrying cvmkeeper's
    tags, recognised by its source (see the module docstring); ``None``: not such a copy."""
    if image.image_type != OWN_IMAGE_TYPE or not image.creator_trusted:
        return None
    source = origins.get(image.name)
    parsed = fmt.parse(image.name)
    if source is None or parsed is None or source.image.region == image.region:
        return None
    if source.instance_id != parsed.instance_id:
        return None
    if image.tags.get(TAG_INSTANCE, parsed.instance_id) != parsed.instance_id:
        return None
    return ManagedImage(
        image=image,
        instance_id=parsed.instance_id,
        slot=parsed.slot,
        pinned=is_pinned(image.tags),
        image_id=image.image_id,
        untagged=True,
    )


def split_images(
    images: tuple[Image, ...],
    fmt: NameFormat = DEFAULT_FORMAT,
    origins: Mapping[str, ManagedImage] | None = None,
    provisional: Collection[str] = (),
) -> tuple[list[ManagedImage], list[Image]]:
    """Split a region's images into (managed, unmanaged), each in input order; with
    ``origins`` (``copy_origins`` of the source regions) copies not yet tagged are managed;
    ``provisional``: see :func:`classify_image`."""
    managed: list[ManagedImage] = []
    unmanaged: list[Image] = []
    for image in images:
        owned = classify_image(image, fmt, provisional)
        if owned is None and origins:
            owned = classify_copy(image, origins, fmt)
        if owned is None:
            unmanaged.append(image)
        else:
            managed.append(owned)
    return managed, unmanaged


def untagged_copies(
    images: Iterable[Image], origins: Mapping[str, ManagedImage], fmt: NameFormat = DEFAULT_FORMAT
) -> list[tuple[ManagedImage, dict[str, str]]]:
    """The copies among ``images`` recognised only by their source (``classify_copy``),
    each with the tags cvmkeeper gives it (``naming.copy_tags`` of its source): what a
    run tags so that the copy stays managed once its source is rotated away."""
    found: list[tuple[ManagedImage, dict[str, str]]] = []
    for image in images:
        if classify_image(image, fmt) is not None:
            continue
        owned = classify_copy(image, origins, fmt)
        if owned is not None:
            source = origins[image.name].image
            found.append((owned, copy_tags(source.tags, source.region)))
    return found
