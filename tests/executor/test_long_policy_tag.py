"""Five policies of long names on one instance, over HTTP with the emulator's tag rules.

Their names join to more than Tencent's 255 characters, which the emulator (as the Tag
service) refuses in CreateImage's ``TagSpecification``: before, every create of the
instance failed with ``InvalidParameterValue.TagValueLengthExceeded``. Now the
``cvmkeeper:policy`` value keeps the names that fit and counts the rest (``+2``), the
images are made, recognised as cvmkeeper's and rotated.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.core.naming import MAX_TAG_VALUE_LENGTH, TAG_POLICY
from cvmkeeper.emulator.invariants import check_invariants, format_violations
from cvmkeeper.executor import RunReport, run_once
from executor.world import T0, A, World, fleet, policy, world

NAMES = [f"{letter}{'-long-policy-name' * 3}".ljust(63, "x") for letter in "abcde"]


def run(w: World, n: int) -> RunReport:
    return run_once(w.setup(), w.client(), RecordingAlerter(), now=T0 + timedelta(hours=n))


def policy_tag(image: dict[str, Any]) -> str:
    return next(t["Value"] for t in image.get("Tags") or [] if t["Key"] == TAG_POLICY)


def test_many_long_policy_names_fit_the_tag_and_rotate(tmp_path: Path) -> None:
    documents = [policy(name, ids=[A], keep_last=1) for name in NAMES]
    with world(tmp_path, fleet(instances=[{"id": A}]), *documents) as w:
        initial = w.state()
        report = run(w, 0)
        assert report.ok, report.errors
        assert {o.status for o in report.outcomes} == {"created"}
        [image] = w.images()
        value = policy_tag(image)
        assert len(value) <= MAX_TAG_VALUE_LENGTH
        assert value == ",".join([*NAMES[:3], "+2"])
        for n in (1, 2):
            report = run(w, n)
            assert report.ok, report.errors
        names = {i["ImageName"] for i in w.images() if i["ImageState"] != "DELETING"}
        assert len(names) == 1  # keep_last 1: the older ones were rotated out
        assert not [m for m in report.warnings if "no longer exists" in m]
        violations = check_invariants(w.state(), initial)
        assert violations == [], format_violations(violations)
