"""``cvmkeeper status --monitor``: the status as a Nagios/Icinga monitoring plugin.

Monitoring systems (Nagios, Icinga, Naemon, Zabbix's and Checkmk's plugin runners) read
the exit status and the first output line of a check command, as the Monitoring Plugins
Development Guidelines define them; sanoid's ``--monitor-*`` options are the model:

* exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN;
* first line ``CVMKEEPER <STATE> - <summary> | <perfdata>``, then one line per finding;
* perfdata ``'label'=value[UOM];[warn];[crit];[min];[max]``; the stale counts are ``U``
  (undetermined) while a region cannot be read.

The mapping, worst first (Icinga's order, where UNKNOWN ranks between WARNING and
CRITICAL): CRITICAL for a stale backup or copy, a failed last run, a broken state file
or a policy file that cannot be used (its policy does not run: backups are at risk);
UNKNOWN when a region cannot be read, or the config or the credentials cannot be used
(the check itself could not look); WARNING when a region has fewer free images than
``sentry.quota_free_warning``, or a backup leaves a disk out (a local disk, an image
holding fewer disks than asked: a lasting condition to fix in the policy, not a page at
night), or a policy file cannot be used while the daemon runs the version it loaded
before (backups go on; the next restart would stop them); else OK. A config error is
UNKNOWN, never the usual exit 2, which a monitor would read as CRITICAL.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cvmkeeper.config import Setup

if TYPE_CHECKING:
    from cvmkeeper.cli.status_cmd import Status

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
#: worst first: the state shown when several apply
SEVERITY = (CRITICAL, UNKNOWN, WARNING, OK)
PREFIX = "CVMKEEPER"


def _label(text: str) -> str:
    """A perfdata label: quoted, with no quote or '=' inside."""
    return "'" + re.sub(r"['=]", "_", text) + "'"


def unknown_lines(reason: str) -> list[str]:
    """The plugin output when the check cannot even start (config, credentials)."""
    return [f"{PREFIX} UNKNOWN - {reason}"]


def monitor_result(setup: Setup, status: Status) -> tuple[int, list[str]]:
    """The exit status and the output lines of ``status``."""
    findings: dict[int, list[str]] = {CRITICAL: [], UNKNOWN: [], WARNING: []}
    stale, stale_copies = status.stale, status.stale_copies
    failed = status.failed_policies(setup)
    if stale:
        findings[CRITICAL].append(f"{len(stale)} stale backup{'s' if len(stale) != 1 else ''}")
    if stale_copies:
        findings[CRITICAL].append(
            f"{len(stale_copies)} stale copy set{'s' if len(stale_copies) != 1 else ''}"
        )
    if failed:
        findings[CRITICAL].append(f"last run failed: {', '.join(failed)}")
    if status.state_problem:
        findings[CRITICAL].append("state file broken")
    broken = status.broken_files
    not_running = [r.file for r in broken if not r.old_version_kept]
    old_kept = [r.file for r in broken if r.old_version_kept]
    if not_running:
        findings[CRITICAL].append(f"policy file cannot be used: {', '.join(not_running)}")
    if old_kept:
        findings[WARNING].append(
            f"policy file cannot be used, old version running: {', '.join(old_kept)}"
        )
    if status.unreadable:
        findings[UNKNOWN].append(
            f"cannot read {len(status.unreadable)} of "
            f"{len(status.unreadable) + len(status.regions)} regions: "
            f"{', '.join(status.unreadable)}"
        )
    channels = sorted(status.state.notification_failures)
    if channels:  # alerts are being lost: the daemon's state file says so (issue #17)
        findings[WARNING].append(f"notifications failing: {', '.join(channels)}")
    low = [h.quota for h in status.regions if h.quota.low]
    if low:
        findings[WARNING].append(
            "quota low in " + ", ".join(f"{q.region} ({q.free} free)" for q in low)
        )
    disks = list(status.disk_warnings)
    if disks:  # rule 10: a disk left out of a backup is reported, never silent
        findings[WARNING].append(f"{len(disks)} disk warning{'s' if len(disks) != 1 else ''}")
    state = next((s for s in SEVERITY[:-1] if findings[s]), OK)
    summary = "; ".join(item for s in SEVERITY[:-1] for item in findings[s])
    if state == OK:
        summary = (
            f"{len(setup.policies)} policies, {len(status.regions)} regions, "
            f"{sum(len(h.instances) for h in status.regions)} instances backed up in time"
        )
    # A count over the regions read is not the fleet's count: with a region unread it is
    # "U" (the guidelines' undetermined value), so a graph shows a gap, not a reassuring 0.
    undetermined = bool(status.unreadable)
    perf = [
        f"stale_backups={'U' if undetermined else len(stale)};;1;0",
        f"stale_copies={'U' if undetermined else len(stale_copies)};;1;0",
        f"failed_policies={len(failed)};;1;0",
        f"unreadable_regions={len(status.unreadable)};;;0;"
        f"{len(status.unreadable) + len(status.regions)}",
        f"broken_policy_files={len(broken)};;1;0",
    ]
    for health in status.regions:
        quota = health.quota
        perf.append(
            f"{_label(quota.region + '_free')}={quota.free};{quota.threshold}:;;0;{quota.quota}"
        )
        perf.append(f"{_label(quota.region + '_used')}={quota.used};;;0;{quota.quota}")
    lines = [f"{PREFIX} {STATE_NAMES[state]} - {summary} | {' '.join(perf)}"]
    lines += [item.describe() for item in stale]
    lines += [item.describe() for item in stale_copies]
    lines += [f"{region}: {problem}" for region, problem in status.unreadable.items()]
    lines += disks
    lines += [f"{problem}" for record in broken for problem in record.problems]
    return state, lines
