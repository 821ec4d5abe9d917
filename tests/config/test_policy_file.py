"""Policy files: every problem with file, line, column and key, all at once."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from cvmkeeper.config import ConfigError, load_policies, parse_policy_text
from cvmkeeper.core.policy import Consistency, Retention, Schedule

GOOD = """\
name: web-daily
regions: [ap-guangzhou]
targets:
  instance_ids: [ins-6pb6lrmy]
  tags: {backup: daily}
  exclude_instance_ids: []
schedules:
  - cron: "0 2 * * *"
    timezone: Asia/Shanghai
retention: {keep_last: 3, keep_daily: 7, keep_weekly: 4, keep_monthly: 6, min_keep: 1}
consistency: live
"""


def problems(text: str, source: str = "policies/web.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_policy_text(textwrap.dedent(text), source)
    return [str(p) for p in info.value.problems]


def test_the_issue_example_loads() -> None:
    policy = parse_policy_text(GOOD, "policies/web.yaml")
    assert policy.name == "web-daily"
    assert policy.targets.instance_ids == ("ins-6pb6lrmy",)
    assert dict(policy.targets.tags) == {"backup": "daily"}
    assert policy.schedules == (Schedule(cron="0 2 * * *", timezone="Asia/Shanghai"),)
    assert policy.timezone == "Asia/Shanghai"
    assert policy.retention == Retention(
        keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=6, min_keep=1
    )
    assert policy.consistency is Consistency.LIVE
    assert policy.catch_up == timedelta(days=1)
    assert policy.on_quota_full == "evict"
    assert policy.source == "policies/web.yaml"


def test_a_misspelt_key_names_file_line_column_and_suggests() -> None:
    text = GOOD.replace("keep_daily: 7", "keep_daly: 7")
    assert problems(text) == [
        "policies/web.yaml:10:27: retention.keep_daly: unknown key (did you mean keep_daily?)"
    ]


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = """\
        name: Web_Daily
        regions: [ap-guangzhou, ap-guangzhou]
        targets: {instance_ids: [ins-123], tagz: {a: b}}
        schedules:
          - cron: "0 25 * * *"
            timezone: Asia/Shangai
          - every: 30s
        retention: {}
        consistency: snapshot
        catch_up: soon
        """
    found = problems(text)
    joined = "\n".join(found)
    assert "policies/web.yaml:1:7: name: 'Web_Daily' is not 1-63 lowercase" in joined
    assert "2:25: regions[1]: 'ap-guangzhou' is listed twice" in joined
    assert "3:26: targets.instance_ids[0]: 'ins-123' is not a CVM instance id" in joined
    assert "3:36: targets.tagz: unknown key (did you mean tags?)" in joined
    assert "5:11: schedules[0].cron: hour: 25 is outside 0-23" in joined
    assert "6:15: schedules[0].timezone: unknown timezone 'Asia/Shangai'" in joined
    assert "7:12: schedules[1].every: must be at least 1m" in joined
    assert "8:12: retention: keeps nothing" in joined
    assert "9:14: consistency: 'snapshot' is not one of live, force_poweroff, stop_start" in joined
    assert "10:11: catch_up: 'soon' is not a duration" in joined
    assert len(found) == 10


def test_duplicate_keys_are_rejected_with_both_lines() -> None:
    text = GOOD + "retention: {keep_last: 1}\n"
    assert problems(text) == [
        "policies/web.yaml:12:1: retention: duplicate key (first given on line 10)"
    ]


def test_missing_required_keys() -> None:
    found = problems("name: x\n")
    assert found == [
        "policies/web.yaml:1:1: regions: required here, or set regions in the daemon config",
        "policies/web.yaml:1:1: retention: required key is missing",
        "policies/web.yaml:1:1: schedules: required key is missing",
        "policies/web.yaml:1:1: targets: required key is missing",
    ]


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        ("tags: {backup: daily}", "tags: {}", None),
        ("instance_ids: [ins-6pb6lrmy]", "instance_ids: []", None),
        ("keep_last: 3", "keep_last: -1", "retention.keep_last: must be at least 0, got -1"),
        (
            "keep_last: 3",
            "keep_last: three",
            "retention.keep_last: expected an integer, got a string",
        ),
        ("keep_last: 3", "keep_last: true", "expected an integer, got a boolean"),
        ("min_keep: 1", "min_keep: 0", "retention.min_keep: must be at least 1"),
        ('- cron: "0 2 * * *"', '- cron: "0 2 * * *"\n    every: 6h', "exactly one of cron"),
        ("    timezone: Asia/Shanghai", "    timezone: Asia/Shanghai\n    jitter: 2d", "jitter"),
        (
            "consistency: live",
            "consistency: live\ncopies: [{region: ap-guangzhou}]",
            "copies[0].region: ap-guangzhou is the policy's only region",
        ),
        ("name: web-daily", "name: [web]", "name: expected a string, got a list"),
        ("regions: [ap-guangzhou]", "regions: ap-guangzhou", "regions: expected a list"),
        ("regions: [ap-guangzhou]", "regions: []", "regions: is empty"),
        ("exclude_instance_ids: []", "exclude_instance_ids: [ins-6pb6lrmy]", "both listed and"),
    ],
)
def test_each_kind_of_mistake(replace: str, by: str, message: str | None) -> None:
    text = GOOD.replace(replace, by)
    assert text != GOOD
    if message is None:
        parse_policy_text(text)  # still valid: the other target remains
        return
    assert any(message in p for p in problems(text)), problems(text)


def test_nothing_targeted_is_refused() -> None:
    text = GOOD.replace("instance_ids: [ins-6pb6lrmy]", "instance_ids: []").replace(
        "tags: {backup: daily}", "tags: {}"
    )
    assert any("targets: selects nothing" in p for p in problems(text))


def test_more_than_four_schedules() -> None:
    extra = "".join(f'  - cron: "{m} 3 * * *"\n' for m in range(4))
    text = GOOD.replace("retention:", extra + "retention:")
    assert any("schedules: has 5 entries; at most 4" in p for p in problems(text))


def test_defaults_and_overrides() -> None:
    text = """\
        name: db
        targets: {tags: {role: db, tier: 1}}
        schedules: [{every: 6h}, {cron: "@daily", timezone: Europe/Berlin}]
        retention: {keep_within: 2d}
        catch_up: off
        on_quota_full: skip
        """
    policy = parse_policy_text(textwrap.dedent(text), default_regions=("ap-shanghai",))
    assert policy.regions == ("ap-shanghai",)
    assert dict(policy.targets.tags) == {"role": "db", "tier": "1"}
    assert policy.timezone == "UTC"
    assert policy.schedules[1].timezone == "Europe/Berlin"
    assert policy.catch_up == timedelta()
    assert policy.on_quota_full == "skip"
    assert policy.retention.keep_within == timedelta(days=2)


def test_catch_up_defaults_to_one_period() -> None:
    text = GOOD.replace('"0 2 * * *"', '"0 2 * * mon-fri"')
    assert parse_policy_text(text).catch_up == timedelta(days=3)


def test_yaml_syntax_errors_have_positions() -> None:
    found = problems("name: [unclosed\n")
    assert len(found) == 1
    assert found[0].startswith("policies/web.yaml:2:1: not valid YAML")


def test_empty_and_non_mapping_files() -> None:
    assert problems("") == ["policies/web.yaml: the file is empty"]
    assert problems("- a\n") == ["policies/web.yaml:1:1: expected a mapping, got a list"]


def test_duplicate_policy_names_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    (tmp_path / ".swap.yaml").write_text("not: [valid")
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.raises(ConfigError) as info:
        load_policies(tmp_path)
    [problem] = info.value.problems
    assert problem.file.endswith("b.yaml")
    assert (problem.line, problem.column, problem.path) == (1, 7, "name")
    assert "already used by" in problem.message and "a.yaml" in problem.message


def test_problems_of_all_files_come_together(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD.replace("keep_last", "keep_lst"))
    (tmp_path / "b.yaml").write_text(GOOD.replace("web-daily", "b").replace("0 2", "0 99"))
    (tmp_path / "c.yml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError) as info:
        load_policies(tmp_path)
    files = sorted({Path(p.file).name for p in info.value.problems})
    assert files == ["a.yaml", "b.yaml", "c.yml"]


def test_an_empty_or_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no policy files"):
        load_policies(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_policies(tmp_path / "nope")


def test_the_sample_policies_load() -> None:
    root = Path(__file__).resolve().parents[2]
    policies = load_policies(root / "policies", default_regions=("ap-guangzhou",))
    assert {p.name for p in policies} == {"web-daily", "db-hourly", "batch-weekly"}
    assert {p.consistency for p in policies} == set(Consistency) - {Consistency.FORCE_POWEROFF}


def test_copies_default_to_the_main_retention_and_take_their_own() -> None:
    text = GOOD + (
        "copies:\n  - region: ap-shanghai\n  - region: ap-beijing\n    retention: {keep_daily: 3}\n"
    )
    policy = parse_policy_text(text, "policies/web.yaml")
    assert [rule.region for rule in policy.copies] == ["ap-shanghai", "ap-beijing"]
    assert policy.copies[0].retention == policy.retention
    assert policy.copies[1].retention == Retention(keep_daily=3)
    assert policy.copy_to("ap-beijing") == policy.copies[1]
    assert policy.copy_to("ap-guangzhou") is None


@pytest.mark.parametrize(
    ("copies", "message"),
    [
        (
            "copies: [{region: ap-shanghai}, {region: ap-shanghai}]",
            "policies/web.yaml:12:42: copies[1].region: ap-shanghai is listed twice",
        ),
        ("copies: [{retention: {keep_last: 1}}]", "copies[0].region: required key is missing"),
        ("copies: [{region: Shanghai}]", "copies[0].region"),
        ("copies: [{region: ap-shanghai, retention: {}}]", "copies[0].retention: keeps nothing"),
        ("copies: [{region: ap-shanghai, keep: 3}]", "copies[0].keep"),
        ("copies: {region: ap-shanghai}", "copies: expected a list"),
    ],
)
def test_copy_mistakes_name_their_line_and_key(copies: str, message: str) -> None:
    found = problems(GOOD + copies + "\n")
    assert any(message in p for p in found), found


def test_a_fifo_or_a_socket_among_the_policies_is_refused_without_blocking(
    tmp_path: Path,
) -> None:
    import os
    import socket
    import threading

    (tmp_path / "good.yaml").write_text(GOOD)
    os.mkfifo(tmp_path / "pipe.yaml")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "sock.yaml"))
    found: list[str] = []

    def load() -> None:
        try:
            load_policies(tmp_path)
        except ConfigError as error:
            found.extend(str(p) for p in error.problems)

    loading = threading.Thread(target=load, daemon=True)  # a hang must not hang the suite
    loading.start()
    loading.join(timeout=10)
    listener.close()
    assert not loading.is_alive(), "load_policies blocked on the FIFO"
    assert sorted(found) == [
        f"{tmp_path / 'pipe.yaml'}: is a FIFO (named pipe), not a regular file; refused",
        f"{tmp_path / 'sock.yaml'}: is a socket, not a regular file; refused",
    ]


def test_a_nul_or_control_character_is_reported_at_its_line_and_column() -> None:
    found = problems(GOOD.replace("consistency: live", "consistency: li\x00ve"))
    assert found == [
        "policies/web.yaml:11:16: not valid YAML: character U+0000 is not allowed (YAML "
        "forbids control and non-printable characters; remove it, or escape it inside "
        "double quotes)"
    ]
    [bell] = problems("name: web\n\x07\n")
    assert bell.startswith("policies/web.yaml:2:1: not valid YAML: character U+0007 ")
