"""Part 7: a canary SecretKey and a canary DSN key appear nowhere they must not.

One world with faults on every action and an instance that cannot be imaged (so errors,
retries and Sentry events happen), the SecretKey only in a 0600 key file, the DSN (with
its canary key) in the config and pointing at a real Sentry capture server. Then every
command a user runs: ``run`` (alerts on), ``plan``, ``images``, ``validate --online``
(each also with ``--json`` where it has it; there is no ``status`` command) and the daemon
(catch-up, SIGHUP, SIGTERM). Every byte they wrote to stdout and stderr, every Sentry
envelope body (the DSN key is in the auth header by protocol, so headers are not scanned)
and every file in the state directory is scanned for both canaries.
"""

from __future__ import annotations

import json
import signal
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from executor.world import SECRET_KEY, T0, A, B, fleet, policy, world
from reliability import commands, figures
from support.sentry_capture import sentry_capture_server

pytestmark = pytest.mark.slow

#: The world's SecretKey (only in its key file) and the DSN key: neither may leak.
CANARY_SECRET_KEY = SECRET_KEY
CANARY_DSN_KEY = "c4n4ryd5nk3y5ecret0000000000000"


def test_no_canary_in_any_output_envelope_or_state_file(tmp_path: Path) -> None:
    spec = fleet(
        instances=[{"id": A, "not_supported": True}, {"id": B}],
        faults={
            "*": {
                "InternalError": 0.05,
                "reset": 0.03,
                "lost_response": 0.03,
                "RequestLimitExceeded": 0.04,
            }
        },
        latency_ms=2,
    )
    spec["timing"]["create_failed_probability"] = 0.2
    outputs: list[str] = []
    with (
        sentry_capture_server(key=CANARY_DSN_KEY) as capture,
        world(tmp_path, spec, policy(keep_last=2)) as w,
    ):
        assert CANARY_DSN_KEY in capture.dsn
        config = yaml.safe_load(w.config_path.read_text())
        config.update(sentry={"dsn": capture.dsn}, state_dir=str(tmp_path / "state"))
        w.config_path.write_text(yaml.safe_dump(config))
        w.config_path.chmod(0o600)  # a plain DSN is refused in a world-readable config
        base = ["--config", str(w.config_path)]
        invocations = []
        for hour in range(2):
            at = (T0 + timedelta(hours=hour, minutes=1)).strftime("%Y-%m-%dT%H:%MZ")
            invocations += [
                ["run", *base, "--at", at, "--json"],
                ["run", *base, "--at", at],
                ["plan", *base, "--at", at, "--json"],
                ["plan", *base, "--at", at],
            ]
        invocations += [
            ["images", *base, "--json"],
            ["images", *base],
            ["validate", *base, "--online"],
        ]
        for n, args in enumerate(invocations):
            code, out, err = commands.run(args, tmp_path, f"cmd-{n}", timeout=90)
            assert code in (0, 1), f"{args}: exit {code}\n{out}{err}"
            if "--json" in args:
                json.loads(out)
            outputs += [out, err]

        daemon = commands.start(["daemon", *base, "--log-format", "text"], tmp_path, "daemon")
        try:
            finished = commands.poll(lambda: "catch-up finished" in daemon.output(), 60, 0.2)
            assert finished, daemon.output()
            daemon.popen.send_signal(signal.SIGHUP)
            commands.poll(
                lambda: "reload" in daemon.output().split("catch-up finished")[-1], 20, 0.2
            )
            daemon.popen.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0, daemon.output()
        finally:
            daemon.kill()
        outputs.append(daemon.output())
        assert capture.wait_for(lambda c: bool(c.events()), timeout=10)
        bodies = [part for request in capture.requests for part in (request.raw_body, request.body)]
        faults = figures.count_faults(w.state())
        # issue 19: sentry-sdk's trace headers (baggage carries the DSN's public key) never
        # reach the API, from any command or the daemon
        sent_headers = w.emu.header_names
        assert "authorization" in sent_headers
        assert not {"sentry-trace", "baggage", "traceparent"} & sent_headers, sent_headers

    state_files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert state_files, "the daemon wrote its state file"
    scanned = {
        "command output": [o.encode() for o in outputs],
        "Sentry envelope bodies": bodies,
        "state files": [p.read_bytes() for p in state_files],
    }
    for canary in (CANARY_SECRET_KEY, CANARY_DSN_KEY):
        for where, blobs in scanned.items():
            leaks = [blob[:200] for blob in blobs if canary.encode() in blob]
            assert not leaks, f"{canary[:4]}... found in {where}: {leaks}"
    assert "Traceback" not in "".join(outputs)
    figures.add(
        "7",
        runs=len(invocations) + 1,
        faults_injected=faults,
        envelopes=len(capture.requests),
        bytes_scanned=sum(len(b) for blobs in scanned.values() for b in blobs),
        leaks=0,
    )
