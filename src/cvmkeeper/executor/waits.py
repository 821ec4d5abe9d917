"""Waiting for images in flight (new images, copies, or in-flight images of due slots).

One ``DescribeImages`` per poll for all of them, with growing delays, bounded by
``api.wait_timeout``. What the wait saw last of each image is kept in :class:`Settled`,
from which the outcomes are built: ``None`` for an image that disappeared, the image for
one that left ``CREATING``/``SYNCING``; ``timed_out`` holds those still in flight when the
deadline passed.

DescribeImages is eventually consistent (issue #18): an image the run has just created
(:meth:`ImageWaiter.expect`) and that was never listed yet is *pending*, not gone, for
``api.visibility_grace``; only then is it settled as ``None`` and marked ``lost``. An image
that was listed and then vanished disappeared. :meth:`ImageWaiter.wait_gone` waits for
deleted images to leave ``DELETING``, which still counts against the quota.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.core.inventory import Image, ImageState
from cvmkeeper.core.ownership import looks_managed
from cvmkeeper.executor.polling import poll_delays
from cvmkeeper.executor.progress import ProgressKind
from cvmkeeper.executor.region import RegionRun

log = logging.getLogger(__name__)


@dataclass
class Settled:
    """What the waits of one region saw last: image id -> image (``None``: it vanished),
    and the ids still in flight when a wait ended at its deadline."""

    final: dict[str, Image | None] = field(default_factory=dict)
    timed_out: set[str] = field(default_factory=set)
    #: images created by this run that DescribeImages never listed within the grace
    lost: set[str] = field(default_factory=set)


class ImageWaiter:
    """Polls one region until images leave their busy states."""

    def __init__(self, run: RegionRun) -> None:
        self._run = run
        self.settled = Settled()
        #: image id -> when (``poll_time.monotonic``) this run created it, until first seen
        self._expected: dict[str, float] = {}

    def expect(self, image_id: str) -> None:
        """``image_id`` was just created: absent from a listing, it is pending until
        ``api.visibility_grace`` has passed since now."""
        self._expected.setdefault(image_id, self._run.options.poll_time.monotonic())

    def _pending_unlisted(self, image_id: str) -> bool:
        """True for an image created by this run, never listed, still within the grace."""
        since = self._expected.get(image_id)
        if since is None:
            return False
        grace = self._run.api.visibility_grace.total_seconds()
        if self._run.options.poll_time.monotonic() - since < grace:
            return True
        self.settled.lost.add(image_id)
        return False

    def _poll(
        self,
        region: str,
        targets: set[str],
        limit_seconds: float,
        one_round: Callable[[set[str], Iterable[Image]], set[str]],
        *,
        must_finish: frozenset[str] | None = None,
    ) -> set[str]:
        """The loop all waits share: poll ``region`` for the ids still pending, with growing
        delays, until none is left, the deadline (``limit_seconds`` from now) passes, or a
        stop is requested; return the ids still pending then.

        ``one_round(pending, listed)`` takes what one ``DescribeImages`` listed of the
        pending ids and returns those still pending. A failed poll is logged and tried again
        (within the deadline). On a stop request, ``must_finish=None`` ends the wait at
        once; otherwise only the pending ids in ``must_finish`` are still waited for.
        """
        run = self._run
        options = run.options
        pending = set(targets)
        deadline = options.poll_time.deadline(limit_seconds)
        delays = poll_delays(run.api.poll_interval.total_seconds())
        while pending:
            if options.stopping:
                if must_finish is None:
                    break
                pending &= must_finish
                if not pending:
                    break
            if deadline.passed:
                break
            options.poll_time.wait(min(next(delays), deadline.remaining()), options.stop)
            try:
                listed = run.client.get_images(region, pending)
            except CloudError as error:
                log.warning("%s: polling images failed (%s); trying again", region, error)
                continue
            pending = one_round(pending, listed)
        return pending

    def wait_for(
        self,
        targets: Iterable[str],
        *,
        must_finish: frozenset[str] = frozenset(),
        on_settled: Callable[[str], None] = lambda _image_id: None,
    ) -> set[str]:
        """Poll until ``targets`` leave their busy state; return those still in flight.

        ``on_settled(image_id)`` is called as each one does. After a stop request only
        ``must_finish`` (images of stopped instances) are still waited for, so an instance
        is not started under its image.
        """
        run = self._run

        def settle(pending: set[str], listed: Iterable[Image]) -> set[str]:
            seen = {i.image_id: i for i in listed}
            for image_id in sorted(pending):
                image = seen.get(image_id)
                if image is not None:
                    self._expected.pop(image_id, None)  # listed once: absence is news now
                elif self._pending_unlisted(image_id):
                    continue
                if image is not None and image.state.busy:
                    continue
                self.settled.final[image_id] = image
                pending.discard(image_id)
                state = image.state.value if image else "gone"
                if image_id in self.settled.lost:
                    state = "not listed within api.visibility_grace"
                run.say(
                    f"{run.region}: {image.name if image else image_id} is {state}",
                    kind=ProgressKind.SETTLED,
                    state=image.state.value if image else None,
                )
                on_settled(image_id)
            return pending

        limit = run.api.wait_timeout.total_seconds()
        return self._poll(run.region, set(targets), limit, settle, must_finish=must_finish)

    def wait_gone(self, image_ids: Iterable[str]) -> set[str]:
        """Poll until the deleted ``image_ids`` are no longer listed ``DELETING`` (a delete
        that lags still holds its quota); return those still listed at the deadline
        (``api.wait_timeout``) or when the run was stopped."""
        run = self._run
        pending = set(image_ids)
        if pending:
            run.say(f"{run.region}: waiting for {len(pending)} deleted image(s) to be gone")

        def still_deleting(_pending: set[str], listed: Iterable[Image]) -> set[str]:
            return {i.image_id for i in listed if i.state is ImageState.DELETING}

        limit = run.api.wait_timeout.total_seconds()
        return self._poll(run.region, pending, limit, still_deleting)

    def wait_tagged(self, region: str, image_ids: Iterable[str]) -> set[str]:
        """Poll ``region`` until the images ``image_ids`` (created by cvmkeeper, listed
        before their tags) show cvmkeeper's marker; return those still without it at the
        deadline (the shorter of ``api.wait_timeout`` and ``api.visibility_grace``). The
        copy phase waits so for its sources: a copy is planned from a tagged source."""
        run = self._run
        pending = set(image_ids)
        limit = min(run.api.wait_timeout, run.api.visibility_grace).total_seconds()
        if pending:
            run.say(f"{region}: waiting for the tags of {len(pending)} new image(s) to show")

        def untagged(pending: set[str], listed: Iterable[Image]) -> set[str]:
            return pending - {i.image_id for i in listed if looks_managed(i)}

        return self._poll(region, pending, limit, untagged)
