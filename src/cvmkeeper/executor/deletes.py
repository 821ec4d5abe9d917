"""The deletes of a plan: ``DeleteImages`` in the plan's batches, each target reported.

A refused batch is retried one image at a time, so one image that cannot be deleted never
keeps the others. ``InvalidImageId.InShared`` / ``IncorrectState`` leave the image alone
with a warning (docs/design.md, rule 4: a shared image is found only by being refused);
every other failure is an error of the policies the image belongs to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.core.plan import Delete, DeleteTarget
from cvmkeeper.executor.progress import ProgressKind
from cvmkeeper.executor.region import RegionRun, image_extra
from cvmkeeper.executor.report import DeleteOutcome, DeleteStatus, delete_reason_text

log = logging.getLogger(__name__)

#: Delete errors that mean "leave this image alone for now" (a warning, not an error).
LEAVE_ALONE_CODES = frozenset({"InvalidImageId.InShared", "InvalidImageId.IncorrectState"})


class Deleter:
    """Carries out ``Delete`` steps in one region. ``policies_of`` names the policies an
    image's failure is alerted to."""

    def __init__(
        self, run: RegionRun, policies_of: Callable[[DeleteTarget], Sequence[str]]
    ) -> None:
        self._run = run
        self._policies_of = policies_of

    def run_deletes(self, steps: Iterable[Delete]) -> None:
        """Every step in order; after a stop request the rest are recorded as skipped."""
        for step in steps:
            if self._run.stopping:
                for target in step.targets:
                    self._record(step, target, "skipped")
                continue
            self._delete(step, list(step.targets))

    def _delete(self, step: Delete, targets: list[DeleteTarget]) -> None:
        run = self._run
        try:
            result = run.client.delete_images(
                run.region,
                [t.image_id for t in targets],
                delete_snapshots=run.api.delete_binded_snapshots,
            )
        except CloudError as error:
            if len(targets) > 1:  # find the one that is refused; delete the others
                for target in targets:
                    self._delete(step, [target])
                return
            self._failed(step, targets[0], error)
            return
        except Exception as error:
            log.exception("DeleteImages in %s failed unexpectedly", run.region)
            for target in targets:
                self._failed(step, target, error)
            return
        gone = set(result.already_gone)
        for target in targets:
            status: DeleteStatus = "already_gone" if target.image_id in gone else "deleted"
            self._record(step, target, status)
            run.say(
                f"{run.region}: deleted {target.image_name} ({target.image_id}): "
                f"{delete_reason_text(step.kind.value, target.reason)}",
                kind=ProgressKind.DELETED,
            )

    def _failed(self, step: Delete, target: DeleteTarget, error: Exception) -> None:
        code = error.code if isinstance(error, CloudError) else None
        request_id = error.request_id if isinstance(error, CloudError) else None
        message = f"{target.image_name} ({target.image_id}) not deleted: {error}"
        policies = self._policies_of(target)
        if code in LEAVE_ALONE_CODES:
            self._record(step, target, "left", error=message, code=code, request_id=request_id)
            self._run.warn(
                policies,
                "DeleteImages",
                message,
                instance=target.instance_id,
                code=code,
                request_id=request_id,
                extra=image_extra(target.image_id),
            )
            return
        self._record(step, target, "failed", error=message, code=code, request_id=request_id)
        self._run.error(
            policies,
            "DeleteImages",
            message,
            error,
            instance=target.instance_id,
            extra=image_extra(target.image_id),
        )

    def _record(
        self,
        step: Delete,
        target: DeleteTarget,
        status: DeleteStatus,
        *,
        error: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self._run.result.deleted.append(
            DeleteOutcome(
                region=self._run.region,
                image_id=target.image_id,
                image_name=target.image_name,
                instance_id=target.instance_id,
                kind=step.kind.value,
                reason=target.reason,
                status=status,
                error=error,
                tencent_code=code,
                request_id=request_id,
            )
        )
