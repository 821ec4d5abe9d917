"""Image names, tags and the marker: how cvmkeeper recognises the images it made.

A name is a pure function of (instance, slot), so creating the image of a slot twice hits
``InvalidImageName.Duplicate`` instead of making a second image (docs/design.md, rule 5). The
default format puts the UTC minute first and the instance last::

    261127-1800-6pb6lrmy      slot 2026-11-27 18:00 UTC, instance ins-6pb6lrmy

It is exactly 20 characters (the seed's ``ImageName`` limit), sorts by time across a whole
region, shows the minute readably, and is unique per region because the 8 characters after
``ins-`` identify the instance. A configurable template may rearrange or shorten it; it is
checked against its worst case when the config is loaded.

Ownership needs more than a name that parses: ``is_managed`` also asks for the marker tag
and the description prefix (docs/design.md, rule 1). Planner and executor import the tag keys
and markers from here so that there is exactly one spelling of each.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cvmkeeper.core.disks import TAG_DISKS
from cvmkeeper.core.inventory import Image

MAX_NAME_LENGTH = 20
MAX_DESCRIPTION_LENGTH = 60

MARKER_TAG = "cvmkeeper:managed"
MARKER_VALUE = "true"
TAG_POLICY = "cvmkeeper:policy"
TAG_INSTANCE = "cvmkeeper:instance"
TAG_SLOT = "cvmkeeper:slot"
#: on a copy: the region it was copied from. SyncImages may leave a copy without the
#: source's tags and description (issue #18), so cvmkeeper tags its copies itself; a copy
#: carries this tag instead of the description prefix, which it cannot set.
TAG_COPY_FROM = "cvmkeeper:copy-from"
PIN_TAG = "cvmkeeper:pin"
PIN_VALUE = "true"
DESCRIPTION_PREFIX = "cvmkeeper:"

INSTANCE_PREFIX = "ins-"
INSTANCE_ID_PATTERN = re.compile(r"ins-([a-z0-9]{8})")
"""The CVM instance ids a name can carry: ``ins-`` and eight lowercase alphanumerics."""

DEFAULT_TEMPLATE = "{yy}{mm}{dd}-{HH}{MM}-{id}"

# field -> (regex of its text, width in characters)
_FIELDS: dict[str, tuple[str, int]] = {
    "yyyy": (r"\d{4}", 4),
    "yy": (r"\d{2}", 2),
    "mm": (r"\d{2}", 2),
    "dd": (r"\d{2}", 2),
    "HH": (r"\d{2}", 2),
    "MM": (r"\d{2}", 2),
    "id": (r"[a-z0-9]{8}", 8),
}
_REQUIRED = ("mm", "dd", "HH", "MM", "id")
_LITERAL = re.compile(r"[A-Za-z0-9._-]*")
_TOKEN = re.compile(r"\{([^{}]*)\}")

TEMPLATE_HELP = (
    "a template made of {yyyy} or {yy}, {mm}, {dd}, {HH}, {MM} and {id} (the 8 characters "
    "after 'ins-'), each exactly once, joined by letters, digits, '-', '_' or '.'"
)


class NameTemplateError(ValueError):
    """A name template that cannot give unique, parseable names of at most 20 characters."""


@dataclass(frozen=True, slots=True)
class ParsedName:
    """What an image name says: whose image it is and which slot it holds."""

    instance_fragment: str
    slot: datetime

    @property
    def instance_id(self) -> str:
        """The full instance id (``ins-`` + fragment)."""
        return INSTANCE_PREFIX + self.instance_fragment


@dataclass(frozen=True, slots=True)
class NameFormat:
    """A validated name template; build one with ``NameFormat.compile``."""

    template: str
    pattern: re.Pattern[str]
    length: int

    @classmethod
    def compile(cls, template: str) -> NameFormat:
        """Check ``template`` against its worst case and return the format.

        Raises ``NameTemplateError`` naming the problem: an unknown or repeated field, a
        missing field (the name would not be unique or would not parse back to its slot),
        a character the API does not take, or a worst case longer than 20 characters.
        """
        regex = ""
        length = 0
        seen: list[str] = []
        position = 0
        for match in _TOKEN.finditer(template):
            literal = template[position : match.start()]
            regex += _literal_regex(template, literal)
            length += len(literal)
            field = match.group(1)
            if field not in _FIELDS:
                raise NameTemplateError(f"unknown field {{{field}}}; expected {TEMPLATE_HELP}")
            if field in seen:
                raise NameTemplateError(f"field {{{field}}} appears twice")
            seen.append(field)
            field_regex, width = _FIELDS[field]
            regex += f"(?P<{field}>{field_regex})"
            length += width
            position = match.end()
        tail = template[position:]
        regex += _literal_regex(template, tail)
        length += len(tail)
        missing = [f"{{{f}}}" for f in _REQUIRED if f not in seen]
        if "yyyy" not in seen and "yy" not in seen:
            missing.insert(0, "{yyyy} or {yy}")
        if "yyyy" in seen and "yy" in seen:
            raise NameTemplateError("use either {yyyy} or {yy}, not both")
        if missing:
            raise NameTemplateError(
                f"missing {', '.join(missing)}: a name must identify the instance and the "
                "slot to the minute"
            )
        if length > MAX_NAME_LENGTH:
            raise NameTemplateError(
                f"worst case is {length} characters, more than the {MAX_NAME_LENGTH} "
                "that ImageName allows"
            )
        return cls(template=template, pattern=re.compile(regex), length=length)

    def format(self, instance_id: str, slot: datetime) -> str:
        """The name of ``instance_id``'s image for ``slot`` (see ``image_name``)."""
        fragment = instance_fragment(instance_id)
        if fragment is None:
            raise ValueError(
                f"instance id {instance_id!r} is not 'ins-' followed by 8 lowercase letters "
                "or digits, so it does not fit a 20-character image name"
            )
        moment = _check_slot(slot)
        if "{yy}" in self.template and not 2000 <= moment.year <= 2099:
            raise ValueError(f"slot {moment:%Y} is outside 2000-2099, which {{yy}} can name")
        values = {
            "yyyy": f"{moment:%Y}",
            "yy": f"{moment:%y}",
            "mm": f"{moment:%m}",
            "dd": f"{moment:%d}",
            "HH": f"{moment:%H}",
            "MM": f"{moment:%M}",
            "id": fragment,
        }
        return _TOKEN.sub(lambda m: values[m.group(1)], self.template)

    def parse(self, name: str) -> ParsedName | None:
        """Read a name back into (instance, slot); ``None`` for anything that is not one."""
        match = self.pattern.fullmatch(name)
        if match is None:
            return None
        fields = match.groupdict()
        year = int(fields["yyyy"]) if "yyyy" in fields else 2000 + int(fields["yy"])
        try:
            slot = datetime(
                year,
                int(fields["mm"]),
                int(fields["dd"]),
                int(fields["HH"]),
                int(fields["MM"]),
                tzinfo=UTC,
            )
        except ValueError:
            return None
        return ParsedName(instance_fragment=fields["id"], slot=slot)


def _literal_regex(template: str, literal: str) -> str:
    if "{" in literal or "}" in literal:
        raise NameTemplateError(f"unbalanced brace in {template!r}")
    if not _LITERAL.fullmatch(literal):
        raise NameTemplateError(
            f"{literal!r} contains characters other than letters, digits, '-', '_' and '.'"
        )
    return re.escape(literal)


def _check_slot(slot: datetime) -> datetime:
    if slot.tzinfo is None or slot.utcoffset() is None:
        raise ValueError(f"slot {slot.isoformat()} has no timezone; slots are UTC")
    moment = slot.astimezone(UTC)
    if moment.second or moment.microsecond:
        raise ValueError(f"slot {moment.isoformat()} is not truncated to the minute")
    return moment


DEFAULT_FORMAT = NameFormat.compile(DEFAULT_TEMPLATE)


def instance_fragment(instance_id: str) -> str | None:
    """The 8 characters after ``ins-`` that a name carries, or ``None`` if the id cannot fit."""
    match = INSTANCE_ID_PATTERN.fullmatch(instance_id)
    return match.group(1) if match else None


def image_name(instance_id: str, slot: datetime, fmt: NameFormat = DEFAULT_FORMAT) -> str:
    """The deterministic image name for (instance, slot); at most 20 characters.

    ``slot`` must be an aware datetime on a whole minute. Raises ``ValueError`` for an
    instance id that is not ``ins-`` + 8 lowercase alphanumerics: such an instance cannot
    get a unique name within the limit, and the caller must report it instead of guessing.
    """
    return fmt.format(instance_id, slot)


def parse_image_name(name: str, fmt: NameFormat = DEFAULT_FORMAT) -> ParsedName | None:
    """Parse a name made by ``image_name`` back to its instance and UTC slot, else ``None``."""
    return fmt.parse(name)


def name_matches_instance(name: str, instance_id: str, fmt: NameFormat = DEFAULT_FORMAT) -> bool:
    """True when ``name`` parses and was made for ``instance_id``."""
    parsed = fmt.parse(name)
    return parsed is not None and parsed.instance_id == instance_id


def slot_tag_value(slot: datetime) -> str:
    """The ``cvmkeeper:slot`` tag value: ISO 8601 UTC to the minute, ``2026-11-27T18:00Z``."""
    return f"{_check_slot(slot):%Y-%m-%dT%H:%MZ}"


def copy_tags(source_tags: Mapping[str, str], source_region: str) -> dict[str, str]:
    """The tags cvmkeeper gives a copy of an image whose tags are ``source_tags``: the
    source's ``cvmkeeper:*`` tags (marker, policies, instance, slot, pin, disks) and
    ``cvmkeeper:copy-from``. Other keys are the source owner's business, not copied. The
    Tag API refuses an empty value (``InvalidParameterValue.TagValueEmpty``): an empty
    ``cvmkeeper:disks`` (no data disk asked) becomes its count, ``0``; other empty values
    are left out."""
    own = {k: v for k, v in source_tags.items() if k.startswith("cvmkeeper:")}
    if own.get(TAG_DISKS) == "":
        own[TAG_DISKS] = "0"
    return {**{k: v for k, v in own.items() if v}, TAG_COPY_FROM: source_region}


#: Tencent's longest tag value (Tag "Use Limits", product/651/13354: 1-255 characters),
#: enforced on ``TagSpecification`` too: a longer ``cvmkeeper:policy`` fails the create.
MAX_TAG_VALUE_LENGTH = 255
#: ``cvmkeeper:policy`` ends with ``+<n>`` when ``n`` policy names did not fit (policy
#: names never start with ``+``: lowercase letters, digits and ``-``).
_OMITTED_PREFIX = "+"


@dataclass(frozen=True, slots=True)
class PolicyTag:
    """``cvmkeeper:policy`` read back: the names it holds, and how many did not fit."""

    names: tuple[str, ...]
    omitted: int = 0


def policy_tag_value(policy_names: tuple[str, ...]) -> str:
    """The ``cvmkeeper:policy`` value: the sorted names, comma-joined. Past Tencent's 255
    characters (five policies of long names can reach it) it keeps the sorted names that
    fit and ends with ``+<n>``, the number left out: a pure function of the set, so every
    run and every daemon writes the same value, and a reader knows the list is partial
    (``read_policy_tag``; ``core.holds`` then holds rather than rotate on a guess)."""
    names = sorted(set(policy_names))
    whole = ",".join(names)
    if len(whole) <= MAX_TAG_VALUE_LENGTH:
        return whole
    for kept in range(len(names) - 1, -1, -1):
        value = ",".join([*names[:kept], f"{_OMITTED_PREFIX}{len(names) - kept}"])
        if len(value) <= MAX_TAG_VALUE_LENGTH:
            return value
    raise AssertionError("unreachable: '+<n>' alone always fits")  # pragma: no cover


def read_policy_tag(value: str) -> PolicyTag:
    """The names in a ``cvmkeeper:policy`` value and the count its ``+<n>`` left out (a
    malformed count is taken as one: something was left out)."""
    names: list[str] = []
    omitted = 0
    for part in (p.strip() for p in value.split(",")):
        if part.startswith(_OMITTED_PREFIX):
            count = part[len(_OMITTED_PREFIX) :]
            omitted += int(count) if count.isdigit() and int(count) > 0 else 1
        elif part:
            names.append(part)
    return PolicyTag(tuple(names), omitted)


def image_tags(policy_names: tuple[str, ...], instance_id: str, slot: datetime) -> dict[str, str]:
    """The tags a managed image is created with (marker, policies, instance, slot)."""
    return {
        MARKER_TAG: MARKER_VALUE,
        TAG_POLICY: policy_tag_value(policy_names),
        TAG_INSTANCE: instance_id,
        TAG_SLOT: slot_tag_value(slot),
    }


def image_description(policy_names: tuple[str, ...], slot: datetime) -> str:
    """``cvmkeeper:<policies> <slot>``, cut to the 60 characters ImageDescription allows."""
    text = f"{DESCRIPTION_PREFIX}{','.join(sorted(policy_names))} {slot_tag_value(slot)}"
    if len(text) <= MAX_DESCRIPTION_LENGTH:
        return text
    return text[: MAX_DESCRIPTION_LENGTH - 1] + "~"


def is_pinned(tags: Mapping[str, str]) -> bool:
    """True when the image carries ``cvmkeeper:pin=true`` (kept whatever the rules say)."""
    return tags.get(PIN_TAG, "").strip().lower() == PIN_VALUE


def is_managed(image: Image, fmt: NameFormat = DEFAULT_FORMAT) -> ParsedName | None:
    """The parsed name if ``image`` is cvmkeeper's own, else ``None`` (hands off).

    Managed means all of: the marker tag, the description prefix, a name that parses,
    and, when the image carries a ``cvmkeeper:instance`` tag, that tag agreeing with the
    name. Anything less is treated as unmanaged: counted against the quota, never touched.
    A copy (``cvmkeeper:copy-from`` tag) stands in for the description prefix with that
    tag and a ``cvmkeeper:instance`` tag that must be there: SyncImages may not copy the
    description and nothing else can set it on the copy.
    """
    if image.tags.get(MARKER_TAG) != MARKER_VALUE:
        return None
    tagged_instance = image.tags.get(TAG_INSTANCE)
    if not image.description.startswith(DESCRIPTION_PREFIX) and not (
        image.tags.get(TAG_COPY_FROM) and tagged_instance
    ):
        return None
    parsed = fmt.parse(image.name)
    if parsed is None:
        return None
    if tagged_instance is not None and tagged_instance != parsed.instance_id:
        return None
    return parsed
