"""The in-process transport copies requests and answers exactly as a JSON round trip would.

It skips the text for speed, so these tests hold it to ``json.loads(json.dumps(x))`` over
generated values, and show that a caller and the emulator core share no state through it.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvmkeeper.emulator.clock import ManualClock
from cvmkeeper.emulator.core import EmulatorCore
from cvmkeeper.emulator.fleet import FleetSpec
from cvmkeeper.emulator.transport import InProcessTransport, _wire_copy

REGION = "ap-guangzhou"

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
keys = st.text(max_size=6) | st.integers(-3, 3) | st.booleans() | st.none() | st.floats(-2, 2)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=20,
)


def same(left: Any, right: Any) -> bool:
    """Equal, with NaN equal to NaN and types compared exactly (1 is not True here)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float) and math.isnan(left):
        return math.isnan(right)
    if isinstance(left, dict):
        return list(left) == list(right) and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    return bool(left == right)


@given(values)
def test_the_copy_is_what_json_gives(value: Any) -> None:
    assert same(_wire_copy(value), json.loads(json.dumps(value)))


def test_what_json_cannot_carry_is_refused_as_json_refuses_it() -> None:
    with pytest.raises(TypeError):
        _wire_copy({"Filters": [{"Values": [datetime(2026, 1, 1, tzinfo=UTC)]}]})
    with pytest.raises(TypeError):
        _wire_copy({("a", "b"): 1})


def test_caller_and_core_share_nothing() -> None:
    core = EmulatorCore(
        FleetSpec.from_mapping(
            {"seed": 1, "regions": {REGION: {"quota": 10, "instances": [{"id": "ins-aaaaaaaa"}]}}}
        ),
        ManualClock(),
    )
    transport = InProcessTransport(core)
    params: dict[str, Any] = {
        "InstanceId": "ins-aaaaaaaa",
        "ImageName": "one",
        "TagSpecification": ({"ResourceType": "image", "Tags": ({"Key": "k", "Value": "v"},)},),
    }
    created = transport.call(REGION, "CreateImage", params)
    params["TagSpecification"][0]["Tags"][0]["Value"] = "changed afterwards"
    params["ImageName"] = "changed afterwards"

    answer = transport.call(REGION, "DescribeImages", {"ImageIds": [created["ImageId"]]})
    image = answer["ImageSet"][0]
    assert image["ImageName"] == "one"
    assert image["Tags"] == [{"Key": "k", "Value": "v"}]  # the tuples arrived as lists
    recorded = core.state()["history"][-1]["params"]
    assert recorded["ImageName"] == "one"
    assert recorded["TagSpecification"][0]["Tags"] == [{"Key": "k", "Value": "v"}]

    image["ImageName"] = "edited by the caller"
    image["Tags"].append({"Key": "x", "Value": "y"})
    again = transport.call(REGION, "DescribeImages", {"ImageIds": [created["ImageId"]]})
    assert again["ImageSet"][0]["ImageName"] == "one"
    assert again["ImageSet"][0]["Tags"] == [{"Key": "k", "Value": "v"}]
