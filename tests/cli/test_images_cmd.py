"""``cvmkeeper images``: managed images per instance, slot, state, age, and the keeping rule."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests/ helpers

from cvmkeeper.cli import cli
from cvmkeeper.core.naming import image_name
from executor.world import REGION, T0, A, B, fleet, managed, policy, unmanaged, world


def seeded() -> list[dict[str, object]]:
    """One unmanaged image, three images of A, one of B (which no policy targets)."""
    return (
        [unmanaged("img-hand0001", "golden-1")]
        + [managed(A, T0 + timedelta(hours=h), f"img-aaaa000{h}") for h in range(3)]
        + [managed(B, T0, "img-bbbb0000")]
    )


def test_images_json_lists_each_instance_with_rules_and_expiry(tmp_path: Path) -> None:
    with world(tmp_path, fleet(images=seeded()), policy(ids=[A], keep_last=2)) as w:
        result = CliRunner().invoke(cli, ["images", "--config", str(w.config_path), "--json"])
        assert result.exit_code == 0, result.output
        [region] = json.loads(result.stdout)["regions"]
        assert (region["region"], region["used"], region["unmanaged"]) == (REGION, 5, 1)
        a_images = region["instances"][A]
        assert [i["image_name"] for i in a_images] == [
            image_name(A, T0 + timedelta(hours=h)) for h in (2, 1, 0)
        ]
        assert [i["expires_at_next_run"] for i in a_images] == [False, False, True]
        assert "keep_last" in a_images[0]["kept_by"]
        assert a_images[2]["kept_by"].startswith("expires at next run")
        assert all(i["state"] == "NORMAL" and i["age_seconds"] > 0 for i in a_images)
        assert [i["orphan"] for i in region["instances"][B]] == [True]
        assert w.writes() == []


def test_images_text_and_policy_filter(tmp_path: Path) -> None:
    with world(tmp_path, fleet(images=seeded()), policy(ids=[A], keep_last=2)) as w:
        result = CliRunner().invoke(
            cli, ["images", "--config", str(w.config_path), "--policy", "hourly"]
        )
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert f"{REGION}: quota 10, used 5 (1 unmanaged, never touched), free 5" in out
        assert A in out and B not in out
        assert "slot 2026-11-27T02:00:00Z" in out and "expires at next run" in out


def test_images_unknown_policy_exits_2(tmp_path: Path) -> None:
    with world(tmp_path, fleet(), policy()) as w:
        result = CliRunner().invoke(
            cli, ["images", "--config", str(w.config_path), "--policy", "nope"]
        )
        assert result.exit_code == 2


def test_names_and_tags_from_the_cloud_are_escaped_in_every_output(tmp_path: Path) -> None:
    """issue 19: anyone who can tag or rename an image or an instance writes text that
    cvmkeeper prints; no control, zero-width or bidi character reaches the terminal."""
    import yaml

    hostile = "evil\x1b[2J\x1b]0;owned\x07\u202egnp.exe\u200b"
    spec = fleet(
        images=[{**unmanaged("img-hostile1", hostile), "tags": {"owner\x1b[31m": "x\u2066y"}}],
        instances=[{"id": A, "name": hostile}, {"id": B}],
    )
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(spec))
    with world(tmp_path, spec, policy()) as w:
        config = str(w.config_path)
        outputs = [
            CliRunner().invoke(cli, [*argv, "--config", config])
            for argv in (
                ["images"],
                ["images", "--json"],
                ["plan"],
                ["plan", "--json"],
                ["status"],
                ["status", "--json"],
                ["run", "--no-alerts", "--dry-run"],
            )
        ]
        outputs.append(
            CliRunner().invoke(
                cli,
                ["emulator", "inventory", "--endpoint", w.emu.endpoint, "--fleet", str(fleet_file)],
            )
        )
    for result in outputs:
        assert "Traceback" not in result.output
        for raw in ("\x1b", "\u202e", "\u200b", "\u2066", "\x07"):
            assert raw not in result.output, (raw, result.output)
    # shown, escaped (click itself drops the CSI sequence \x1b[2J on a non-terminal)
    assert "evil\\x1b]0;owned\\x07" in outputs[-1].output, outputs[-1].output


def named_fleet(**extra: object) -> dict[str, object]:
    """A's console name is web-1, B's db-1; the images of ``seeded()``."""
    return fleet(
        instances=[{"id": A, "name": "web-1"}, {"id": B, "name": "db-1"}], images=seeded(), **extra
    )


def images(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["images", "--config", str(config), *args])
    return result.exit_code, result.stdout, result.stderr


def test_images_show_instance_names_beside_ids(tmp_path: Path) -> None:
    with world(tmp_path, named_fleet(), policy(ids=[A, B], keep_last=2)) as w:
        code, out, err = images(w.config_path)
        assert code == 0, err
        assert f"  {A} (web-1)\n" in out and f"  {B} (db-1)\n" in out
        code, out, _ = images(w.config_path, "--json")
        [region] = json.loads(out)["regions"]
        assert region["instance_names"] == {A: "web-1", B: "db-1"}


def test_instance_filter_takes_an_id_or_a_name(tmp_path: Path) -> None:
    with world(tmp_path, named_fleet(), policy(ids=[A, B], keep_last=2)) as w:
        for value in (A, "web-1"):
            code, out, err = images(w.config_path, "--instance", value, "--json")
            assert code == 0, err
            assert list(json.loads(out)["regions"][0]["instances"]) == [A]
        code, out, _ = images(w.config_path, "--instance", "web-1", "--instance", B, "--json")
        assert sorted(json.loads(out)["regions"][0]["instances"]) == sorted([A, B])
        code, _, err = images(w.config_path, "--instance", "no-such-box")
        assert code == 2
        assert "--instance no-such-box: no such instance (by id or name)" in err


@pytest.mark.wallclock
def test_stale_filter_lists_only_instances_whose_newest_backup_is_stale(
    tmp_path: Path,
) -> None:
    # A's newest image is from T0+2h, B's from T0; the hourly policy allows 2h (factor 2).
    # Read now (days after T0), both are stale; the filter keeps them; with a fresh image
    # of A made "now", only B remains.
    fresh = managed(A, _now_minute(), "img-aaaafres")
    with world(tmp_path, fleet(images=[*seeded(), fresh]), policy(ids=[A, B])) as w:
        code, out, err = images(w.config_path, "--stale", "--json")
        assert code == 0, err
        assert list(json.loads(out)["regions"][0]["instances"]) == [B]
        code, out, _ = images(w.config_path, "--json")
        assert sorted(json.loads(out)["regions"][0]["instances"]) == sorted([A, B])
        code, out, _ = images(w.config_path, "--stale", "--instance", A, "--json")
        assert json.loads(out)["regions"][0]["instances"] == {}


def test_region_filter_still_narrows(tmp_path: Path) -> None:
    with world(tmp_path, named_fleet(), policy(ids=[A, B])) as w:
        code, out, _ = images(w.config_path, "--region", REGION, "--json")
        assert code == 0
        assert [r["region"] for r in json.loads(out)["regions"]] == [REGION]


def _now_minute() -> datetime:
    """The current minute (``images`` judges staleness against the real clock)."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def test_filters_name_a_targeted_instance_that_has_no_backup_at_all(tmp_path: Path) -> None:
    """An instance whose every backup failed holds no managed image; it is the stalest of
    all. ``--stale`` (and ``--instance``, ``--policy``) list it as having no backup instead
    of leaving it out, which read as "no managed images" and hid the failure."""
    c = "ins-cccccccc"
    spec = fleet(
        instances=[
            {"id": A, "name": "web-1"},
            {"id": B, "name": "db-1"},
            {"id": c, "name": "lost"},
        ],
        images=seeded(),
    )
    with world(tmp_path, spec, policy(ids=[A, B, c]), policy("other", ids=[B])) as w:
        for args in (["--stale"], ["--instance", "lost"], ["--policy", "hourly"]):
            code, out, err = images(w.config_path, *args, "--json")
            assert code == 0, err
            [region] = json.loads(out)["regions"]
            assert region["instances"][c] == [], args
            assert region["instance_names"][c] == "lost"
            code, out, _ = images(w.config_path, *args)
            assert f"  {c} (lost)\n    NO BACKUP: no managed image" in out, out
        # a filter that leaves nothing in a region says so, not "no managed images"
        code, out, _ = images(w.config_path, "--instance", A, "--policy", "other")
        assert code == 0
        assert f"{REGION}: quota 10, used 5 (1 unmanaged, never touched), free 5\n" in out
        assert "  no managed images match the filters\n" in out, out
        # unfiltered, the listing stays a list of images
        code, out, _ = images(w.config_path, "--json")
        assert c not in json.loads(out)["regions"][0]["instances"]


def test_an_image_without_created_time_shows_an_unknown_age(tmp_path: Path) -> None:
    """The SDK's model lets ``CreatedTime`` be null (the emulator's ``null_fields``: null
    while an image is not NORMAL). The text listing said nothing but a traceback."""
    images = [
        managed(A, T0, "img-aaaa0000"),
        managed(A, T0 + timedelta(hours=1), "img-aaaa0001", state="CREATEFAILED"),
    ]
    with world(tmp_path, fleet(images=images, null_fields=True), policy(ids=[A])) as w:
        base = ["images", "--config", str(w.config_path)]
        text = CliRunner().invoke(cli, base)
        as_json = CliRunner().invoke(cli, [*base, "--json"])
    assert text.exit_code == 0, text.output
    failed = next(line for line in text.stdout.splitlines() if "img-aaaa0001" in line)
    assert "CREATEFAILED age ?" in failed
    [region] = json.loads(as_json.stdout)["regions"]
    ages = {i["image_id"]: i["age_seconds"] for i in region["instances"][A]}
    assert ages["img-aaaa0001"] is None and ages["img-aaaa0000"] > 0
