"""Planning inside a run: ``plan_region`` on what was just read, its warnings alerted once.

A plan's warnings carry their kind and policies (``core.plan.PlanWarning``), so each is
alerted with the right ``action`` and ``policy`` tags without reading its text; one that
names no policy is tagged with the policies the run is for. The same warning in a later
plan of the same region run (after the wait, after a re-plan) is not alerted again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from cvmkeeper.core.due import DueSlots
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.plan import Plan
from cvmkeeper.core.planner import plan_region
from cvmkeeper.executor.region import RegionRun


class RunPlanner:
    """Plans one region's run; ``run_policies()`` names the policies the run is for."""

    def __init__(self, run: RegionRun, run_policies: Callable[[], Sequence[str]]) -> None:
        self._run = run
        self._run_policies = run_policies
        self._warned: set[str] = set()

    def plan(
        self,
        inventory: Inventory,
        due: DueSlots,
        *,
        sources: Mapping[str, Inventory] | None = None,
        make_copies: bool = True,
    ) -> Plan | None:
        """The plan (kept in the result), or ``None`` after alerting why there is none."""
        run = self._run
        options = run.options
        try:
            plan = plan_region(
                inventory,
                options.setup.policies,
                due,
                options.now,
                options.planner_settings,
                sources=sources,
                make_copies=make_copies,
            )
        except Exception as error:  # PlanInvariantError is a bug: nothing of it is run
            run.error(self._run_policies(), "plan", f"planning failed: {error}", error)
            return None
        run.result.plans.append(plan)
        for notice in plan.notices:
            if notice.message not in self._warned:
                self._warned.add(notice.message)
                run.warn(
                    list(notice.policies) or self._run_policies(),
                    notice.kind.value,
                    notice.message,
                    instance=notice.instance_id,
                )
        return plan
