"""Loading fleet files: the issue's shape is accepted, mistakes name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvmkeeper.emulator.fleet import FleetError, FleetSpec, load_fleet

FLEETS = Path(__file__).parent / "fleets"
REPO = Path(__file__).resolve().parents[2]


def test_issue_shape_is_accepted() -> None:
    fleet = load_fleet(FLEETS / "issue-shape.yaml")
    region = fleet.regions["ap-guangzhou"]
    assert region.quota == 10
    assert region.instances[0].tags == {"backup": "daily"}
    assert region.images[0].name == "golden-base"
    assert fleet.faults["CreateImage"]["lost_response"] == 0.05
    assert fleet.rate_limits["CreateImage"] == 10
    assert fleet.rate_limits["DeleteImages"] == 10  # documented default kept
    assert (fleet.name_limit, fleet.description_limit) == (20, 60)
    assert fleet.credentials.secret_id == "AKIDEXAMPLE"
    assert "example-key" not in repr(fleet)


def test_demo_and_sample_fleets_load() -> None:
    demo = load_fleet(REPO / "config" / "fleet-demo.yaml")
    assert set(demo.regions) == {"ap-guangzhou", "ap-shanghai"}
    assert load_fleet(FLEETS / "small.yaml").regions["ap-guangzhou"].quota == 3


def test_every_documented_key_loads() -> None:
    fleet = load_fleet(FLEETS / "all-keys.yaml")
    region = fleet.regions["ap-guangzhou"]
    assert [i.not_supported for i in region.instances] == [False, True, True]
    assert region.images[0].shared
    assert fleet.faults["*"] == {"InternalError": 0.01}
    assert fleet.rate_limits["DescribeImageQuota"] == 0
    assert fleet.seed == 11
    assert fleet.credentials.token == "optional-session-token"
    assert fleet.launch.sold_out_types == ("SA2.TINY",)
    assert fleet.timing.reset_seconds == 1.0
    assert fleet.open_points.instance_states == "in_progress"
    assert fleet.open_points.create_retry_order == "duplicate_first"
    assert fleet.open_points.image_order == "newest_first"
    assert fleet.source["profile"] == "documented"
    assert fleet.open_points.null_fields is False
    assert fleet.open_points.unknown_instance_status == "error"
    assert fleet.open_points.sync_copies_tags and fleet.open_points.sync_copies_description
    assert fleet.open_points.sync_images_per_call == "many"
    assert fleet.open_points.sync_disallowed_pairs == (
        ("ap-guangzhou", "ap-beijing", "UnsupportedOperation.Region"),
    )


def test_only_regions_is_required() -> None:
    fleet = FleetSpec.from_mapping({"regions": {"ap-guangzhou": None}})
    assert fleet.regions["ap-guangzhou"].quota == 10
    with pytest.raises(FleetError, match="regions: is required"):
        FleetSpec.from_mapping({"limits": "legacy"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("regions:\n  ap-guangzhou:\n    quota: -1\n", ":3: regions.ap-guangzhou.quota: must be"),
        (
            "regions:\n  ap-guangzhou:\n    instances:\n      - {name: x}\n",
            ":4: regions.ap-guangzhou.instances[0].id: is required",
        ),
        ("limits: modern\nregions: {r: {}}\n", ":1: limits: must be one of legacy, current"),
        (
            "regions: {r: {}}\nfaults:\n  CreateImage: {InternalError: 0.7, reset: 0.6}\n",
            ":3: faults.CreateImage: fault probabilities add up",
        ),
        ("regions: {r: {}}\ntiming: {create_secs: 1}\n", ":2: timing.create_secs: unknown key"),
        (
            "regions: {r: {}}\nlaunch:\n  outcome: maybe\n",
            ":3: launch.outcome: must be one of running, launch_failed, stuck_pending",
        ),
        (
            "regions:\n  r:\n    images:\n"
            "      - {id: img-1, name: a}\n      - {id: img-2, name: a}\n",
            ":5: regions.r.images[1].name: duplicate image name",
        ),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(FleetError) as info:
        load_fleet(path)
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)


def test_invalid_instances_mark_instances_not_supported() -> None:
    fleet = FleetSpec.from_mapping(
        {
            "invalid_instances": ["ins-a"],
            "regions": {"r": {"instances": [{"id": "ins-a"}, {"id": "ins-b"}]}},
        }
    )
    assert [i.not_supported for i in fleet.regions["r"].instances] == [True, False]


BILLION_LAUGHS = "".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]\n"]
    + [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]\n" for n in range(1, 10)]
    + ["regions: {ap-guangzhou: {instances: *a9}}\n"]
)


def test_nested_aliases_are_refused_quickly_and_in_little_memory(tmp_path: Path) -> None:
    """issue 19: a fleet file of nested aliases grew without bound (6 GB in 60 s). Run in a
    child with a 1 GiB address-space limit and a 60 s timeout, so a regression fails
    instead of taking the machine down."""
    import subprocess
    import sys

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    program = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from cvmkeeper.emulator.fleet import FleetError, load_fleet\n"
        "try:\n"
        "    load_fleet(sys.argv[1])\n"
        "except FleetError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, str(bomb)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "aliases (*name) are not allowed" in done.stdout
    assert "line 2" in done.stdout, done.stdout
