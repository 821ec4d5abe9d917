"""Run the cloud client against the emulator, over real HTTP with the real SDK or in-process.

``make_cloud(fleet)`` gives a :class:`Cloud`: a ``CloudClient`` plus the emulator core behind
it. Over HTTP the emulator runs on 127.0.0.1 with the wall clock; in-process it runs on a
``ManualClock`` that the client's sleeps advance, so rate limits, backoffs and lifecycles
behave the same without waiting.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.credentials import Credentials
from cvmkeeper.cloud.ratelimit import RateLimitConfig, RateLimiter
from cvmkeeper.cloud.retry import RetryPolicy
from cvmkeeper.cloud.transport import EndpointConfig
from cvmkeeper.emulator.clock import ManualClock
from cvmkeeper.emulator.core import EmulatorCore
from cvmkeeper.emulator.fleet import FleetSpec
from cvmkeeper.emulator.server import running_emulator
from cvmkeeper.emulator.transport import in_process_client

#: Quick backoffs for tests; the shape (jitter, caps, bounds) is the production one.
TEST_POLICY = RetryPolicy(
    max_attempts=10, base_seconds=0.02, cap_seconds=0.4, deadline_seconds=30, max_internal_errors=5
)

TRANSPORTS = ["http", "inprocess"]


@dataclass
class Cloud:
    """A client and the emulator it talks to."""

    client: CloudClient
    core: EmulatorCore
    transport: str
    sleep: Callable[[float], None]
    endpoint: str = ""
    secret_id: str = ""
    secret_key: str = ""

    def state(self) -> dict[str, Any]:
        return self.core.state()

    def images_named(self, region: str, name: str) -> list[dict[str, Any]]:
        return [i for i in self.state()["regions"][region]["images"] if i["ImageName"] == name]

    def wait_until(self, check: Callable[[], bool], *, seconds: float = 20.0) -> None:
        """Poll ``check`` with bounded count and (emulated or real) time."""
        for _ in range(int(seconds / 0.1)):
            if check():
                return
            self.sleep(0.1)
        raise AssertionError("condition not reached in time")


MakeCloud = Callable[..., Cloud]


def fleet_mapping(**overrides: Any) -> dict[str, Any]:
    """A small fleet: two regions, a few instances, one golden image."""
    fleet: dict[str, Any] = {
        "credentials": {"secret_id": "AKIDTESTCLIENT", "secret_key": "client-test-key"},
        "timing": {
            "create_seconds": 0.3,
            "stop_seconds": 0.2,
            "start_seconds": 0.2,
            "sync_seconds": 0.3,
        },
        "seed": 3,
        "regions": {
            "ap-guangzhou": {
                "quota": 50,
                "instances": [
                    {
                        "id": f"ins-{n:04d}",
                        "name": f"web-{n}",
                        "tags": {"backup": "daily" if n % 2 else "weekly"},
                    }
                    for n in range(6)
                ]
                + [
                    {"id": "ins-stopped", "state": "STOPPED"},
                    {"id": "ins-odd", "not_supported": True},
                ],
                "images": [{"id": "img-golden01", "name": "golden-base"}],
            },
            "ap-shanghai": {"quota": 50},
        },
    }
    fleet.update(overrides)
    return fleet


@pytest.fixture(params=TRANSPORTS)
def make_cloud(request: pytest.FixtureRequest) -> Iterator[MakeCloud]:
    """Factory: ``make_cloud(fleet=None, *, secret_key=None, limiter=None, policy=None)``."""
    stack = ExitStack()
    transport: str = request.param

    def make(
        fleet: Mapping[str, Any] | None = None,
        *,
        secret_key: str | None = None,
        limiter_config: RateLimitConfig | None = None,
        policy: RetryPolicy = TEST_POLICY,
    ) -> Cloud:
        spec = FleetSpec.from_mapping(fleet or fleet_mapping())
        rng = random.Random(11)
        if transport == "http":
            emu = stack.enter_context(running_emulator(spec))
            creds = Credentials(emu.secret_id, secret_key or emu.secret_key, source="test")
            client = CloudClient.over_http(
                creds,
                EndpointConfig(emu.endpoint, "http", 10),
                retry_policy=policy,
                limiter=RateLimiter(limiter_config),
                rng=rng,
            )
            import time

            return Cloud(
                client, emu.core, transport, time.sleep, emu.endpoint, emu.secret_id, emu.secret_key
            )
        clock = ManualClock()
        core = EmulatorCore(spec, clock)

        def now() -> float:
            return clock.now().timestamp()

        def sleep(seconds: float) -> None:
            clock.advance(seconds)

        client = in_process_client(
            core,
            retry_policy=policy,
            sleep=sleep,
            clock=now,
            rng=rng,
            limiter=RateLimiter(limiter_config, clock=now, sleep=sleep),
        )
        return Cloud(client, core, transport, sleep)

    yield make
    stack.close()
