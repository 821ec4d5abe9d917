"""``consistency: stop_start``: stop instances for their images and always start them again.

docs/design.md rule 9: an instance cvmkeeper stopped for a consistent image is started again,
even when ``CreateImage`` fails, unless it was already stopped before. :class:`InstanceStopper`
remembers exactly which instances *it* stopped; the executor calls :meth:`release` for an
instance once its image no longer needs it (the image left ``CREATING``) and
:meth:`release_all` in a ``finally``, so no exception, timeout or stop request can leave an
instance down that was running before the run.

Instances already ``STOPPED`` are imaged as they are and stay stopped. Instances in a
transition (``STOPPING``, ``STARTING`` ...) are waited for until they settle; one that was
``STOPPING`` on its own stays stopped, one that was ``STARTING`` is stopped and restarted.

Memory does not survive a ``SIGKILL`` between ``StopInstances`` and ``StartInstances``, so
with a :class:`~cvmkeeper.executor.stop_journal.StopJournal` every stop is journaled before
it is sent (an instance whose stop cannot be journaled is not stopped), cleared once the
start is accepted, and :meth:`InstanceStopper.recover` (called by every region run before
it plans) starts again what an interrupted run left stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.executor.polling import Deadline, poll_delays
from cvmkeeper.executor.stop_journal import StopJournal, StoppedEntry

log = logging.getLogger(__name__)

RUNNING = "RUNNING"
STOPPED = "STOPPED"
#: States an instance passes through; recovery waits for them to settle.
TRANSITIONS = frozenset({"PENDING", "STOPPING", "STARTING", "REBOOTING"})


@dataclass(frozen=True)
class StopProblem:
    """Why an instance could not be made ready (stopped) for its image."""

    message: str
    error: CloudError | None = None


class InstanceStopper:
    """Stops instances of one region for ``stop_start`` images and restarts those it stopped.

    ``on_start_failed(instance_id, error)`` is called when a restart fails (the caller
    alerts: a production instance is down). ``sleep(seconds)`` waits between polls.
    ``journal`` makes the stops survive a crash (see the module docstring);
    ``on_recovered(entry)`` is called for each instance :meth:`recover` started again.
    """

    def __init__(
        self,
        client: CloudClient,
        region: str,
        *,
        deadline_seconds: float,
        poll_seconds: float,
        sleep: Callable[[float], object],
        on_start_failed: Callable[[str, Exception], None],
        progress: Callable[[str], None] = lambda _message: None,
        journal: StopJournal | None = None,
        on_recovered: Callable[[StoppedEntry], None] = lambda _entry: None,
    ) -> None:
        self._client = client
        self._region = region
        self._deadline_seconds = deadline_seconds
        self._poll_seconds = poll_seconds
        self._sleep = sleep
        self._on_start_failed = on_start_failed
        self._progress = progress
        self._journal = journal
        self._on_recovered = on_recovered
        self._stopped_by_us: set[str] = set()
        self._released: set[str] = set()
        self.ready: set[str] = set()

    @property
    def stopped_by_us(self) -> frozenset[str]:
        """Instances this stopper stopped (and so must start again)."""
        return frozenset(self._stopped_by_us)

    def prepare(self, instance_ids: Iterable[str]) -> dict[str, StopProblem]:
        """Bring every instance to ``STOPPED``; return the ones that could not be (and why).

        Running instances are stopped in one ``StopInstances`` call per poll round and
        remembered; already stopped ones are left as they are. Bounded by the deadline.
        """
        pending = {i for i in instance_ids if i not in self.ready}
        problems: dict[str, StopProblem] = {}
        deadline = Deadline(self._deadline_seconds)
        delays = poll_delays(self._poll_seconds)
        while pending:
            try:
                states = self._client.instance_states(self._region, sorted(pending))
            except CloudError as error:
                return {**problems, **{i: StopProblem(str(error), error) for i in pending}}
            for instance_id in sorted(pending):
                state = states.get(instance_id)
                if state is None:
                    message = f"{instance_id} not found in {self._region}"
                    problems[instance_id] = StopProblem(message)
                    pending.discard(instance_id)
                elif state == STOPPED:
                    self.ready.add(instance_id)
                    pending.discard(instance_id)
            to_stop = sorted(
                i for i in pending if states.get(i) == RUNNING and i not in self._stopped_by_us
            )
            if to_stop and self._journal is not None:
                try:
                    self._journal.record(self._region, to_stop)
                except OSError as error:
                    for instance_id in to_stop:
                        problems[instance_id] = StopProblem(
                            f"{instance_id} not stopped: cannot record in "
                            f"{self._journal.path} that cvmkeeper stops it "
                            f"({error.strerror or error}); without that record a crash could "
                            "leave it stopped (set a writable state_dir)"
                        )
                        pending.discard(instance_id)
                    to_stop = []
            if to_stop:
                try:
                    self._client.stop_instances(self._region, to_stop)
                except CloudError as error:
                    for instance_id in to_stop:
                        problems[instance_id] = StopProblem(str(error), error)
                        pending.discard(instance_id)
                else:
                    self._stopped_by_us.update(to_stop)
                    names = ", ".join(to_stop)
                    self._progress(f"{self._region}: stopping {names} for their images")
            if not pending:
                break
            if deadline.passed:
                for instance_id in sorted(pending):
                    problems[instance_id] = StopProblem(
                        f"{instance_id} did not reach STOPPED within {self._deadline_seconds:g}s "
                        f"(last state {states.get(instance_id)})"
                    )
                break
            self._sleep(min(next(delays), deadline.remaining()))
        return problems

    def release(self, instance_id: str) -> None:
        """Start ``instance_id`` again if this stopper stopped it and has not started it yet."""
        if instance_id not in self._stopped_by_us or instance_id in self._released:
            return
        self._released.add(instance_id)
        self._start(instance_id)

    def _start(self, instance_id: str) -> bool:
        """``StartInstances`` for one instance; its journal entry goes once it is accepted.
        A failure is reported (``on_start_failed``) and keeps the entry for the next run."""
        try:
            self._client.start_instances(self._region, [instance_id])
        except Exception as error:  # reported; the other starts must still happen
            log.error("StartInstances %s in %s failed: %s", instance_id, self._region, error)
            self._on_start_failed(instance_id, error)
            return False
        if self._journal is not None:
            self._journal.clear(self._region, [instance_id])
        self._progress(f"{self._region}: started {instance_id} again")
        return True

    def release_all(self) -> None:
        """Start every instance this stopper stopped and has not started yet (for ``finally``)."""
        for instance_id in sorted(self._stopped_by_us - self._released):
            self.release(instance_id)

    def recover(self) -> list[StoppedEntry]:
        """Start again what an interrupted run left stopped; return the instances started.

        Takes the journal's entries of this region that no live process owns. An instance
        still ``STOPPED`` is started (``on_recovered`` warns); one that runs again or no
        longer exists is dropped; one still in a transition when the deadline passes stays
        in the journal for the next run. Call it before planning.
        """
        if self._journal is None:
            return []
        entries = {entry.instance_id: entry for entry in self._journal.claim(self._region)}
        if not entries:
            return []
        deadline = Deadline(self._deadline_seconds)
        delays = poll_delays(self._poll_seconds)
        pending = set(entries)
        recovered: list[StoppedEntry] = []
        while pending:
            try:
                states = self._client.instance_states(self._region, sorted(pending))
            except CloudError as error:
                log.warning(
                    "%s: cannot read %s to recover them (%s); the next run tries again",
                    self._region,
                    ", ".join(sorted(pending)),
                    error,
                )
                return recovered
            settled = {i for i in pending if states.get(i) not in TRANSITIONS}
            for instance_id in sorted(settled):
                pending.discard(instance_id)
                state = states.get(instance_id)
                if state != STOPPED:  # running again (or gone): nothing is owed
                    log.info(
                        "%s: %s journaled as stopped is %s now; forgotten",
                        self._region,
                        instance_id,
                        state or "not found",
                    )
                    self._journal.clear(self._region, [instance_id])
                    continue
                if self._start(instance_id):
                    recovered.append(entries[instance_id])
                    self._on_recovered(entries[instance_id])
            if not pending or deadline.passed:
                break
            self._sleep(min(next(delays), deadline.remaining()))
        for instance_id in sorted(pending):
            log.warning(
                "%s: %s journaled as stopped is still in a transition; the next run "
                "checks it again",
                self._region,
                instance_id,
            )
        return recovered
