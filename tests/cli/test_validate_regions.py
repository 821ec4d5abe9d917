"""``cvmkeeper validate`` knows Tencent Cloud's regions: a typo is a sentence at its file,
line and key with the closest known name, never an exception class name."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from cvmkeeper.cli import cli
from cvmkeeper.config.regions import KNOWN_REGIONS, closest_region, unknown_region_message


def write_setup(tmp_path: Path, config_regions: str, policy_regions: str, copy: str) -> Path:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "web.yaml").write_text(
        textwrap.dedent(f"""\
        name: web
        regions: {policy_regions}
        targets: {{instance_ids: [ins-6pb6lrmy]}}
        schedules: [{{cron: "0 2 * * *"}}]
        retention: {{keep_daily: 3}}
        copies:
          - region: {copy}
        """)
    )
    config = tmp_path / "cvmkeeper.yaml"
    config.write_text(f"policies_dir: policies\nregions: {config_regions}\n")
    return config


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("ap-guangzou", "ap-guangzhou"),
        ("ap-shangai", "ap-shanghai"),
        ("eu-frankfort", "eu-frankfurt"),
        ("AP-SINGAPORE", "ap-singapore"),
    ],
)
def test_closest_region(typo: str, meant: str) -> None:
    assert closest_region(typo) == meant


def test_nothing_close_gives_no_guess_but_the_list() -> None:
    assert closest_region("moon-base") is None
    message = unknown_region_message("moon-base")
    assert "did you mean" not in message
    assert "ap-guangzhou" in message and "sa-saopaulo" in message


def test_every_typo_is_reported_at_its_file_line_and_key(tmp_path: Path) -> None:
    config = write_setup(tmp_path, "[ap-shanghai, ap-guangzou]", "[ap-beijng]", "eu-frankfort")
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert result.exit_code == 2
    err = result.stderr
    assert (
        f"{config}:2:24: regions[1]: 'ap-guangzou' is not a Tencent Cloud region "
        "cvmkeeper knows; did you mean ap-guangzhou?"
    ) in err
    policy = tmp_path / "policies" / "web.yaml"
    assert f"{policy}:2:11: regions[0]: 'ap-beijng' is not" in err
    assert "did you mean ap-beijing?" in err
    assert f"{policy}:7:13: copies[0].region: 'eu-frankfort' is not" in err
    assert "did you mean eu-frankfurt?" in err
    assert err.rstrip().endswith("3 problems found")
    assert "Error" not in err and "Traceback" not in result.output


def test_known_regions_pass(tmp_path: Path) -> None:
    config = write_setup(tmp_path, "[ap-shanghai]", "[ap-guangzhou]", "eu-frankfurt")
    result = CliRunner().invoke(cli, ["validate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("ok: 1 policies valid")


def test_the_list_has_the_regions_the_samples_and_the_emulator_use() -> None:
    assert {"ap-guangzhou", "ap-shanghai", "ap-beijing", "ap-singapore"} <= set(KNOWN_REGIONS)
    assert list(KNOWN_REGIONS) == sorted(set(KNOWN_REGIONS))


def test_online_confirms_a_region_the_cloud_answers_for_and_still_refuses_a_typo(
    tmp_path: Path,
) -> None:
    """A region opened after this release passes with --online (the emulator serves a
    region outside the list); a typo still fails, with its suggestion."""
    import sys

    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers
    from executor.world import REGION, fleet, policy, world

    new_region = "na-newyork"
    spec = fleet()
    spec["regions"][new_region] = {"quota": 10, "instances": [], "images": []}  # type: ignore[index]
    with world(
        tmp_path,
        spec,
        policy(ids=[]) | {"targets": {"tags": {"backup": "x"}}, "regions": [REGION, new_region]},
    ) as w:
        offline = CliRunner().invoke(cli, ["validate", "--config", str(w.config_path)])
        assert offline.exit_code == 2
        assert f"'{new_region}' is not a Tencent Cloud region cvmkeeper knows" in offline.stderr
        online = CliRunner().invoke(cli, ["validate", "--online", "--config", str(w.config_path)])
        assert online.exit_code == 0, online.output
        assert (
            f"note: region {new_region} is not in cvmkeeper's list of Tencent Cloud "
            "regions, but the cloud answers for it"
        ) in online.stdout
        document = yaml.safe_load(w.config_path.read_text())
        document["regions"] = ["ap-guangzou"]
        w.config_path.write_text(yaml.safe_dump(document))
        typo = CliRunner().invoke(cli, ["validate", "--online", "--config", str(w.config_path)])
        assert typo.exit_code == 2
        assert (
            "'ap-guangzou' is not a Tencent Cloud region cvmkeeper knows; did you mean "
            "ap-guangzhou?" in typo.stderr
        )
