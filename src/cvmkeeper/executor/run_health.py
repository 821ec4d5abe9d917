"""After each run: freshness and quota warnings, from what the run already read.

``check_run_health`` is called once by ``executor.runner.run_once`` at the end of every
run, scheduled (daemon) or manual (``cvmkeeper run``). It needs no extra API call: it
takes the inventory each region's run read first and applies what the run changed (the
images it made, with their final state, and the images it deleted), which gives what the
region holds after the run. On that it runs the pure ``core.health.assess_region`` and has
``alerting.health_alerts`` send one warning per stale instance and one per region short of
quota, leaving out what the run itself already alerted.

Copy destinations: from the inventories the copy phase read last (destination and source
regions, with the run's copies applied) it warns once per copy set whose newest copy is
stale (``copy_freshness``; a DR copy falling behind is worth knowing even while the
source is fresh), unless the run already alerted that copy, its policy failed, or its
source instance is itself stale (that warning names the cause).

An observer (the Prometheus metrics of the daemon) is passed explicitly (``observe``, from
``run_once``) and receives a :class:`RunHealth` after the run; there is no process-wide
observer list. Nothing here ever raises into the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from cvmkeeper.alerting.alerter import Alerter
from cvmkeeper.alerting.health_alerts import alert_health, alert_stale_copies
from cvmkeeper.config import Setup
from cvmkeeper.core.health import (
    HealthSettings,
    RegionHealth,
    assess_region,
    inventory_after,
)
from cvmkeeper.core.inventory import Image, ImageState, Inventory
from cvmkeeper.core.naming import image_description, image_tags
from cvmkeeper.core.plan import DeleteKind

if TYPE_CHECKING:
    from cvmkeeper.executor.report import RunReport

__all__ = [
    "RunHealth",
    "RunObserver",
    "already_alerted",
    "check_run_health",
    "health_settings",
]

log = logging.getLogger(__name__)

_DELETED = frozenset({"deleted", "already_gone"})


@dataclass(frozen=True)
class RunHealth:
    """One finished run and the health of every region it covered, for observers."""

    report: RunReport
    regions: tuple[RegionHealth, ...]


#: Called with a :class:`RunHealth` after a run (the metrics exporter's ``observe``).
RunObserver = Callable[[RunHealth], None]


def health_settings(setup: Setup) -> HealthSettings:
    """The freshness factor and quota threshold of the daemon config (``sentry:``)."""
    sentry = setup.config.sentry
    return HealthSettings(
        freshness_factor=sentry.freshness_factor, quota_free_warning=sentry.quota_free_warning
    )


def _images_after(pre: Inventory, report: RunReport) -> Inventory:
    """What ``pre``'s region holds after the run described by ``report``."""
    by_id = {image.image_id: image for image in pre.images}
    touched: list[Image] = []
    for outcome in (*report.outcomes, *report.copies):  # images made, copies in their region
        if outcome.region != pre.region or not outcome.image_id or not outcome.image_state:
            continue
        state = ImageState.parse(outcome.image_state)
        known = by_id.get(outcome.image_id)
        if known is not None:
            touched.append(replace(known, state=state))
            continue
        touched.append(
            Image(
                image_id=outcome.image_id,
                name=outcome.image_name,
                state=state,
                created_time=outcome.slot,
                region=pre.region,
                description=image_description(outcome.policies, outcome.slot),
                tags=image_tags(outcome.policies, outcome.instance_id, outcome.slot),
            )
        )
    removed = [
        d.image_id for d in report.deleted if d.region == pre.region and d.status in _DELETED
    ]
    return inventory_after(pre, touched, removed)


def check_run_health(
    setup: Setup,
    report: RunReport,
    inventories: Mapping[str, Inventory],
    alerter: Alerter,
    now: datetime,
    *,
    policy_names: Sequence[str] | None = None,
    copy_reads: Mapping[str, tuple[Inventory, Mapping[str, Inventory]]] | None = None,
    observe: RunObserver | None = None,
) -> tuple[RegionHealth, ...]:
    """Assess every region the run read, warn about stale instances and low quota, tell
    ``observe``, and return the assessments. A dry run is neither alerted nor observed.

    ``copy_reads`` (destination -> its inventory and its source regions' inventories, as
    the copy phase read them last) adds one warning per stale copy set.

    ``policy_names`` limits the freshness check to the instances of those policies (a
    scheduled run of one policy does not re-report another's); ``None`` checks all.
    Never raises: a failure here is logged and the run's own result stands.
    """
    if report.dry_run:
        return ()
    try:
        policies = [p for p in setup.policies if not policy_names or p.name in policy_names]
        settings = health_settings(setup)
        healths = tuple(
            assess_region(
                _images_after(inventory, report),
                policies,
                now,
                settings,
                setup.config.name_format,
            )
            for _region, inventory in sorted(inventories.items())
        )
        skip = already_alerted(report) | _failed_policy_instances(report, healths)
        alert_health(alerter, healths, skip)
        copy_healths = tuple(
            assess_region(
                _images_after(inventory, report),
                policies,
                now,
                settings,
                setup.config.name_format,
                sources={r: _images_after(i, report) for r, i in sources.items()},
            )
            for _destination, (inventory, sources) in sorted((copy_reads or {}).items())
        )
        alert_stale_copies(alerter, copy_healths, _copies_not_to_warn(report, healths))
    except Exception:
        log.exception("the freshness and quota check after the run failed")
        return ()
    if observe is not None:
        try:
            observe(RunHealth(report, healths))
        except Exception:
            log.exception("a run observer failed")
    return healths


def already_alerted(report: RunReport) -> set[tuple[str, str | None]]:
    """What the run itself already alerted, as (region, instance) pairs: every instance
    whose slot failed, and (region, ``None``) for every region where the run evicted or
    skipped for quota. Warning again about the same cause would only add noise (a policy
    whose run failed as a whole is handled by ``check_run_health`` too)."""
    seen: set[tuple[str, str | None]] = {
        (o.region, o.instance_id) for o in report.outcomes if not o.ok
    }
    for region, plans in report.plans.items():
        for plan in plans:
            if plan.skips or any(d.kind is DeleteKind.EVICT for d in plan.deletes()):
                seen.add((region, None))
    return seen


def _failed_policy_instances(
    report: RunReport, healths: Iterable[RegionHealth]
) -> set[tuple[str, str | None]]:
    """Instances of a policy the run already alerted an error for (its check-in failed)."""
    return {
        (item.region, item.instance_id)
        for health in healths
        for item in health.instances
        if set(item.policies) & report.failed_policies
    }


def _copies_not_to_warn(report: RunReport, healths: Iterable[RegionHealth]) -> set[tuple[str, str]]:
    """(destination, instance) pairs, and ("*", instance) for instances whose own backup is
    stale, whose copies are not warned about: the run or the source warning said it."""
    quiet = {
        (c.region, c.instance_id)
        for c in report.copies
        if not c.ok or set(c.policies) & report.failed_policies
    }
    quiet |= {("*", o.instance_id) for o in report.outcomes if not o.ok}
    quiet |= {("*", item.instance_id) for h in healths for item in h.stale}
    quiet |= {
        ("*", item.instance_id)
        for h in healths
        for item in h.instances
        if set(item.policies) & report.failed_policies
    }
    return quiet
