"""Profiles: one word in the fleet file that sets every open-point switch at once (issue #18).

Each switch of :class:`~cvmkeeper.emulator.fleet.OpenPoints` models a behaviour Tencent's
documentation leaves open. ``documented`` keeps every switch at its default (today's,
documented or best-case behaviour); ``pessimistic`` sets every one to the worst plausible
value at once, so one suite shows whether the product survives the real cloud at its worst.
A switch written in the fleet file overrides its profile's value.

The table is deliberately one plain dict per profile, keyed by the switch's top-level fleet
key, so whoever adds a switch adds its pessimistic value here in one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

#: the environment variable harnesses read when a fleet file names no profile
ENV_VAR = "CVMKEEPER_EMULATOR_PROFILE"

#: the worst plausible value of every switch; a switch absent here keeps its default
PESSIMISTIC: dict[str, Any] = {
    "instance_states": "specific_codes",
    "create_retry_order": "mutex_first",
    "image_order": "shuffled",
    "null_fields": True,
    "unknown_instance_status": "omit",
    "sync_copies_tags": False,
    "sync_copies_description": False,
    "sync_images_per_call": "one",
    # a disallowed pair: the reverse of the direction the tests copy in (guangzhou ->
    # shanghai), so that copies still happen and a refused pair is in the profile too
    "sync_disallowed_pairs": [["ap-shanghai", "ap-guangzhou"]],
    "force_poweroff_leaves": "stopped",
    # lags in the emulator's seconds, scaled to the suites' clock: their runs are pinned an
    # hour apart but run seconds apart, so a lag of real minutes would span many "hours"
    "image_visibility_seconds": 0.6,
    "tag_visibility_seconds": 1.2,
    "delete_lag_seconds": 0.6,
}

#: documented: every switch at its default
DOCUMENTED: dict[str, Any] = {}

PROFILES: Mapping[str, Mapping[str, Any]] = {
    "documented": DOCUMENTED,
    "pessimistic": PESSIMISTIC,
}

DEFAULT_PROFILE = "documented"


def env_profile() -> str | None:
    """The profile named by ``CVMKEEPER_EMULATOR_PROFILE``, or ``None`` when unset or empty.

    Harnesses (tests' fleet builders, ``cvmkeeper emulator``) apply it only when the fleet
    names no profile, so the same suite runs under either profile. An unknown name is not
    silently ignored: the fleet parser rejects it like a wrong ``profile:`` key.
    """
    value = os.environ.get(ENV_VAR, "").strip()
    return value or None


def with_env_profile(fleet: Mapping[str, Any]) -> dict[str, Any]:
    """``fleet`` with ``profile:`` set from the environment when it names none."""
    out = dict(fleet)
    named = env_profile()
    if named is not None and "profile" not in out:
        out["profile"] = named
    return out


def switches(profile: str, explicit: Mapping[str, Any]) -> dict[str, Any]:
    """The switch values in effect: ``profile``'s table under the ``explicit`` fleet keys."""
    return {**PROFILES[profile], **explicit}
