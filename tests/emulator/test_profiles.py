"""Profiles (issue #18): ``documented`` and ``pessimistic`` set every open-point switch."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from cvmkeeper.emulator.clock import ManualClock
from cvmkeeper.emulator.core import EmulatorCore
from cvmkeeper.emulator.fleet import FleetError, FleetSpec, OpenPoints, load_fleet
from cvmkeeper.emulator.profiles import ENV_VAR, PESSIMISTIC, env_profile, with_env_profile
from emulator.sdk import GZ

BIN = Path(sys.executable).parent


def spec(**top: object) -> FleetSpec:
    return FleetSpec.from_mapping({"regions": {GZ: None}, **top})


def test_documented_is_the_default_and_keeps_every_switch_at_its_default() -> None:
    assert spec().open_points == OpenPoints()
    assert spec(profile="documented").open_points == OpenPoints()
    assert spec().source["profile"] == "documented"


def test_pessimistic_sets_every_switch_of_the_table() -> None:
    pessimistic = spec(profile="pessimistic").open_points
    assert pessimistic == spec(profile="documented", **PESSIMISTIC).open_points
    points, defaults = asdict(pessimistic), asdict(OpenPoints())
    for key in PESSIMISTIC:
        assert points[key] != defaults[key], key  # each entry changes its switch
    # every switch of OpenPoints has a pessimistic value: a new switch cannot be forgotten
    assert set(points) <= set(PESSIMISTIC)


def test_an_explicit_switch_overrides_the_profile() -> None:
    points = spec(profile="pessimistic", image_order="newest_first").open_points
    assert points.image_order == "newest_first"
    assert points.create_retry_order == "mutex_first"


def test_an_unknown_profile_names_the_key() -> None:
    with pytest.raises(FleetError, match="profile: must be one of documented, pessimistic"):
        spec(profile="gloomy")


def test_default_profile_applies_only_when_the_fleet_names_none(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"regions": {GZ: None}}))
    assert load_fleet(path, default_profile="pessimistic").open_points.image_order == "shuffled"
    path.write_text(yaml.safe_dump({"regions": {GZ: None}, "profile": "documented"}))
    assert load_fleet(path, default_profile="pessimistic").open_points == OpenPoints()


def test_env_profile_is_applied_by_the_harness_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert env_profile() is None
    assert "profile" not in with_env_profile({"regions": {}})
    monkeypatch.setenv(ENV_VAR, "pessimistic")
    assert with_env_profile({"regions": {}})["profile"] == "pessimistic"
    assert with_env_profile({"profile": "documented"})["profile"] == "documented"


def test_a_saved_state_reloads_under_its_profile(tmp_path: Path) -> None:
    core = EmulatorCore(spec(profile="pessimistic"), ManualClock())
    core.save(tmp_path / "state.json")
    loaded = EmulatorCore.load(tmp_path / "state.json", ManualClock())
    assert loaded.fleet.open_points == spec(profile="pessimistic").open_points


@pytest.mark.slow
def test_the_emulator_command_applies_the_environment(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({"regions": {GZ: None}}))
    state = tmp_path / "state.json"
    command = [str(BIN / "cvmkeeper"), "emulator", "--fleet", str(fleet), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--state-file", str(state)],
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": str(BIN), ENV_VAR: "pessimistic"},
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("listening on http://127.0.0.1:")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert json.loads(state.read_text())["fleet"]["profile"] == "pessimistic"
