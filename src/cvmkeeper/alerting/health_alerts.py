"""Warnings about stale backups, stale copy sets and low quota, from core health values.

The pure ``core.health.assess_region`` says which instances are stale and which regions
are short of quota; this module turns those values into log lines and alerts. It depends
on core values only (the run that computed them, ``executor.run_health``, decides what is
already alerted and passes it in as ``skip`` / ``quiet``). Warnings are fingerprinted
(policy, ``freshness``) and (``quota``, region), so a backup that stays stale is one Sentry
issue whose count grows.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

from cvmkeeper.alerting.alerter import Alerter
from cvmkeeper.alerting.events import Failure
from cvmkeeper.core.health import Freshness, RegionHealth

__all__ = [
    "COPY_FRESHNESS_ACTION",
    "FRESHNESS_ACTION",
    "QUOTA_ACTION",
    "REGION_WIDE",
    "alert_health",
    "alert_stale_copies",
]

log = logging.getLogger(__name__)

#: The ``action`` tag of freshness warnings, of stale-copy warnings, and of quota warnings.
FRESHNESS_ACTION = "freshness"
COPY_FRESHNESS_ACTION = "copy_freshness"
QUOTA_ACTION = "quota"
#: The ``policy`` tag of a quota warning: the region's quota is no single policy's.
REGION_WIDE = "cvmkeeper"


def _warn_stale(
    alerter: Alerter,
    item: Freshness,
    action: str,
    message: str,
    extra: dict[str, str],
    *,
    newest_key: str,
) -> None:
    """Log and alert one stale backup or copy set, with its allowed age and newest image."""
    log.warning("%s", message)
    extra = {"allowed_age": str(item.allowed), **extra}
    if item.newest_image_id and item.newest_slot:
        extra[newest_key] = f"{item.newest_image_name} ({item.newest_image_id})"
        extra["newest_slot"] = item.newest_slot.isoformat()
    alerter.warning(
        Failure(
            policy=item.policy,
            action=action,
            message=message,
            level="warning",
            instance=item.instance_id,
            region=item.region,
            extra=extra,
        )
    )


def alert_stale_copies(
    alerter: Alerter, healths: Iterable[RegionHealth], quiet: Collection[tuple[str, str]] = ()
) -> None:
    """One warning (log line and alert) per copy set whose newest copy is stale, except
    those in ``quiet`` (the run decides them: ``executor.run_health``)."""
    for health in healths:
        for item in health.stale_copies:
            if (item.region, item.instance_id) in quiet or ("*", item.instance_id) in quiet:
                continue
            _warn_stale(
                alerter,
                item,
                COPY_FRESHNESS_ACTION,
                f"stale copies: {item.describe()}",
                {"source_region": item.source_region, "held": str(item.held)},
                newest_key="newest_copy",
            )


def alert_health(
    alerter: Alerter,
    healths: Iterable[RegionHealth],
    skip: Collection[tuple[str, str | None]] = (),
) -> None:
    """One warning (log line and alert) per stale instance and per region short of quota.

    ``skip`` holds (region, instance) pairs not to warn about, and (region, ``None``) for
    regions whose quota is not to be warned about (``executor.run_health.already_alerted``).
    """
    for health in healths:
        for item in health.stale:
            if (item.region, item.instance_id) in skip:
                continue
            _warn_stale(
                alerter,
                item,
                FRESHNESS_ACTION,
                f"stale backup: {item.describe()}",
                {},
                newest_key="newest_image",
            )
        if health.quota.low and (health.region, None) not in skip:
            message = f"image quota low: {health.quota.describe()}"
            log.warning("%s", message)
            alerter.warning(
                Failure(
                    policy=REGION_WIDE,
                    action=QUOTA_ACTION,
                    message=message,
                    level="warning",
                    region=health.region,
                    extra={"free": str(health.quota.free), "quota": str(health.quota.quota)},
                    group=(health.region,),
                )
            )
