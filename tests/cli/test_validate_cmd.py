"""``cvmkeeper validate``: offline, broken files, quota arithmetic, and --online over HTTP."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cvmkeeper.cli import cli
from cvmkeeper.emulator.server import running_emulator

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CONFIG = ROOT / "config" / "cvmkeeper.yaml"
FLEET = ROOT / "config" / "fleet-demo.yaml"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_the_samples_are_valid_and_summarised() -> None:
    code, out, err = run("validate", "--config", str(SAMPLE_CONFIG))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("web-daily (policies/daily-gfs.yaml): tag backup=daily in ")
    assert "next " in lines[0] and "Asia/Shanghai" in lines[0]
    # keep_daily 2: the next night's image leaves today's as keep_daily #2, so rotating
    # needs no image more than the rules keep
    assert lines[0].endswith(
        "holds at most keep_daily 2 + keep_weekly 2 + keep_monthly 1 + min_keep 1 - 3 (the "
        "newest, kept by every rule) = 3 images per instance"
    )
    assert lines[1].startswith("db-hourly ")
    assert lines[2].startswith("batch-weekly ") and "ins-9vb4c6lp" in lines[2]
    assert (
        "quota ap-guangzhou: web-daily 3 x >=1 instance + db-hourly 3 x >=1 "
        "instance = 6 <= quota 10 (offline: the documented default 10; validate --online "
        "reads the account's quota)"
    ) in lines
    assert lines[-1] == "ok: 3 policies valid"


def test_the_config_comes_from_the_environment_too() -> None:
    code, out, _ = run("validate", env={"CVMKEEPER_CONFIG": str(SAMPLE_CONFIG)})
    assert code == 0
    assert out.splitlines()[-1] == "ok: 3 policies valid"


def test_all_errors_of_all_files_and_exit_2(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "web.yaml").write_text(
        textwrap.dedent(
            """\
            name: web
            regions: [ap-guangzhou]
            targets: {instance_ids: [ins-6pb6lrmy]}
            schedules: [{cron: "0 2 * * *"}]
            retention: {keep_last: 3, keep_daly: 7}
            """
        )
    )
    (policies / "db.yaml").write_text("name: db\n")
    config = tmp_path / "cvmkeeper.yaml"
    config.write_text("image_quota: 10\nimage_qota: 3\n")
    code, out, err = run("validate", "--config", str(config))
    assert code == 2
    assert out == ""
    assert "cvmkeeper.yaml:2:1: image_qota: unknown key (did you mean image_quota?)" in err
    assert "web.yaml:5:27: retention.keep_daly: unknown key (did you mean keep_daily?)" in err
    assert "db.yaml:1:1: targets: required key is missing" in err
    assert err.splitlines()[-1] == "6 problems found"  # config 1, web.yaml 1, db.yaml 4
    assert "Traceback" not in err


def test_over_quota_shows_the_arithmetic(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "gfs.yaml").write_text(
        textwrap.dedent(
            """\
            name: gfs
            regions: [ap-guangzhou]
            targets: {instance_ids: [ins-6pb6lrmy, ins-2kd9x0qa]}
            schedules: [{cron: "0 2 * * *"}]
            retention: {keep_daily: 7, keep_weekly: 4, keep_monthly: 3}
            """
        )
    )
    config = tmp_path / "cvmkeeper.yaml"
    config.write_text("image_quota: 20\n")
    code, _, err = run("validate", "--config", str(config))
    assert code == 2
    assert (
        "cvmkeeper.yaml: image_quota: ap-guangzhou: gfs 12 x 2 instances = 24 > quota 20"
    ) in err


def online_config(tmp_path: Path, endpoint: str, quota: int = 10) -> Path:
    key = tmp_path / "secret_key"
    key.write_text("demo-secret-key\n")
    key.chmod(0o600)
    config = tmp_path / "cvmkeeper.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            policies_dir: {ROOT / "policies"}
            regions: [ap-guangzhou, ap-shanghai]
            image_quota: {quota}
            cloud: {{endpoint: "{endpoint}", scheme: http}}
            credentials:
              secret_id: AKIDDEMO0000000000000000000000000000
              secret_key_file: {key}
              cvm_role: false
            """
        )
    )
    return config


@pytest.mark.slow
def test_online_counts_tagged_instances_and_unmanaged_images(tmp_path: Path) -> None:
    # The demo fleet as shipped fills ap-guangzhou exactly: web-daily's two tagged
    # instances hold 3 each, db-hourly 3, and the golden image is the tenth.
    with running_emulator(FLEET) as emulator:
        config = online_config(tmp_path, emulator.endpoint, quota=10)
        code, out, err = run("validate", "--online", "--config", str(config))
        assert code == 0, err
        assert (
            "quota ap-guangzhou: web-daily 3 x 2 instances + db-hourly 3 x 1 "
            "instance + 1 unmanaged = 10 <= quota 10 (account quota 10 from "
            "DescribeImageQuota, cap image_quota 10)"
        ) in out.splitlines()
        assert (
            "quota ap-shanghai: web-daily 3 x 1 instance + batch-weekly 2 x 1 "
            "instance + 1 unmanaged = 6 <= quota 10 (account quota 10 from "
            "DescribeImageQuota, cap image_quota 10)"
        ) in out.splitlines()

        tight = online_config(tmp_path, emulator.endpoint, quota=9)
        code, out, err = run("validate", "--online", "--config", str(tight))
        assert code == 2
        assert "ap-guangzhou: web-daily 3 x 2 instances" in err
        assert "= 10 > quota 9" in err
        assert "demo-secret-key" not in out + err
        # the account allows 10: the cap is what to raise, and the problem says both numbers
        assert (
            "= 10 > quota 9 (account quota 10 from DescribeImageQuota, cap image_quota 9): "
            "retention wants more images than the region can hold; lower keep_* counts, "
            "target fewer instances, or raise or remove image_quota, the cap below the "
            "account's quota"
        ) in err


@pytest.mark.slow
def test_online_counts_the_image_to_rotate_of_every_tagged_instance(tmp_path: Path) -> None:
    # web-daily with keep_daily 1: each night's image expires the newest, so each of the
    # two tagged instances in ap-guangzhou needs one image more than its rules keep.
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    gfs = policies / "daily-gfs.yaml"
    document = yaml.safe_load(gfs.read_text())
    document["retention"] = {"keep_daily": 1, "keep_weekly": 2, "keep_monthly": 2}
    gfs.write_text(yaml.safe_dump(document))
    with running_emulator(FLEET) as emulator:
        config = online_config(tmp_path, emulator.endpoint, quota=10)
        config.write_text(config.read_text().replace(str(ROOT / "policies"), str(policies)))
        code, _, err = run("validate", "--online", "--config", str(config))
        assert code == 2
        assert (
            "ap-guangzhou: web-daily (3 + 1 to rotate) x 2 instances + db-hourly 3 x 1 "
            "instance + 1 unmanaged = 12 > quota 10"
        ) in err


@pytest.mark.slow
def test_online_without_a_cloud_is_exit_1(tmp_path: Path) -> None:
    with running_emulator(FLEET) as emulator:
        endpoint = emulator.endpoint
    config = online_config(tmp_path, endpoint)  # nothing listens there any more
    text = config.read_text().replace(
        "cloud: {", "api: {retries: {max_attempts: 1, deadline_seconds: 2}}\ncloud: {"
    )
    config.write_text(text)
    code, _, err = run("validate", "--online", "--config", str(config))
    assert code == 1
    assert err.startswith("validate: --online failed:")
    assert "demo-secret-key" not in err


def rotation_setup(tmp_path: Path, retention: str, quota: int) -> Path:
    """Two instances on an hourly schedule under ``retention``, in a region of ``quota``."""
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "web.yaml").write_text(
        "name: web\nregions: [ap-guangzhou]\n"
        "targets: {instance_ids: [ins-6pb6lrmy, ins-2kd9x0qa]}\n"
        f"schedules: [{{every: 1h}}]\nretention: {retention}\n"
    )
    config = tmp_path / "cvmkeeper.yaml"
    config.write_text(f"image_quota: {quota}\n")
    return config


def test_an_instance_whose_next_image_replaces_its_newest_counts_one_more(
    tmp_path: Path,
) -> None:
    code, _, err = run("validate", "--config", str(rotation_setup(tmp_path, "{keep_daily: 3}", 7)))
    assert code == 2
    assert (
        "cvmkeeper.yaml: image_quota: ap-guangzhou: web (3 + 1 to rotate) x 2 instances "
        "= 8 > quota 7"
    ) in err
    code, out, err = run(
        "validate", "--config", str(rotation_setup(tmp_path, "{keep_daily: 3}", 8))
    )
    assert code == 0, err
    assert (
        "= 3 (+1 to rotate: the next image can expire the newest, which is deleted only "
        "once its successor is NORMAL) images per instance"
    ) in out


def test_keep_last_4_rotates_in_place_and_needs_no_extra_image(tmp_path: Path) -> None:
    code, out, err = run("validate", "--config", str(rotation_setup(tmp_path, "{keep_last: 4}", 8)))
    assert code == 0, err
    assert (
        "quota ap-guangzhou: web 4 x 2 instances = 8 <= quota 8 (offline: the cap image_quota)"
    ) in out
    assert "to rotate" not in out


@pytest.mark.slow
def test_online_says_images_under_another_name_template_are_no_longer_ours(
    tmp_path: Path,
) -> None:
    from executor.world import T0, A, fleet, managed, policy, write_config

    images = [managed(A, T0, "img-old00001"), managed(A, T0.replace(hour=1), "img-old00002")]
    with running_emulator(fleet(images=images)) as emulator:
        config = write_config(tmp_path, emulator.endpoint)
        (tmp_path / "policies" / "hourly.yaml").write_text(yaml.safe_dump(policy(ids=[A])))
        code, out, err = run("validate", "--online", "--config", str(config))
        assert code == 0, err
        assert not any("another name format" in line for line in out.splitlines())

        document = yaml.safe_load(config.read_text())
        document["name_template"] = "{id}-{yy}{mm}{dd}{HH}{MM}"
        config.write_text(yaml.safe_dump(document))
        code, out, err = run("validate", "--online", "--config", str(config))
        assert code == 0, err
        [line] = [line for line in out.splitlines() if "another name format" in line]
        assert line.startswith(
            "warning: ap-guangzhou: 2 images made by cvmkeeper under another name format are "
            "now treated as not ours; they count against the quota and will never be rotated: "
        )
        assert "img-old00001" in line and "img-old00002" in line


@pytest.mark.slow
def test_online_names_the_images_of_a_policy_that_no_longer_exists(tmp_path: Path) -> None:
    from executor.world import T0, A, fleet, managed, policy, write_config

    images = [
        managed(A, T0, "img-gone0001", policy="nightly"),
        managed(A, T0.replace(hour=1), "img-ours0001"),
    ]  # made by "hourly"
    with running_emulator(fleet(images=images)) as emulator:
        config = write_config(tmp_path, emulator.endpoint)
        (tmp_path / "policies" / "hourly.yaml").write_text(yaml.safe_dump(policy(ids=[A])))
        code, out, err = run("validate", "--online", "--config", str(config))
        assert code == 0, err
        [line] = [line for line in out.splitlines() if "no longer exists" in line]
        assert line == (
            "warning: ap-guangzhou: 1 image(s) of policy 'nightly', which no longer exists, "
            "are held: kept, never rotated: img-gone0001"
        )
