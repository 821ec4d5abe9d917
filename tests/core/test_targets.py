"""Target resolution: ids, all-tags matching, exclusions, regions, one set per instance."""

from __future__ import annotations

from collections.abc import Mapping

from cvmkeeper.core.inventory import Instance
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.targets import resolve_targets
from support import builders

REGION = "ap-guangzhou"


def _instance(instance_id: str, **tags: str) -> Instance:
    return Instance(instance_id, instance_id, "RUNNING", REGION, tags=tags)


FLEET = (
    _instance("ins-aaaaaaaa", backup="daily", env="prod"),
    _instance("ins-bbbbbbbb", backup="daily", env="test"),
    _instance("ins-cccccccc", env="prod"),
)


def _names(result: Mapping[str, tuple[Policy, ...]]) -> dict[str, list[str]]:
    return {key: [p.name for p in value] for key, value in sorted(result.items())}


def test_ids_and_tags_are_a_union_and_all_tags_must_match() -> None:
    policy = builders.policy("p", ids=("ins-cccccccc",), tags={"backup": "daily", "env": "prod"})
    result = resolve_targets(REGION, [policy], FLEET)
    assert _names(result.policies_by_instance) == {"ins-aaaaaaaa": ["p"], "ins-cccccccc": ["p"]}
    assert result.warnings == ()


def test_exclusion_beats_listed_id_and_tags() -> None:
    policy = builders.policy(
        "p", ids=("ins-aaaaaaaa",), tags={"backup": "daily"}, exclude=("ins-aaaaaaaa",)
    )
    result = resolve_targets(REGION, [policy], FLEET)
    assert _names(result.policies_by_instance) == {"ins-bbbbbbbb": ["p"]}


def test_empty_tags_match_nothing_rather_than_everything() -> None:
    result = resolve_targets(REGION, [builders.policy("p")], FLEET)
    assert result.policies_by_instance == {}
    assert result.warnings == (f"policy 'p' matches no instance in {REGION}",)


def test_several_policies_on_one_instance_form_one_set() -> None:
    daily = builders.policy("daily", tags={"backup": "daily"})
    prod = builders.policy("prod", tags={"env": "prod"})
    result = resolve_targets(REGION, [daily, prod], FLEET)
    assert _names(result.policies_by_instance) == {
        "ins-aaaaaaaa": ["daily", "prod"],
        "ins-bbbbbbbb": ["daily"],
        "ins-cccccccc": ["prod"],
    }
    assert result.instances_of("prod") == ("ins-aaaaaaaa", "ins-cccccccc")


def test_policies_of_other_regions_are_ignored_without_warning() -> None:
    elsewhere = builders.policy("far", ids=("ins-aaaaaaaa",), regions=("ap-beijing",))
    result = resolve_targets(REGION, [elsewhere], FLEET)
    assert result.policies_by_instance == {}
    assert result.warnings == ()


def test_listed_id_missing_from_the_region_is_not_targeted() -> None:
    result = resolve_targets(REGION, [builders.policy("p", ids=("ins-zzzzzzzz",))], FLEET)
    assert result.policies_by_instance == {}
    assert len(result.warnings) == 1
