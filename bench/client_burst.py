"""Burst benchmark: does the client's rate limiter run at the documented limits without bouncing?

Starts the emulator on 127.0.0.1 with its default rate limits (CreateImage 10/s,
DescribeImages 40/s per region), then fires a burst of calls of each action from several
threads through one ``CloudClient`` (the real SDK over HTTP) in one region, and prints the
calls per second achieved against the limit and the ``RequestLimitExceeded`` answers the
emulator gave (read from ``/_emulator/state``). The goal: within 10% of the limit, and none.

    .venv/bin/python bench/client_burst.py [--calls 200] [--threads 8]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchlib import emulator_state
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.credentials import Credentials
from cvmkeeper.cloud.models import CreateImageRequest
from cvmkeeper.cloud.ratelimit import DEFAULT_RATES
from cvmkeeper.cloud.transport import EndpointConfig
from cvmkeeper.emulator.server import running_emulator

REGION = "ap-guangzhou"


def fleet(calls: int) -> dict[str, Any]:
    """One region with an instance per create and room for every image; default limits."""
    return {
        "timing": {"create_seconds": 0.5},
        "regions": {
            REGION: {
                "quota": calls + 10,
                "instances": [{"id": f"ins-{n:05d}"} for n in range(calls)],
            }
        },
    }


def burst(
    name: str, calls: int, threads: int, one_call: Callable[[int], object], url: str, *, token: str
) -> bool:
    """Run ``calls`` calls on ``threads`` threads; print rate and throttling; True if good."""
    before = emulator_state(url, token)["errors"].get("RequestLimitExceeded", 0)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one_call, range(calls)))
    elapsed = time.monotonic() - start
    throttled = emulator_state(url, token)["errors"].get("RequestLimitExceeded", 0) - before
    limit = DEFAULT_RATES[name]
    # n calls spaced at rate r span (n - 1) / r seconds: measure the rate the same way
    achieved = (calls - 1) / elapsed
    good = achieved >= 0.9 * limit and throttled == 0
    print(
        f"{name:15} {calls:4d} calls in {elapsed:6.2f}s = {achieved:5.1f}/s "
        f"(limit {limit:g}/s, {100 * achieved / limit:5.1f}%), "
        f"RequestLimitExceeded answers: {throttled}  {'OK' if good else 'MISSED GOAL'}"
    )
    return good


def main() -> int:
    """Run both bursts; exit 0 when both meet the goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per action (200)")
    parser.add_argument("--threads", type=int, default=8, help="client threads (8)")
    args = parser.parse_args()
    with running_emulator(fleet(args.calls)) as emu:
        creds = Credentials(emu.secret_id, emu.secret_key, source="emulator")
        client = CloudClient.over_http(creds, EndpointConfig(emu.endpoint, "http", 10))
        ok = burst(
            "CreateImage",
            args.calls,
            args.threads,
            lambda n: client.create_image(
                REGION, CreateImageRequest(f"burst-{n:05d}", f"ins-{n:05d}")
            ),
            emu.url,
            token=emu.control_token,
        )
        # one DescribeImages call each: poll one image by id (as the executor polls)
        ok &= burst(
            "DescribeImages",
            args.calls,
            args.threads,
            lambda n: client.get_images(REGION, [f"img-of-burst-{n}"]),
            emu.url,
            token=emu.control_token,
        )
        attempts = dict(client.stats.attempts)
        print(f"client attempts: {attempts}, client-side errors: {dict(client.stats.errors)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
