"""The marker of a stop in the cloud, where every daemon on every host sees it (rule 9).

The local stop journal (``executor.stop_journal``) lives in one host's ``state_dir``: if
that host dies after ``StopInstances`` and never returns, no other daemon knows that the
``STOPPED`` instance was stopped by cvmkeeper. So every stop is also marked on the
instance itself, with the tag ``cvmkeeper:stopped-by`` (``core.stop_marker``: when, the
lease's end, the host, the process) through Tencent's Tag API:

1. :meth:`CloudStopMarkers.put` *before* ``StopInstances`` (or a ``CreateImage`` that may
   power the instance off). When the tag cannot be put, the instance is not stopped.
2. :meth:`CloudStopMarkers.clear` once ``StartInstances`` was accepted (never before: a
   crash between the two would leave a stopped instance without its marker).
3. Every run reads the markers of its region (:meth:`CloudStopMarkers.scan`, one
   ``DescribeInstances`` with the ``tag-key`` filter) and starts again every ``STOPPED``
   instance whose lease has ended (``consistency.InstanceStopper.recover``).

The lease must outlast the longest stop: stopping, imaging (or the reset of a restore)
and starting again. It is ``api.stop_lease`` when the config sets one, else twice the wait
timeout plus ten minutes (:func:`default_lease`). A run still working past its lease may
see a peer start its instance while the image is made: the image is then taken from a
running instance (crash-consistent, as ``live`` would be), never a machine left down.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.core.stop_marker import STOPPED_BY_TAG, StopMarker, marker_value, parse_marker
from cvmkeeper.executor.stop_journal import owner_token

__all__ = ["CloudStopMarkers", "MarkedInstance", "default_lease"]

log = logging.getLogger(__name__)

#: what a lease adds to the time a stop may take (stop, image or reset, start)
LEASE_MARGIN = timedelta(minutes=10)


def default_lease(wait_timeout: timedelta) -> timedelta:
    """The lease of a stop when the config names none: the stop and the wait for the image
    are each bounded by ``wait_timeout``; the margin covers the calls in between."""
    return 2 * wait_timeout + LEASE_MARGIN


@dataclass(frozen=True, slots=True)
class MarkedInstance:
    """An instance carrying the marker: its state and the marker (``None``: a value
    cvmkeeper did not write, which is never acted on)."""

    instance_id: str
    state: str
    marker: StopMarker | None
    value: str


class CloudStopMarkers:
    """Puts, clears and reads the stop markers of one region's instances."""

    def __init__(
        self,
        client: CloudClient,
        region: str,
        *,
        lease: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        host: str | None = None,
    ) -> None:
        self._client = client
        self._region = region
        self.lease = lease
        self._clock = clock
        self._host = host or socket.gethostname()

    @property
    def owner(self) -> str:
        """The owner token this process's markers carry."""
        return owner_token()

    def now(self) -> datetime:
        """The time leases are measured against (the wall clock unless injected)."""
        return self._clock()

    def put(self, instance_ids: Iterable[str]) -> StopMarker:
        """Mark ``instance_ids`` as stopped by this process, lease from now; raises
        ``CloudError`` when the Tag API refuses (the caller must then not stop them)."""
        marker = marker_value(self._host, self.owner, self.now(), self.lease)
        ids = sorted(set(instance_ids))
        if ids:
            self._client.tag_resources(
                self._region, "instance", ids, {STOPPED_BY_TAG: marker.value()}
            )
        return marker

    def clear(self, instance_ids: Iterable[str]) -> bool:
        """Remove the marker of ``instance_ids`` (they run again); a failure is logged (a
        later run clears a marker whose lease ended on a running instance) and False."""
        ids = sorted(set(instance_ids))
        if not ids:
            return True
        try:
            self._client.untag_resources(self._region, "instance", ids, [STOPPED_BY_TAG])
        except CloudError as error:
            log.warning(
                "%s: cannot remove the stop marker of %s (%s); a later run removes it once "
                "its lease has ended",
                self._region,
                ", ".join(ids),
                error,
            )
            return False
        return True

    def scan(self) -> list[MarkedInstance]:
        """Every instance of the region that carries the marker; raises ``CloudError``."""
        found = self._client.instances_tagged(self._region, STOPPED_BY_TAG)
        return [
            MarkedInstance(
                instance.instance_id,
                instance.state,
                parse_marker(instance.tags.get(STOPPED_BY_TAG, "")),
                instance.tags.get(STOPPED_BY_TAG, ""),
            )
            for instance in sorted(found, key=lambda i: i.instance_id)
        ]
