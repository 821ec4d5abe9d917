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

The journal is one host's. With :class:`~cvmkeeper.executor.stop_markers.CloudStopMarkers`
every stop is also marked on the instance in the cloud (a tag with a lease) before it is
sent, and the mark removed after the start; :meth:`InstanceStopper.recover` then also
starts every ``STOPPED`` instance whose mark's lease has ended, whichever host stopped it
(it died), and never one without a mark (a person stopped it) or with a live lease (a peer
is imaging it).

``force_poweroff`` images get the same discipline (:meth:`InstanceStopper.guard_poweroff`):
``CreateImage`` with ``ForcePoweroff`` shuts the instance down, and whether the cloud starts
it again is not documented. So a running instance is journaled and marked before its
create, and once its image has left ``CREATING`` it is started again if it is found down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.executor.polling import Deadline, poll_delays
from cvmkeeper.executor.stop_journal import StopJournal, StoppedEntry
from cvmkeeper.executor.stop_markers import CloudStopMarkers, MarkedInstance

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
    ``journal`` makes the stops survive a crash of this process, ``markers`` the death of
    this host (see the module docstring); ``on_recovered(entry)`` is called for each
    instance :meth:`recover` started again.
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
        markers: CloudStopMarkers | None = None,
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
        self._markers = markers
        self._stopped_by_us: set[str] = set()
        #: force_poweroff instances that ran before their create: started again if found down
        self._powered_off: set[str] = set()
        self._released: set[str] = set()
        self.ready: set[str] = set()

    @property
    def stopped_by_us(self) -> frozenset[str]:
        """Instances this stopper stopped (and so must start again)."""
        return frozenset(self._stopped_by_us)

    @property
    def owed(self) -> frozenset[str]:
        """Instances this stopper must see running again: those it stopped, and the
        ``force_poweroff`` ones that ran before their create."""
        return frozenset(self._stopped_by_us | self._powered_off)

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
            if to_stop:
                refused = self._promise(to_stop, "stopped")
                problems.update(refused)
                pending -= set(refused)
                to_stop = [i for i in to_stop if i not in refused]
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

    def _promise(self, instance_ids: list[str], what: str) -> dict[str, StopProblem]:
        """Journal and mark ``instance_ids`` before they may go down; the problems of
        those that could not be (they must then not be stopped or powered off)."""
        if self._journal is not None:
            try:
                self._journal.record(self._region, instance_ids)
            except OSError as error:
                return {
                    i: StopProblem(
                        f"{i} not {what}: cannot record in {self._journal.path} that "
                        f"cvmkeeper stops it ({error.strerror or error}); without that record "
                        "a crash could leave it stopped (set a writable state_dir)"
                    )
                    for i in instance_ids
                }
        if self._markers is not None:
            try:
                self._markers.put(instance_ids)
            except CloudError as error:
                if self._journal is not None:
                    self._journal.clear(self._region, instance_ids)
                return {
                    i: StopProblem(
                        f"{i} not {what}: cannot mark it in the cloud as stopped by cvmkeeper "
                        f"({error.code}: {error.message}); without the mark no other host "
                        "could start it again if this one died (the CAM policy needs "
                        "name/tag:TagResources)",
                        error,
                    )
                    for i in instance_ids
                }
        return {}

    def guard_poweroff(self, instance_ids: Iterable[str]) -> dict[str, StopProblem]:
        """Before ``CreateImage`` with ``ForcePoweroff``: journal and mark the instances that
        run, so that whatever happens they are started again if the image leaves them down;
        return the ones that must not be imaged so (and why). Stopped ones are left as they
        are (rule 9: they were stopped before)."""
        ids = sorted(set(instance_ids) - self._powered_off)
        if not ids:
            return {}
        try:
            states = self._client.instance_states(self._region, ids)
        except CloudError as error:
            return {i: StopProblem(str(error), error) for i in ids}
        running = [i for i in ids if states.get(i) == RUNNING]  # a stopping one is not ours
        problems = self._promise(running, "powered off") if running else {}
        self._powered_off.update(i for i in running if i not in problems)
        return problems

    def release(self, instance_id: str) -> None:
        """Start ``instance_id`` again if this stopper stopped it (or let ``CreateImage``
        power it off) and has not started it yet."""
        if instance_id not in self.owed or instance_id in self._released:
            return
        self._released.add(instance_id)
        if instance_id in self._stopped_by_us or self._is_down(instance_id):
            self._start(instance_id)
        else:  # a force_poweroff instance that runs: nothing owed, only the records go
            self._forget(instance_id)

    def _is_down(self, instance_id: str) -> bool:
        """True unless ``instance_id`` is known to run (or to be starting): when in doubt
        ``StartInstances`` is sent (it counts "already running" as done)."""
        try:
            state = self._client.instance_states(self._region, [instance_id]).get(instance_id)
        except CloudError:
            return True
        if state in (RUNNING, "STARTING"):
            return False
        log.warning(
            "%s: %s is %s after its force_poweroff image; starting it again",
            self._region,
            instance_id,
            state or "not found",
        )
        return True

    def _forget(self, instance_id: str) -> None:
        """Drop the journal entry and the cloud mark of ``instance_id`` (it runs)."""
        if self._journal is not None:
            self._journal.clear(self._region, [instance_id])
        if self._markers is not None:
            self._markers.clear([instance_id])

    def _start(self, instance_id: str) -> bool:
        """``StartInstances`` for one instance; its journal entry and cloud mark go once it
        is accepted (never before: a crash in between would leave it down unmarked). A
        failure is reported (``on_start_failed``) and keeps both for the next run."""
        try:
            self._client.start_instances(self._region, [instance_id])
        except Exception as error:  # reported; the other starts must still happen
            log.error("StartInstances %s in %s failed: %s", instance_id, self._region, error)
            self._on_start_failed(instance_id, error)
            return False
        self._forget(instance_id)
        self._progress(f"{self._region}: started {instance_id} again")
        return True

    def release_all(self) -> None:
        """Start every instance this stopper stopped and has not started yet (for ``finally``)."""
        for instance_id in sorted(self.owed - self._released):
            self.release(instance_id)

    def recover(self) -> list[StoppedEntry]:
        """Start again what an interrupted run left stopped; return the instances started.

        First this host's journal: its entries of this region that no live process owns.
        An instance still ``STOPPED`` is started (``on_recovered`` warns); one that runs
        again or no longer exists is dropped; one still in a transition when the deadline
        passes stays in the journal for the next run; one that a live peer has marked anew
        is left to it. Then the cloud marks (any host's): see :meth:`_recover_marked`. Call
        it before planning.
        """
        marked = self._scan_marks()
        recovered = self._recover_journal(marked)
        handled = {entry.instance_id for entry in recovered}
        return recovered + self._recover_marked(marked, handled)

    def _scan_marks(self) -> dict[str, MarkedInstance]:
        """The marked instances of the region (empty without markers or when unreadable:
        the next run reads them again)."""
        if self._markers is None:
            return {}
        try:
            return {item.instance_id: item for item in self._markers.scan()}
        except CloudError as error:
            log.warning(
                "%s: cannot read the stop marks of its instances (%s); the next run tries again",
                self._region,
                error,
            )
            return {}

    def _peer_holds(self, entry: StoppedEntry, marked: dict[str, MarkedInstance]) -> bool:
        """True when the instance of a journal ``entry`` carries a live mark of another
        process: a peer stopped it anew after ours, and starts it itself."""
        item = marked.get(entry.instance_id)
        if item is None or item.marker is None or self._markers is None:
            return False
        mark = item.marker
        if mark.owner in (entry.owner, self._markers.owner):
            return False
        return not mark.expired(self._markers.now())

    def _recover_journal(self, marked: dict[str, MarkedInstance]) -> list[StoppedEntry]:
        """The journal's part of :meth:`recover`."""
        if self._journal is None:
            return []
        entries = {
            entry.instance_id: entry
            for entry in self._journal.claim(self._region)
            if not self._peer_holds(entry, marked)
        }
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

    def _recover_marked(
        self, marked: dict[str, MarkedInstance], handled: set[str]
    ) -> list[StoppedEntry]:
        """Start every ``STOPPED`` instance whose cloud mark's lease has ended (its stopping
        run died, on whichever host), and remove the marks left on running instances. An
        instance with a live lease is a peer's, one with a value cvmkeeper did not write is
        nobody's: both are left alone. Unmarked instances are never looked at."""
        if self._markers is None:
            return []
        now = self._markers.now()
        recovered: list[StoppedEntry] = []
        for instance_id, item in sorted(marked.items()):
            mark = item.marker
            if instance_id in handled or instance_id in self.owed:
                continue
            if mark is None:
                log.warning(
                    "%s: %s carries the stop mark %r, which cvmkeeper did not write; left alone",
                    self._region,
                    instance_id,
                    item.value,
                )
            elif not mark.expired(now):
                log.info(
                    "%s: %s is marked as stopped by %s until %s; left to it",
                    self._region,
                    instance_id,
                    mark.host,
                    mark.lease_until.isoformat(),
                )
            elif item.state == STOPPED:
                if self._start(instance_id):
                    entry = StoppedEntry(
                        self._region,
                        instance_id,
                        mark.stopped_at,
                        mark.owner,
                        0,
                        mark.host,
                        lease_until=mark.lease_until,
                    )
                    recovered.append(entry)
                    self._on_recovered(entry)
            elif item.state not in TRANSITIONS:  # running again: only the mark is left
                self._markers.clear([instance_id])
        return recovered
