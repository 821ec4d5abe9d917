"""Restore drills: prove that a backup boots, and always clean up (issue #16).

One drill of one instance: the newest NORMAL image (``core.restore``), a throwaway instance
launched in the policy's drill zone/subnet/security groups with a small type, tagged
``cvmkeeper:drill`` and ``cvmkeeper:drill-lease-until`` *at launch* (RunInstances'
``TagSpecification``, so there is no moment when it exists untagged), a bounded wait for
``RUNNING``, an optional TCP connect from this host to its private IP, and TerminateInstances
in a ``finally``. A drill that fails is alerted through the run's alerter.

If the daemon dies mid-drill, the instance stays behind with its lease. Every drill run
(on any host) first sweeps its regions: an instance whose drill lease has expired is
terminated; anything without the drill tags, and any drill still within its lease, is left
alone (``core.drill.may_terminate``).

The last drill of each policy is kept in ``drills.json`` in the state directory, for
``status`` and for picking the instances drilled longest ago next time.
"""

from __future__ import annotations

import json
import logging
import math
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cvmkeeper import files
from cvmkeeper.alerting import Alerter, Failure, MonitorConfig, monitor_slug, monitored_run
from cvmkeeper.alerting.events import IntervalUnit
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.cloud.models import ResponseFormatError
from cvmkeeper.config import Setup
from cvmkeeper.core.drill import (
    DRILL_TAG,
    LEASE_TAG,
    DrillSpec,
    drill_due,
    lease_value,
    may_terminate,
    pick_instances,
)
from cvmkeeper.core.policy import Policy
from cvmkeeper.core.restore import Placement, RestoreRefused, choose_restore_point, plan_launch
from cvmkeeper.core.targets import resolve_targets
from cvmkeeper.executor.runner import run_regions
from cvmkeeper.restore.actions import (
    Waiting,
    launch_request,
    source_data_disk_type,
    wait_for_state,
)

log = logging.getLogger(__name__)

STATE_NAME = "drills.json"
#: A TCP connect attempt's own timeout (the whole check is bounded by the drill's timeout).
CONNECT_TIMEOUT = 3.0


@dataclass
class DrillOutcome:
    """One drilled instance: what was launched, how long it took, how it ended."""

    policy: str
    region: str
    instance_id: str
    started: str
    image_id: str = ""
    drill_instance_id: str = ""
    ok: bool = False
    seconds_to_running: float | None = None
    seconds_to_ready: float | None = None
    error: str = ""
    terminated: bool = False


@dataclass
class DrillReport:
    """What one drill run did: leftovers swept, instances drilled."""

    swept: list[str] = field(default_factory=list)
    outcomes: list[DrillOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every drill passed."""
        return all(o.ok for o in self.outcomes)


def sweep(
    client: CloudClient,
    region: str,
    now: datetime,
    progress: Callable[[str], None] = lambda _m: None,
    problems: list[str] | None = None,
) -> list[str]:
    """Terminate the drill instances of ``region`` whose lease has expired; return their ids.

    Only instances carrying the drill tag are listed, and each is checked again by
    :func:`~cvmkeeper.core.drill.may_terminate`: nothing else is ever terminated. Each is
    terminated on its own, so one that cannot be (still ``PENDING``) does not keep the
    others; what failed is added to ``problems``, and the next sweep tries again.
    """
    swept: list[str] = []
    for instance in client.instances_tagged(region, DRILL_TAG):
        allowed, why = may_terminate(instance.tags, now, instance.created_time)
        if not allowed or instance.state == "TERMINATING":
            log.info(
                "%s: drill instance %s left alone: %s",
                region,
                instance.instance_id,
                why if not allowed else "already terminating",
            )
            continue
        progress(f"{region}: terminating leftover drill instance {instance.instance_id} ({why})")
        try:
            client.terminate_instances(region, [instance.instance_id])
        except CloudError as error:
            if problems is not None:
                problems.append(
                    f"{region}: leftover drill instance {instance.instance_id} "
                    f"could not be terminated ({error}); the next drill run "
                    "tries again"
                )
            continue
        swept.append(instance.instance_id)
    return swept


def tcp_check(
    host: str,
    port: int,
    deadline: float,
    sleep: Callable[[float], object],
    monotonic: Callable[[], float],
) -> str:
    """Connect to ``host:port`` until it answers or ``deadline`` (monotonic) passes; return
    "" on success, else the last error."""
    error = "no attempt"
    while True:
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
                return ""
        except OSError as exc:
            error = str(exc) or type(exc).__name__
        if monotonic() >= deadline:
            return error
        sleep(min(1.0, max(0.01, deadline - monotonic())))


def drill_one(
    client: CloudClient,
    policy: Policy,
    spec: DrillSpec,
    region: str,
    instance_id: str,
    *,
    now: datetime,
    waiting: Waiting,
    progress: Callable[[str], None] = lambda _m: None,
) -> DrillOutcome:
    """Drill one instance; the drill instance is terminated whatever happens."""
    outcome = DrillOutcome(policy.name, region, instance_id, lease_value(now))
    try:
        images = client.list_images(region)
        point = choose_restore_point(images, instance_id, region)
        outcome.image_id = point.image_id
        tags = {DRILL_TAG: policy.name, LEASE_TAG: lease_value(now + spec.lease)}
        placement = Placement(
            spec.zone, spec.instance_type, spec.vpc_id, spec.subnet_id, spec.security_group_ids
        )
        # the data disks take the source's type, as restore --new does (the instance may be
        # gone: then the default type)
        disk_type = source_data_disk_type(client.describe_instance(region, instance_id))
        source = Placement(data_disk_type=disk_type) if disk_type else None
        plan = plan_launch(region, point, source, placement, extra_tags=tags)
    except (RestoreRefused, CloudError, ResponseFormatError) as error:
        outcome.error = f"cannot drill {instance_id}: {error}"
        return outcome
    started = waiting.monotonic()
    try:
        ids = client.run_instances(region, launch_request(plan, name=f"drill-{instance_id}"))
        outcome.drill_instance_id = ids[0] if ids else ""
        progress(
            f"{region}: drill of {instance_id}: launched {outcome.drill_instance_id} "
            f"from {point.image_id}"
        )
        state = wait_for_state(client, region, outcome.drill_instance_id, waiting)
        if state != "RUNNING":
            outcome.error = (
                f"drill instance {outcome.drill_instance_id} from "
                f"{point.image_id} is {state or 'not found'}, not RUNNING, after "
                f"{waiting.seconds:g}s"
            )
            return outcome
        outcome.seconds_to_running = round(waiting.monotonic() - started, 3)
        if spec.tcp_port:
            details = client.describe_instance(region, outcome.drill_instance_id)
            host = details.private_ips[0] if details and details.private_ips else ""
            if not host:
                outcome.error = f"drill instance {outcome.drill_instance_id} has no private IP"
                return outcome
            failed = tcp_check(
                host, spec.tcp_port, started + waiting.seconds, waiting.sleep, waiting.monotonic
            )
            if failed:
                outcome.error = (
                    f"drill instance {outcome.drill_instance_id} runs but "
                    f"{host}:{spec.tcp_port} did not answer: {failed}"
                )
                return outcome
        outcome.seconds_to_ready = round(waiting.monotonic() - started, 3)
        outcome.ok = True
        return outcome
    except (CloudError, ResponseFormatError) as error:
        outcome.error = f"drill of {instance_id} failed: {error}"
        return outcome
    finally:
        if outcome.drill_instance_id:
            outcome.terminated = _terminate(client, region, outcome, waiting)
            if outcome.terminated:
                progress(
                    f"{region}: drill of {instance_id}: terminated {outcome.drill_instance_id}"
                )


def _terminate(client: CloudClient, region: str, outcome: DrillOutcome, waiting: Waiting) -> bool:
    """TerminateInstances, retried (bounded) while the instance is still PENDING; a drill
    instance that cannot be terminated now is left to the lease sweep."""
    deadline = waiting.monotonic() + max(waiting.seconds, 1.0)
    while True:
        try:
            client.terminate_instances(region, [outcome.drill_instance_id])
            return True
        except CloudError as error:
            if waiting.monotonic() >= deadline:
                note = (
                    f"could not terminate {outcome.drill_instance_id} ({error}); its lease "
                    "lets the next drill run terminate it"
                )
                outcome.error = f"{outcome.error}; {note}" if outcome.error else note
                return False
            waiting.sleep(min(waiting.poll_seconds, 1.0))


# -- state -----------------------------------------------------------------------------------


def drill_monitor_slug(policy_name: str) -> str:
    """The Sentry Crons monitor of a policy's drills."""
    return monitor_slug(f"{policy_name}-drill")


def drill_monitor(spec: DrillSpec) -> MonitorConfig:
    """The monitor config of a drill: its period, and as long a run as its drills may take."""
    minutes = int(spec.every.total_seconds() // 60)
    if minutes % (24 * 60) == 0:
        schedule: tuple[int, IntervalUnit] = (minutes // (24 * 60), "day")
    elif minutes % 60 == 0:
        schedule = (minutes // 60, "hour")
    else:
        schedule = (max(1, minutes), "minute")
    runtime = math.ceil(spec.timeout.total_seconds() / 60) * spec.max_per_run + 10
    return MonitorConfig(schedule=schedule, checkin_margin=30, max_runtime=runtime)


def _drill_policy(
    client: CloudClient,
    setup: Setup,
    policy: Policy,
    spec: DrillSpec,
    *,
    entry: dict[str, Any],
    now: datetime,
    step: Waiting,
    progress: Callable[[str], None],
    save: Callable[[], None],
) -> list[DrillOutcome]:
    """Drill the instances of one policy (those drilled longest ago, up to the cap).

    Each outcome is recorded in ``entry`` and ``save``-d as soon as it is known: a process
    killed (SIGKILL, a power cut) in a later drill still leaves the earlier ones in
    ``drills.json``, so ``status`` and the metrics show a failed drill that ran."""
    done: list[DrillOutcome] = []

    def record(outcome: DrillOutcome) -> None:
        done.append(outcome)
        entry["last_run"] = lease_value(now)
        entry["last"] = [asdict(o) for o in done]
        save()

    for region in policy.regions:
        if not spec.zone.startswith(region + "-"):
            continue
        try:
            instances = client.list_instances(region)
        except CloudError as error:
            record(
                DrillOutcome(
                    policy.name,
                    region,
                    "-",
                    lease_value(now),
                    error=f"cannot list instances: {error}",
                )
            )
            continue
        targeted = resolve_targets(region, setup.policies, instances).instances_of(policy.name)
        drilled = {
            k: v for k, v in ((k, _parse(v)) for k, v in entry.get("instances", {}).items()) if v
        }
        for instance_id in pick_instances(targeted, drilled, spec.max_per_run):
            # the instance's drill time goes in before the outcome is saved with it
            entry.setdefault("instances", {})[instance_id] = lease_value(now)
            record(
                drill_one(
                    client,
                    policy,
                    spec,
                    region,
                    instance_id,
                    now=now,
                    waiting=step,
                    progress=progress,
                )
            )
    return done


def load_state(state_dir: Path) -> dict[str, Any]:
    """``drills.json``: per policy its last run and per instance when it was last drilled."""
    try:
        document = json.loads((state_dir / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"policies": {}}
    return document if isinstance(document.get("policies"), dict) else {"policies": {}}


def save_state(state_dir: Path, document: dict[str, Any]) -> None:
    """Write ``drills.json`` atomically (a failure is logged: drills still ran)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        files.write_atomically(state_dir / STATE_NAME, json.dumps(document, indent=2) + "\n")
    except OSError as error:
        log.warning("cannot write %s: %s", state_dir / STATE_NAME, error)


def _parse(raw: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None


# -- a run -----------------------------------------------------------------------------------


def run_drills(
    setup: Setup,
    client: CloudClient,
    alerter: Alerter,
    now: datetime,
    *,
    policy_names: Sequence[str] = (),
    force: bool = False,
    waiting: Waiting | None = None,
    poll_seconds: float = 5.0,
    progress: Callable[[str], None] = lambda _m: None,
    observe: Callable[[DrillReport], None] | None = None,
) -> DrillReport:
    """Sweep expired drill instances, then drill every policy whose drill is due (all named
    ones when ``force``). Failures are alerted; ``drills.json`` records the outcomes;
    ``observe(report)`` (the metrics exporter's ``observe_drills``) is told at the end."""
    report = DrillReport()
    policies = [
        p
        for p in setup.policies
        if p.drill is not None and (not policy_names or p.name in policy_names)
    ]
    state = load_state(setup.config.state_dir)
    # every region of the config too: a leftover of a drill whose policy has since lost its
    # drill key (or was removed, perhaps because that drill failed) still bills until swept
    regions = list(dict.fromkeys([*run_regions(setup), *(r for p in policies for r in p.regions)]))
    for region in regions:
        problems: list[str] = []
        try:
            report.swept += sweep(client, region, now, progress, problems)
        except CloudError as error:
            problems.append(f"{region}: cannot list leftover drill instances: {error}")
        for problem in problems:
            alerter.error(Failure("drill", "drill-sweep", problem, region=region))
    for policy in policies:
        spec = policy.drill
        assert spec is not None  # filtered above
        entry = state["policies"].setdefault(policy.name, {"instances": {}})
        if not force and not drill_due(_parse(entry.get("last_run")), spec, now):
            continue
        step = waiting or Waiting(seconds=spec.timeout.total_seconds(), poll_seconds=poll_seconds)
        # each drill run is a Sentry Crons check-in of the monitor "<policy>-drill", so a
        # drill that stops happening is noticed like a backup that does
        with monitored_run(
            alerter, drill_monitor_slug(policy.name), drill_monitor(spec)
        ) as monitor:
            done = _drill_policy(
                client,
                setup,
                policy,
                spec,
                entry=entry,
                now=now,
                step=step,
                progress=progress,
                save=lambda: save_state(setup.config.state_dir, state),
            )
            report.outcomes += done
            if not all(o.ok for o in done):
                monitor.fail()
        entry["last_run"] = lease_value(now)
        entry["last"] = [asdict(o) for o in done]
    _alert_failed(alerter, report.outcomes)
    save_state(setup.config.state_dir, state)
    if observe is not None:
        try:
            observe(report)
        except Exception:  # an observer's bug must not fail the drills
            log.exception("the drill observer failed")
    return report


def _alert_failed(alerter: Alerter, outcomes: Sequence[DrillOutcome]) -> None:
    """A Sentry event for each failed drill."""
    for outcome in outcomes:
        if not outcome.ok:
            alerter.error(
                Failure(
                    outcome.policy,
                    "drill",
                    outcome.error,
                    instance=outcome.instance_id,
                    region=outcome.region,
                    extra={
                        "image_id": outcome.image_id,
                        "drill_instance": outcome.drill_instance_id,
                    },
                )
            )


def last_drill(state_dir: Path, policy_name: str) -> dict[str, Any] | None:
    """The last drill run of ``policy_name`` from ``drills.json`` (for ``status``):
    ``{"when", "ok", "drills": [...]}``, or ``None`` when it never ran."""
    entry = load_state(state_dir)["policies"].get(policy_name)
    if not isinstance(entry, dict) or not entry.get("last_run"):
        return None
    drills = [d for d in entry.get("last") or [] if isinstance(d, dict)]
    return {"when": entry["last_run"], "ok": all(d.get("ok") for d in drills), "drills": drills}


def last_drill_text(state_dir: Path, policy_name: str) -> str:
    """One line about the last drill of ``policy_name``."""
    last = last_drill(state_dir, policy_name)
    if last is None:
        return "never ran"
    parts = []
    for d in last["drills"]:
        if d.get("ok"):
            parts.append(f"{d.get('instance_id')} OK, ready in {d.get('seconds_to_ready')}s")
        else:
            parts.append(f"{d.get('instance_id')} FAILED: {d.get('error')}")
    return f"{last['when']}: " + ("; ".join(parts) or "nothing drilled")


def failed_drills(setup: Setup) -> list[str]:
    """Policies whose last drill (in this host's ``drills.json``) failed: ``status`` says
    they need attention."""
    return [
        p.name
        for p in setup.policies
        if p.drill is not None
        and (last := last_drill(setup.config.state_dir, p.name)) is not None
        and not last["ok"]
    ]
