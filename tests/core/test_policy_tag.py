"""``cvmkeeper:policy`` within Tencent's 255-character tag value, and read back safely.

Five policies of long names (up to 63 characters each) join to more than 255 characters;
Tencent refuses such a value in CreateImage's ``TagSpecification``, so every create of the
instance would fail. The value keeps the sorted names that fit and ends with ``+<n>``;
a reader that needs the whole list (the holds of removed and unloaded policies) holds the
image rather than rotate it on a guess.
"""

from __future__ import annotations

from dataclasses import replace

from test_planner import A, backup, deleted, hour, inventory, plan_of

from cvmkeeper.core.naming import (
    MAX_TAG_VALUE_LENGTH,
    TAG_POLICY,
    image_tags,
    policy_tag_value,
    read_policy_tag,
)
from cvmkeeper.core.plan import WarningKind
from cvmkeeper.core.planner import PlannerSettings
from support.builders import policy

LONG = tuple(f"{letter}{'-long-policy-name' * 3}".ljust(63, "x") for letter in "edcba")


def test_a_short_list_is_the_sorted_names_unchanged() -> None:
    assert policy_tag_value(("daily", "hourly")) == "daily,hourly"
    four = LONG[:4]
    assert len(",".join(four)) == MAX_TAG_VALUE_LENGTH  # exactly at the limit: whole
    assert read_policy_tag(policy_tag_value(four)).names == tuple(sorted(four))


def test_a_long_list_keeps_the_names_that_fit_and_counts_the_rest() -> None:
    assert all(len(name) == 63 for name in LONG)
    value = policy_tag_value(LONG)
    assert len(value) <= MAX_TAG_VALUE_LENGTH
    assert value == ",".join([*sorted(LONG)[:3], "+2"])
    assert policy_tag_value(tuple(reversed(LONG))) == value  # a function of the set
    tag = read_policy_tag(value)
    assert tag.names == tuple(sorted(LONG)[:3]) and tag.omitted == 2
    assert image_tags(LONG, A, hour(0))[TAG_POLICY] == value
    assert read_policy_tag("a,+x").omitted == 1  # a malformed count still says "partial"


def tagged(n: int, value: str) -> object:
    image = backup(A, hour(n))
    return replace(image, tags={**image.tags, TAG_POLICY: value})


def test_a_partial_tag_naming_a_configured_policy_is_rotated_as_usual() -> None:
    value = policy_tag_value(("p", *LONG))  # "p" sorts last: left out
    assert "+" in value and not value.startswith("p,")
    first = sorted(LONG)[0]
    images = [tagged(n, value) for n in range(3)]
    inv = inventory(10, images, instances=(A,))  # type: ignore[arg-type]
    plan = plan_of(inv, [policy(first, ids=(A,), keep_last=1)], {}, hour(4))
    assert len(deleted(plan)) == 2  # a listed name is configured: its rules decide
    assert not [n for n in plan.notices if n.kind is WarningKind.RETENTION]


def test_a_partial_tag_whose_named_policies_are_gone_is_held() -> None:
    # the names it holds are removed; one of those it had no room for may be "p" or not
    value = policy_tag_value(("p", *LONG))
    images = [tagged(n, value) for n in range(3)]
    inv = inventory(10, images, instances=(A,))  # type: ignore[arg-type]
    plan = plan_of(inv, [policy(ids=(A,), keep_last=1)], {}, hour(4))
    assert not deleted(plan)
    [held] = [n for n in plan.notices if n.kind is WarningKind.RETENTION]
    assert "3 more its tag had no room for" in held.message


def test_a_partial_tag_is_held_while_a_policy_file_is_broken() -> None:
    # every listed name is configured, but the broken file may be one left out
    names = sorted(LONG)[:3]
    value = policy_tag_value(LONG)
    images = [tagged(n, value) for n in range(3)]
    inv = inventory(10, images, instances=(A,))  # type: ignore[arg-type]
    policies = [policy(name, ids=(A,), keep_last=1) for name in names]
    settings = PlannerSettings(hold_unknown="policies/x.yaml cannot be read")
    plan = plan_of(inv, policies, {}, hour(4), settings)
    assert not deleted(plan)
    assert any("its tag had no room for" in n.message for n in plan.notices)
    whole = plan_of(inv, policies, {}, hour(4))  # no broken file: rotated as usual
    assert len(deleted(whole)) == 2
