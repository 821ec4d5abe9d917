"""The executor: carries plans out through the cloud client, region by region.

Public API (``cvmkeeper.executor.runner``): ``run_once(setup, client, alerter, now=...)``
returns a ``RunReport`` of ``Outcome`` values; ``RegionLocks`` keeps two runs of one
process off the same region; ``due_slots`` is the pure catch-up selection (``core.due``).
``read_inventory`` (``executor.region``) reads one region for ``plan`` and ``images``.
"""

from cvmkeeper.executor.region import read_inventory
from cvmkeeper.executor.report import DeleteOutcome, Outcome, RunReport, report_to_json
from cvmkeeper.executor.runner import (
    RegionLocks,
    UnknownPolicyError,
    due_slots,
    run_once,
    run_regions,
)

__all__ = [
    "DeleteOutcome",
    "Outcome",
    "RegionLocks",
    "RunReport",
    "UnknownPolicyError",
    "due_slots",
    "read_inventory",
    "report_to_json",
    "run_once",
    "run_regions",
]
