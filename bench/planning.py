"""Planning benchmark: CPU time of ``plan_region`` over 10 000 images of 2 000 instances.

The planner is pure, so its cost is CPU alone: one region with ``--instances`` instances,
each holding ``--images`` managed images (hourly slots, named, tagged and described as
cvmkeeper makes them) plus a few unmanaged ones, one tag-targeted policy with
``keep_last: 3`` and ``keep_daily: 7``, and the next slot due for every instance. Prints the
CPU seconds (``time.process_time``) of the first call, the best and the median of
``--repeat`` calls; the median is what is held to the target of 0.5 s (the best of a few
runs flatters a loaded machine, the median is what a run of the daemon costs).

    .venv/bin/python bench/planning.py [--instances 2000] [--images 5] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from benchlib import BENCH_TAG, machine, verdict
from cvmkeeper.config import parse_policy_text
from cvmkeeper.core.inventory import Image, ImageState, Instance, Inventory
from cvmkeeper.core.naming import image_description, image_name, image_tags
from cvmkeeper.core.plan import Plan
from cvmkeeper.core.planner import plan_region

REGION = "ap-guangzhou"
POLICY_YAML = f"""
name: bench
regions: [{REGION}]
targets: {{tags: {{bench: {BENCH_TAG["bench"]}}}}}
schedules: [{{every: 1h}}]
retention: {{keep_last: 3, keep_daily: 7}}
"""
UNMANAGED = 10
TARGET_SECONDS = 0.5


def build_inventory(instances: int, per_instance: int, slot: datetime) -> Inventory:
    """One region: ``instances`` instances with ``per_instance`` managed images each."""
    found: list[Instance] = []
    images: list[Image] = []
    for n in range(instances):
        iid = f"ins-p{n:07d}"
        found.append(Instance(iid, f"web-{n}", "RUNNING", REGION, tags=dict(BENCH_TAG)))
        for k in range(1, per_instance + 1):
            old = slot - timedelta(hours=k)
            images.append(
                Image(
                    image_id=f"img-p{n:05d}{k:02d}",
                    name=image_name(iid, old),
                    state=ImageState.NORMAL,
                    created_time=old,
                    region=REGION,
                    description=image_description(("bench",), old),
                    tags=image_tags(("bench",), iid, old),
                )
            )
    images += [
        Image(f"img-hand{n:04d}", f"golden-{n}", ImageState.NORMAL, slot, REGION)
        for n in range(UNMANAGED)
    ]
    quota = len(images) + instances + 100
    return Inventory(REGION, quota, tuple(images), tuple(found))


def main() -> int:
    """Build the inventory, plan it ``--repeat`` times, print the CPU seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2000, help="instances (2000)")
    parser.add_argument("--images", type=int, default=5, help="managed images each (5)")
    parser.add_argument("--repeat", type=int, default=5, help="plans to time (5)")
    args = parser.parse_args()
    slot = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    policy = parse_policy_text(POLICY_YAML, "<bench policy>")
    inventory = build_inventory(args.instances, args.images, slot)
    due = {"bench": slot}
    now = slot + timedelta(minutes=1)
    times: list[float] = []
    plan: Plan | None = None
    for _ in range(max(1, args.repeat)):
        start = time.process_time()
        plan = plan_region(inventory, [policy], due, now)
        times.append(time.process_time() - start)
    assert plan is not None
    deletes = sum(len(d.targets) for d in plan.deletes())
    print(f"machine: {machine()}")
    print(
        f"planning: {len(inventory.images)} images ({args.images} managed per instance + "
        f"{UNMANAGED} unmanaged) across {args.instances} instances: {len(plan.creates)} "
        f"creates, {deletes} deletes planned"
    )
    median = statistics.median(times)
    print(
        f"planning CPU: first {times[0]:.3f} s, best {min(times):.3f} s, median "
        f"{median:.3f} s of {len(times)} (target: median < {TARGET_SECONDS} s: "
        f"{verdict(median < TARGET_SECONDS)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
