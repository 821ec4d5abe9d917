"""Every ``RequestLimitExceeded`` variant is throttling, end to end (issue #18).

Tencent answers ``RequestLimitExceeded`` and its variants ``.UinLimitExceeded`` (per
account), ``.GlobalRegionUinLimitExceeded`` and ``.IPLimitExceeded`` (Cloud API 3.0 common
error codes). Whichever the emulator answers, over the real SDK (HTTP) and in process, the
client backs off, slows that action's bucket and the call succeeds on its retry.
"""

from __future__ import annotations

from typing import Any

import pytest

from cvmkeeper.emulator.core import ApiError

from .conftest import MakeCloud, fleet_mapping

GZ = "ap-guangzhou"
VARIANTS = (
    "RequestLimitExceeded",
    "RequestLimitExceeded.UinLimitExceeded",
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
    "RequestLimitExceeded.IPLimitExceeded",
)


@pytest.mark.parametrize("code", VARIANTS)
def test_each_variant_is_retried_and_slows_the_bucket(make_cloud: MakeCloud, code: str) -> None:
    cloud = make_cloud()
    original = cloud.core.call
    answered: list[str] = []

    def throttle_once(action: str, region: str | None, params: Any, **kw: Any) -> Any:
        if action == "DescribeImageQuota" and not answered:
            answered.append(code)
            raise ApiError(code, "Your requests exceed the limit.")
        return original(action, region, params, **kw)

    cloud.core.call = throttle_once  # type: ignore[method-assign]
    before = cloud.client.limiter.current_rate(GZ, "DescribeImageQuota")
    assert cloud.client.image_quota(GZ) == fleet_mapping()["regions"][GZ]["quota"]
    assert answered == [code]
    assert cloud.client.stats.attempts["DescribeImageQuota"] == 2
    assert cloud.client.limiter.current_rate(GZ, "DescribeImageQuota") < before
