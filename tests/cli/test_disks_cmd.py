"""What a backup holds, as the commands show it (rule 10): ``images``, ``status``,
``validate --online``, over real HTTP to the emulator."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.cli import cli
from cvmkeeper.executor import run_once
from executor.world import REGION, T0, A, B, fleet, policy, world

DB_DISK = {"id": "disk-dbdata01", "type": "CLOUD_PREMIUM", "size": 200}
SCRATCH = {"id": "disk-scratch1", "type": "LOCAL_SSD", "size": 100}
AT = "2026-11-27T01:30Z"


def spec() -> dict[str, object]:
    return fleet(instances=({"id": A, "data_disks": [DB_DISK, SCRATCH]}, {"id": B}))


def test_images_shows_what_each_image_holds(tmp_path: Path) -> None:
    with world(tmp_path, spec(), policy(ids=[A, B])) as w:
        run_once(w.setup(), w.client(), RecordingAlerter(), now=T0.replace(hour=1, minute=1))
        text = CliRunner().invoke(cli, ["images", "--config", str(w.config_path)])
        assert text.exit_code == 0, text.output
        assert "holds system 50G + data 200G (disk-dbdata01)" in text.stdout
        assert "holds system 50G\n" in text.stdout  # B: the system disk is all it has
        result = CliRunner().invoke(cli, ["images", "--config", str(w.config_path), "--json"])
        [region] = json.loads(result.stdout)["regions"]
        [image_a] = region["instances"][A]
        assert [(d["usage"], d["size_gib"]) for d in image_a["disks"]] == [
            ("SYSTEM_DISK", 50),
            ("DATA_DISK", 200),
        ]
        assert image_a["data_disks_asked"] == 1
        assert image_a["fewer_disks_than_asked"] is False
        assert region["instances"][B][0]["data_disks_asked"] == 0


def test_status_and_validate_online_name_the_disk_left_out(tmp_path: Path) -> None:
    with world(tmp_path, spec(), policy("db", ids=[A, B])) as w:
        run_once(w.setup(), w.client(), RecordingAlerter(), now=T0.replace(hour=1, minute=1))
        status = CliRunner().invoke(cli, ["status", "--config", str(w.config_path), "--at", AT])
        assert "DISK WARNINGS (1)" in status.stdout
        assert status.exit_code == 1 and "needs attention" in status.stdout
        assert f"{REGION}: policy 'db': instance {A}: disk disk-scratch1" in status.stdout
        as_json = CliRunner().invoke(
            cli, ["status", "--config", str(w.config_path), "--at", AT, "--json"]
        )
        document = json.loads(as_json.stdout)
        assert document["ok"] is False
        [warning] = document["disk_warnings"]
        assert "disk-scratch1" in warning and "NOT in the backup" in warning
        holds = {i["instance_id"]: i["newest_image_holds"] for i in document["instances"]}
        assert holds == {A: "system 50G + data 200G", B: "system 50G"}
        validate = CliRunner().invoke(cli, ["validate", "--online", "--config", str(w.config_path)])
        assert validate.exit_code == 0, validate.output
        assert (
            f"warning: {REGION}: policy 'db': instance {A}: disk disk-scratch1 is a local "
            "disk (LOCAL_SSD)"
        ) in validate.stdout


def test_validate_warns_about_the_snapshots_per_disk(tmp_path: Path) -> None:
    with world(tmp_path, fleet(quota=100), policy(ids=[A], keep_last=70), quota=100) as w:
        result = CliRunner().invoke(cli, ["validate", "--config", str(w.config_path)])
        assert result.exit_code == 0, result.output
        assert (
            "warning: policy 'hourly' can keep 70 images per instance; each holds a "
            "snapshot of every disk and CBS documents at most 64 snapshots per disk"
        ) in result.stdout


def test_validate_warns_when_deletes_leave_the_snapshots(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy(ids=[A]), delete_binded_snapshots=False) as w:
        result = CliRunner().invoke(cli, ["validate", "--config", str(w.config_path)])
        assert result.exit_code == 0, result.output
        assert "warning: api.delete_binded_snapshots is false" in result.stdout
