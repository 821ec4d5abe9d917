"""Part 5: a simulated year on virtual time, checked after every run and against simulate.

The in-process emulator core on a ``ManualClock``, the real planner and executor
(``run_once``, fired per policy and slot as the daemon's scheduler does), three policies
(hourly in Europe/Berlin, daily GFS at 02:30 Europe/Berlin, weekly at 01:30 New York with
copies to a second region), two regions with quota 10 and unmanaged images, for 366 days
from 11 February 2026: both DST changes of both zones and New Year inside ISO week 2026-W53.

With faults (every action failing at 5% in all, ``CREATEFAILED`` at 5%): after every run
the invariant checker finds nothing in what the run did, every fired slot has its
``NORMAL`` image or an error alert, and at the end (and over the whole year's history at
once) the checker is clean. A slot whose image failed is alerted and not made again (the
daemon catches up only on start and reload), so the faulty year's kept set is what
retention keeps of the slots that really became ``NORMAL``; where that differs from
``simulate``'s fault-free prediction, every missing slot is one that failed and was
alerted. The fault-free year's kept set equals ``cvmkeeper simulate --json``'s, image for
image, in both regions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cvmkeeper.cli import cli
from cvmkeeper.core.inventory import ImageState
from cvmkeeper.core.naming import image_name
from cvmkeeper.core.ownership import classify_image
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.retention import Backup, RuleSet, decide
from cvmkeeper.core.simulation import simulate
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from reliability import figures
from reliability.year import DEST, YEAR_DAYS, YEAR_START, YearRun, YearWorld

pytestmark = pytest.mark.slow

FAULT_RATE = 0.05
SEEDS = range(figures.sized(1, 3))
YEAR_END = YEAR_START + timedelta(days=YEAR_DAYS)
#: virtual seconds past the last run before the end check: longer than any lag switch of
#: the profiles (at most 1.2 s in ``pessimistic``) and than the week's own (20 s)
END_SETTLE_SECONDS = 60

#: (region, instance) -> slots kept
KeptSets = dict[tuple[str, str], set[datetime]]


class RunChecker:
    """Checks each run of the year as it ends: the rules over what the run did, and the
    fired slot's image (``NORMAL``, or an error alert for its policy)."""

    def __init__(self, world: YearWorld) -> None:
        self.world = world
        self.previous = world.core.state()
        self.seq = 0
        self.slots_checked = 0
        self.failed: set[tuple[str, str, datetime]] = set()  # (region, instance, slot)
        self.alerts = 0

    def __call__(self, run: YearRun) -> None:
        state = self.world.core.state(history_since=self.seq)
        # the regions this run wrote to (every write names its region, a copy its
        # destination): the replay of the others would find nothing new
        touched = {str(e["region"]) for e in state["history"]} | {
            str(c["Region"]) for e in state["history"] for c in e.get("copies") or []
        }
        # no instance of the year has a disk that cannot be imaged: none may be left out
        violations = check_invariants(
            only(state, touched), only(self.previous, touched), disk_alerts=set()
        )
        assert violations == [], (
            f"after {run.fire.policy} {run.fire.slot:%Y-%m-%dT%H:%MZ}:\n"
            f"{format_violations(violations)}"
        )
        policy = self.world.setup.policy(run.fire.policy)
        assert policy is not None
        # a region's one alert for a cause names its policies in a tag (executor.missed)
        errors = [
            f
            for f in run.alerter.errors
            if f.policy == policy.name or policy.name in f.tags.get("policies", "").split(",")
        ]
        self.alerts += len(run.alerter.errors)
        for region, instance in slot_places(policy):
            name = image_name(instance, run.fire.slot, self.world.setup.config.name_format)
            states = {i["ImageName"]: i["ImageState"] for i in state["regions"][region]["images"]}
            self.slots_checked += 1
            if states.get(name) == "NORMAL":
                continue
            assert errors, (
                f"{run.fire.policy} {run.fire.slot:%Y-%m-%dT%H:%MZ}: {name} in "
                f"{region} is {states.get(name, 'missing')} and nothing was alerted"
            )
            self.failed.add((region, instance, run.fire.slot))
        self.previous = state
        if state["history"]:
            self.seq = int(state["history"][-1]["seq"])


def only(state: Mapping[str, Any], regions: set[str]) -> dict[str, Any]:
    """``state`` with only ``regions``."""
    return {
        **state,
        "regions": {name: region for name, region in state["regions"].items() if name in regions},
    }


def slot_places(policy: Policy) -> list[tuple[str, str]]:
    """Where a slot of ``policy`` puts an image: (region, instance) for its instances in its
    regions and in its copy regions."""
    instances = list(policy.targets.instance_ids)
    regions = [*policy.regions, *(rule.region for rule in policy.copies)]
    return [(region, instance) for region in regions for instance in instances]


def kept_sets(world: YearWorld) -> KeptSets:
    """The managed images each region holds now, as slots per (region, instance)."""
    kept: KeptSets = {}
    fmt = world.setup.config.name_format
    for region in world.setup.config.regions:
        for image in world.client.list_images(region):
            owned = classify_image(image, fmt)
            if owned is not None:
                kept.setdefault((region, owned.instance_id), set()).add(owned.slot)
    return kept


def predicted(world: YearWorld) -> KeptSets:
    """What ``simulate`` (the pure core) says each policy keeps at the end of the year."""
    expected: KeptSets = {}
    for policy in world.setup.policies:
        result = simulate(policy, YEAR_START, YEAR_END)
        for instance in policy.targets.instance_ids:
            for region in policy.regions:
                expected[(region, instance)] = {k.slot for k in result.kept}
            for copy in result.copies:
                expected[(copy.region, instance)] = {k.slot for k in copy.kept}
    return expected


def retained(slots: Iterable[datetime], rules: RuleSet) -> set[datetime]:
    """What retention keeps of images made at ``slots`` (all ``NORMAL``)."""
    backups = [
        Backup(f"img-{n:06d}", slot, ImageState.NORMAL) for n, slot in enumerate(sorted(slots))
    ]
    by_id = {b.image_id: b.slot for b in backups}
    return {by_id[d.image_id] for d in decide(backups, [rules]) if d.keep}


def normal_slots(world: YearWorld, history: Iterable[Mapping[str, Any]]) -> KeptSets:
    """Every (region, instance) slot whose image became ``NORMAL`` at some point of the year,
    read from the emulator's history (creates and copies name their images)."""
    names: dict[tuple[str, str], str] = {}  # (region, image id) -> name
    made: KeptSets = {}
    for entry in history:
        params = entry.get("params") or {}
        if entry.get("action") == "CreateImage" and entry.get("result") == "ok":
            for image_id in entry.get("ImageIds") or []:
                names[(str(entry["region"]), image_id)] = str(params.get("ImageName"))
        elif entry.get("action") == "SyncImages" and entry.get("result") == "ok":
            for copy in entry.get("copies") or []:
                names[(str(copy["Region"]), str(copy["ImageId"]))] = str(params.get("ImageName"))
        elif entry.get("action") == "_transition" and entry.get("to") == "NORMAL":
            for image_id in entry.get("ImageIds") or []:
                name = names.get((str(entry["region"]), image_id))
                if name is None:
                    continue
                parsed = world.setup.config.name_format.parse(name)
                if parsed is not None:
                    made.setdefault((str(entry["region"]), parsed.instance_id), set()).add(
                        parsed.slot
                    )
    return made


def rules_for(world: YearWorld, region: str, instance: str) -> RuleSet:
    """The retention that applies to ``instance``'s images in ``region`` (main or copy)."""
    for policy in world.setup.policies:
        if instance not in policy.targets.instance_ids:
            continue
        if region in policy.regions:
            return RuleSet(policy.retention, policy.timezone, policy.name)
        rule = policy.copy_to(region)
        if rule is not None:
            return RuleSet(rule.retention, policy.timezone, policy.name)
    raise AssertionError(f"no policy keeps {instance} in {region}")


def describe(slots: Iterable[datetime]) -> str:
    """Slots as short UTC times, sorted, for assertion messages."""
    return ", ".join(f"{s:%Y-%m-%dT%H:%MZ}" for s in sorted(slots)) or "none"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_year_with_faults_breaks_no_rule_and_keeps_what_retention_says(
    tmp_path: Path, seed: int
) -> None:
    started = time.monotonic()
    world = YearWorld.build(tmp_path, seed=seed, fault_rate=FAULT_RATE)
    initial = world.core.state()
    checker = RunChecker(world)
    runs = world.run_year(YEAR_START, YEAR_END, checker)
    world.core.set_faults({})  # reading the end state is not part of the test
    # the year ends seconds after its last run: under the lag switches (pessimistic profile)
    # that run's image is still untagged and its rotated image still DELETING; the end
    # check is of what the cloud holds, so it reads it once every lag has passed (virtual
    # time; the clock jumps far past the longest lag and no run fires meanwhile)
    world.clock.advance(END_SETTLE_SECONDS)

    state = world.core.state()
    whole_year = check_invariants(state, initial, disk_alerts=set())
    assert whole_year == [], format_violations(whole_year)
    for region, ids in {
        "ap-guangzhou": ("img-gold0001", "img-gold0002"),
        DEST: ("img-gold0003",),
    }.items():
        held = {i["ImageId"] for i in state["regions"][region]["images"]}
        assert set(ids) <= held, f"unmanaged images of {region} are gone"

    kept = kept_sets(world)
    made = normal_slots(world, state["history"])
    fault_free = predicted(world)
    assert set(kept) == set(fault_free), f"instance sets {sorted(kept)} != {sorted(fault_free)}"
    for key, slots in sorted(kept.items()):
        rules = rules_for(world, *key)
        # the fold of retention over every slot is what simulate predicts without faults
        every_slot = (
            fault_free[key] | made.get(key, set()) | {f[2] for f in checker.failed if f[:2] == key}
        )
        assert retained(every_slot, rules) == fault_free[key], f"{key}: simulate disagrees"
        expected = retained(made.get(key, set()), rules)
        assert slots == expected, (
            f"seed {seed}, {key}: kept {describe(slots)}; retention over the slots that "
            f"became NORMAL keeps {describe(expected)}"
        )
        missing = fault_free[key] - slots
        failed = {f[2] for f in checker.failed if f[:2] == key}
        assert missing <= failed, (
            f"seed {seed}, {key}: simulate keeps {describe(missing)}, which did not fail"
        )

    lost = len(checker.failed)
    figures.add(
        "5",
        runs=runs,
        faults_injected=figures.count_faults(state),
        slots_checked=checker.slots_checked,
        violations=0,
        alerts=checker.alerts,
        failed_slots=lost,
        seconds=round(time.monotonic() - started),
    )


@pytest.mark.skipif(
    figures.PROFILE != "long",
    reason="a second year does not fit the short "
    "profile's minute; the faulty year compares with simulate's prediction",
)
def test_a_fault_free_year_keeps_exactly_what_simulate_predicts(tmp_path: Path) -> None:
    started = time.monotonic()
    world = YearWorld.build(tmp_path, seed=101, fault_rate=0.0)
    checker = RunChecker(world)
    runs = world.run_year(YEAR_START, YEAR_END, checker)
    assert checker.failed == set()

    kept = kept_sets(world)
    config = str(tmp_path / "cvmkeeper.yaml")
    for policy in world.setup.policies:
        result = CliRunner().invoke(
            cli,
            [
                "simulate",
                "--config",
                config,
                "--policy",
                policy.name,
                "--days",
                str(YEAR_DAYS),
                "--at",
                YEAR_START.strftime("%Y-%m-%dT%H:%MZ"),
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        document = json.loads(result.output)
        places = [(region, None) for region in policy.regions] + [
            (copy["region"], copy) for copy in document["copies"]
        ]
        for region, copy in places:
            listed = (copy or document)["kept"]
            want = {datetime.fromisoformat(k["slot"].replace("Z", "+00:00")) for k in listed}
            for instance in policy.targets.instance_ids:
                got = kept.get((region, instance), set())
                assert got == want, (
                    f"{policy.name} in {region}: the year kept {describe(got)}, "
                    f"simulate predicts {describe(want)}"
                )
    figures.add(
        "5",
        runs=runs,
        slots_checked=checker.slots_checked,
        violations=0,
        fault_free_years=1,
        seconds=round(time.monotonic() - started),
    )


#: the lag switches at their pessimistic values (seconds of virtual time): a new image
#: absent for 5 s, its tags for 20 s (longer than a run), a delete holding quota for 5 s
LAGS = {"image_visibility_seconds": 5, "tag_visibility_seconds": 20, "delete_lag_seconds": 5}
LAG_DAYS = 8  # eight days: a weekly slot with its copy, DST-free, every hourly rotation


def test_a_week_under_every_lag_breaks_no_rule_and_keeps_what_retention_says(
    tmp_path: Path,
) -> None:
    """The lags on virtual time: the emulator's clock makes them pass while the executor
    polls. Every run ends with its slot ``NORMAL`` (none reported disappeared or lost), the
    rules hold after every run, and what is kept is exactly retention over what was made."""
    world = YearWorld.build(tmp_path, seed=7, fault_rate=0.0, switches=LAGS)
    initial = world.core.state()
    checker = RunChecker(world)
    runs = world.run_year(YEAR_START, YEAR_START + timedelta(days=LAG_DAYS), checker)
    assert runs > 24 * LAG_DAYS
    assert checker.failed == set()
    state = world.core.state()
    whole = check_invariants(state, initial, disk_alerts=set())
    assert whole == [], format_violations(whole)
    made = normal_slots(world, state["history"])
    world.clock.advance(END_SETTLE_SECONDS)  # the last run's tags show: every image is whole
    for key, slots in sorted(kept_sets(world).items()):
        assert slots == retained(made.get(key, set()), rules_for(world, *key)), key
