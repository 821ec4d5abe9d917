"""``load_setup(partial=True)``: bad policy files beside good ones (issue #19)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvmkeeper.config import ConfigError, load_setup, with_stand_ins

GOOD = (
    "name: {name}\nregions: [ap-guangzhou]\ntargets: {{instance_ids: [ins-aaaaaaaa]}}\n"
    "schedules: [{{every: 1h}}]\nretention: {{keep_last: {keep}}}\n"
)
TYPO = "name: weekly\nschedules: [{every: 1h}]\nretention: {keep_dayly: 7}\n"


def setup_dir(tmp_path: Path, files: dict[str, str], config: str = "") -> Path:
    (tmp_path / "policies").mkdir(exist_ok=True)
    for old in (tmp_path / "policies").iterdir():
        old.unlink()
    for name, text in files.items():
        (tmp_path / "policies" / name).write_text(text)
    path = tmp_path / "cvmkeeper.yaml"
    path.write_text(config or "policies_dir: policies\nregions: [ap-guangzhou]\n")
    return path


def test_good_policies_load_and_each_bad_file_is_listed_with_its_problems(
    tmp_path: Path,
) -> None:
    path = setup_dir(
        tmp_path,
        {
            "a.yaml": GOOD.format(name="hourly", keep=2),
            "b.yaml": TYPO,
            "c.yaml": "{{{",
            "d.yaml": GOOD.format(name="hourly", keep=3),  # a name used twice
            "e.yaml": "(",  # a scalar, not a mapping
        },
    )
    setup = load_setup(path, partial=True)
    assert [p.name for p in setup.policies] == ["hourly"]
    broken = {Path(b.file).name: b for b in setup.broken}
    assert sorted(broken) == ["b.yaml", "c.yaml", "d.yaml", "e.yaml"]
    assert broken["b.yaml"].name == "weekly"
    assert "keep_dayly" in str(broken["b.yaml"].problems)
    assert broken["c.yaml"].name is None
    assert "already used" in broken["d.yaml"].summary()
    assert setup.holding == setup.broken
    with pytest.raises(ConfigError) as strict:  # validate and the other commands: strict
        load_setup(path)
    files = {Path(p.file).name for p in strict.value.problems}
    assert files == {"b.yaml", "c.yaml", "d.yaml", "e.yaml"}


def test_a_bad_daemon_config_or_no_usable_policy_still_raises(tmp_path: Path) -> None:
    path = setup_dir(tmp_path, {"a.yaml": GOOD.format(name="hourly", keep=2)}, "regions: 7\n")
    with pytest.raises(ConfigError):
        load_setup(path, partial=True)
    path = setup_dir(tmp_path, {"b.yaml": TYPO})
    with pytest.raises(ConfigError) as error:
        load_setup(path, partial=True)
    assert "keep_dayly" in str(error.value)


def test_a_reload_keeps_the_old_version_of_a_policy_whose_file_became_bad(
    tmp_path: Path,
) -> None:
    files = {"a.yaml": GOOD.format(name="hourly", keep=2), "b.yaml": GOOD.format(name="w", keep=5)}
    path = setup_dir(tmp_path, files)
    before = load_setup(path, partial=True)
    setup_dir(tmp_path, {**files, "b.yaml": GOOD.format(name="w", keep="x")})
    after = with_stand_ins(load_setup(path, partial=True), before)
    assert [p.name for p in after.policies] == ["hourly", "w"]
    assert after.policy("w") == before.policy("w")
    [broken] = after.broken
    assert broken.stand_in and broken.name == "w" and after.holding == ()
    # a file that never loaded before has no old version: its images are held
    setup_dir(tmp_path, {**files, "c.yaml": TYPO})
    again = with_stand_ins(load_setup(path, partial=True), before)
    assert [b.stand_in for b in again.broken] == [False] and again.holding == again.broken


def test_no_usable_policy_loads_when_policies_are_not_needed(tmp_path: Path) -> None:
    """``restore`` needs the daemon config only (issue #19): every policy file bad still
    loads with ``need_policies=False``, the files in ``broken`` with their declared name."""
    path = setup_dir(tmp_path, {"b.yaml": TYPO})
    setup = load_setup(path, partial=True, need_policies=False)
    assert setup.policies == ()
    [broken] = setup.broken
    assert broken.name == "weekly" and "keep_dayly" in str(broken.problems)
    with pytest.raises(ConfigError):  # a bad daemon config stays fatal
        load_setup(setup_dir(tmp_path, {"b.yaml": TYPO}, "regions: 7\n"), need_policies=False)
