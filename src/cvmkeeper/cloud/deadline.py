"""One overall deadline for every call a read-only command makes (``plan``, ``validate
--online``).

The SDK waits ``cloud.timeout`` for each attempt and the client retries: against an
endpoint that accepts connections and never answers, a command took two minutes per
region before it said anything (issue #17: ``plan`` 121 s). Wrapping a client's transports
in a :class:`Deadline` makes every attempt wait at most until one instant shared by the
whole command; after it, every call fails at once with a :class:`DeadlineExceeded` naming
the region, which is permanent (not retried), so the command reports the region as
unreadable and ends. The blocked SDK call goes on in a daemon thread, which never keeps
the process from exiting. Only for commands that do not write: a write whose answer is
abandoned may still be carried out by the cloud.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from cvmkeeper.cloud.errors import PermanentError

if TYPE_CHECKING:
    from cvmkeeper.cloud.client import CloudClient
    from cvmkeeper.cloud.transport import Transport

#: the ``CloudError`` code of a call abandoned at the deadline
DEADLINE_CODE = "cvmkeeper.NoAnswerInTime"


class DeadlineExceeded(PermanentError):
    """No answer before the command's overall deadline (``--timeout``)."""


class Deadline:
    """An instant, ``seconds`` from now, after which no call waits any more."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + max(0.0, seconds)

    def run(self, region: str, action: str, call: Callable[[], Any]) -> Any:
        """``call()``'s answer (or its exception) if it comes before the deadline; else
        :class:`DeadlineExceeded`."""
        remaining = self._end - self._clock()
        if remaining <= 0:
            raise self._exceeded(region, action)
        answers: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

        def worker() -> None:
            try:
                answers.put((True, call()))
            except BaseException as error:  # handed to the caller, never lost
                answers.put((False, error))

        threading.Thread(target=worker, name=f"call-{region}", daemon=True).start()
        try:
            ok, value = answers.get(timeout=remaining)
        except queue.Empty:
            raise self._exceeded(region, action) from None
        if ok:
            return value
        raise value

    def _exceeded(self, region: str, action: str) -> DeadlineExceeded:
        return DeadlineExceeded(
            DEADLINE_CODE,
            f"no answer within {self.seconds:g}s (the endpoint is silent or slow; "
            "see cloud.endpoint, cloud.timeout and --timeout)",
            action=action,
            region=region,
        )


class _DeadlineTransport:
    """A transport whose calls give up at the deadline."""

    def __init__(self, inner: Transport, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def call(self, region: str, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self._deadline.run(
            region, action, lambda: self._inner.call(region, action, params)
        )
        return answer


def bound_by_deadline(client: CloudClient, deadline: Deadline) -> CloudClient:
    """``client`` with every transport (CVM, Tag, STS identity) bounded by ``deadline``;
    the same client, changed in place, for read-only commands."""
    client.transport = _DeadlineTransport(client.transport, deadline)
    if client.tag_transport is not None:
        client.tag_transport = _DeadlineTransport(client.tag_transport, deadline)
    client.bound_identity_reader(
        lambda reader: (
            lambda region: deadline.run(region, "GetCallerIdentity", lambda: reader(region))
        )
    )
    return client
