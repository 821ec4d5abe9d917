"""A small world for executor and CLI tests: an emulator over HTTP, config and policy files.

``World`` starts the emulator on 127.0.0.1 (port 0), writes a daemon config pointing at it
(credentials: a secret_id and a secret_key_file, both real files) and policy files into a
temporary directory, and gives a ``CloudClient`` over the real SDK with quick retries.
Images are fast (``create_seconds`` 0.2) so a run with a wait takes well under a second.

The one set of builders of the tests that run against this world: fleets (``fleet``,
``two_regions``, ``managed``, ``unmanaged``), policy documents (``policy``, ``copying``,
``broken_weekly``), moments (``hour``), a run (``run``), and what the history says
(``replay_peaks``; ``script_faults`` scripts it). A test module adds only what is its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from cvmkeeper.alerting import RecordingAlerter
from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.credentials import Credentials
from cvmkeeper.cloud.retry import RetryPolicy
from cvmkeeper.cloud.transport import EndpointConfig
from cvmkeeper.config import Setup, load_setup
from cvmkeeper.core.naming import image_description, image_name, image_tags
from cvmkeeper.emulator.core import EmulatorCore
from cvmkeeper.emulator.profiles import with_env_profile
from cvmkeeper.emulator.server import RunningEmulator, running_emulator
from cvmkeeper.executor import RunReport, run_once

REGION = "ap-guangzhou"
DEST = "ap-shanghai"  # a region cross-region copies go to
A, B = "ins-aaaaaaaa", "ins-bbbbbbbb"
SECRET_ID = "AKIDEXECUTORTEST0001"
SECRET_KEY = "executor-test-secret-key"
T0 = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
QUICK_RETRIES = RetryPolicy(
    max_attempts=6, base_seconds=0.02, cap_seconds=0.2, deadline_seconds=20, max_internal_errors=3
)


def fleet(
    *,
    quota: int = 10,
    instances: Sequence[Mapping[str, Any]] = ({"id": A}, {"id": B}),
    images: Sequence[Mapping[str, Any]] = (),
    create_seconds: float = 0.2,
    **extra: Any,
) -> dict[str, Any]:
    """A one-region fleet with fast lifecycles (no injected faults, no latency).

    ``CVMKEEPER_EMULATOR_PROFILE`` names the profile unless ``extra`` has ``profile``.
    """
    return with_env_profile(
        {
            "credentials": {"secret_id": SECRET_ID, "secret_key": SECRET_KEY},
            "seed": 5,
            "timing": {
                "create_seconds": create_seconds,
                "stop_seconds": 0.1,
                "start_seconds": 0.1,
                "sync_seconds": 0.2,
                "launch_seconds": 0.2,
                "terminate_seconds": 0.1,
                "reset_seconds": 0.2,
            },
            "regions": {
                REGION: {"quota": quota, "instances": list(instances), "images": list(images)}
            },
            **extra,
        }
    )


def two_regions(
    *,
    quota: int = 10,
    dest_quota: int = 10,
    dest_images: Sequence[Mapping[str, Any]] = (),
    source_images: Sequence[Mapping[str, Any]] = (),
    **extra: Any,
) -> dict[str, Any]:
    """Instance A in REGION, nothing but ``dest_images`` in DEST; fast lifecycles.

    ``CVMKEEPER_EMULATOR_PROFILE`` names the profile unless ``extra`` has ``profile``.
    """
    return with_env_profile(
        {
            "credentials": {"secret_id": SECRET_ID, "secret_key": SECRET_KEY},
            "seed": 8,
            "timing": {
                "create_seconds": 0.2,
                "stop_seconds": 0.1,
                "start_seconds": 0.1,
                "sync_seconds": 0.2,
            },
            "regions": {
                REGION: {"quota": quota, "instances": [{"id": A}], "images": list(source_images)},
                DEST: {"quota": dest_quota, "instances": [], "images": list(dest_images)},
            },
            **extra,
        }
    )


def unmanaged(image_id: str, name: str) -> dict[str, Any]:
    """A hand-made image cvmkeeper must count and never touch."""
    return {"id": image_id, "name": name, "description": "made by hand"}


def managed(
    instance_id: str,
    slot: datetime,
    image_id: str,
    *,
    state: str = "NORMAL",
    policy: str = "hourly",
) -> dict[str, Any]:
    """A fleet image exactly as cvmkeeper creates it (name, tags, description)."""
    return {
        "id": image_id,
        "name": image_name(instance_id, slot),
        "state": state,
        "description": image_description((policy,), slot),
        "tags": image_tags((policy,), instance_id, slot),
        "instance_id": instance_id,
        "created_time": slot.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def policy(
    name: str = "hourly", *, ids: Sequence[str] = (A, B), keep_last: int = 4, **extra: Any
) -> dict[str, Any]:
    """An hourly policy document for ``ids``."""
    document: dict[str, Any] = {
        "name": name,
        "regions": [REGION],
        "targets": {"instance_ids": list(ids)},
        "schedules": [{"every": "1h"}],
        "retention": {"keep_last": keep_last},
    }
    document.update(extra)
    return document


def copying(keep_last: int, copy_keep_last: int, region: str = DEST) -> dict[str, Any]:
    """An hourly policy of A keeping ``keep_last``, copying to ``region``."""
    return policy(
        ids=[A],
        keep_last=keep_last,
        copies=[{"region": region, "retention": {"keep_last": copy_keep_last}}],
    )


def broken_weekly(retention: str = "{keep_last: 2, keep_dayly: 7}") -> str:
    """``weekly.yaml`` for A that cannot be used: line 5, ``retention``, has the typo
    ``keep_dayly`` (its one problem, unless ``retention`` says otherwise)."""
    return (
        "name: weekly\n"
        f"regions: [{REGION}]\n"
        f"targets: {{instance_ids: [{A}]}}\n"
        "schedules: [{every: 1h}]\n"
        f"retention: {retention}\n"
    )


def hour(n: int, minute: int = 1) -> datetime:
    """A moment just after the slot ``n`` hours after T0."""
    return T0 + timedelta(hours=n, minutes=minute)


@dataclass
class World:
    """An emulator, the files that point at it, and a client."""

    emu: RunningEmulator
    root: Path
    config_path: Path

    def setup(self) -> Setup:
        """Load the config and policies as the commands do."""
        return load_setup(self.config_path)

    def client(self, retry_policy: RetryPolicy = QUICK_RETRIES, **options: Any) -> CloudClient:
        """A client over the real SDK and HTTP, with quick retries unless told otherwise
        (``options``: ``CloudClient``'s, such as ``rng``)."""
        return CloudClient.over_http(
            Credentials(SECRET_ID, SECRET_KEY, source="test"),
            EndpointConfig(self.emu.endpoint, "http", 10),
            retry_policy=retry_policy,
            **options,
        )

    def state(self) -> dict[str, Any]:
        """The emulator's ``/_emulator/state`` document."""
        return self.emu.core.state()

    def images(self, region: str = REGION) -> list[dict[str, Any]]:
        """Every image of ``region``, newest first."""
        return list(self.state()["regions"][region]["images"])

    def image_names(self, region: str = REGION) -> set[str]:
        """The names of ``region``'s images."""
        return {image["ImageName"] for image in self.images(region)}

    def writes(self) -> list[dict[str, Any]]:
        """The write calls the emulator received, in order (lifecycle entries left out)."""
        return [e for e in self.state()["history"] if e["action"] != "_transition"]

    def instance_state(self, instance_id: str) -> str:
        """The emulated instance's state now."""
        instances = self.state()["regions"][REGION]["instances"]
        return next(str(i["InstanceState"]) for i in instances if i["InstanceId"] == instance_id)

    def write_policies(self, *policies: Mapping[str, Any]) -> None:
        """Replace the policy files."""
        directory = self.root / "policies"
        for old in directory.glob("*.yaml"):
            old.unlink()
        for document in policies:
            (directory / f"{document['name']}.yaml").write_text(yaml.safe_dump(dict(document)))

    def write_broken_weekly(self, retention: str = "{keep_last: 2, keep_dayly: 7}") -> Path:
        """Add ``policies/weekly.yaml`` as :func:`broken_weekly` gives it; its path."""
        path = self.root / "policies" / "weekly.yaml"
        path.write_text(broken_weekly(retention))
        return path


def run(
    w: World, at: datetime, alerter: RecordingAlerter | None = None, **options: Any
) -> RunReport:
    """One ``run_once`` of the world's config at ``at`` (``client=``: another client)."""
    return run_once(
        w.setup(),
        options.pop("client", None) or w.client(),
        alerter or RecordingAlerter(),
        now=at,
        **options,
    )


def replay_peaks(w: World, start: Mapping[str, int]) -> dict[str, int]:
    """Replay every write of the history: the most images each region ever held."""
    count = dict(start)
    peak = dict(start)
    for entry in w.writes():
        if entry["result"] != "ok":
            continue
        region = entry["region"]
        if entry["action"] == "CreateImage":
            count[region] += 1
        elif entry["action"] == "DeleteImages":
            count[region] -= len(entry["ImageIds"])
        elif entry["action"] == "SyncImages":
            for made in entry["copies"]:
                count[made["Region"]] += 1
        for name, value in count.items():
            peak[name] = max(peak[name], value)
    return peak


def script_faults(core: EmulatorCore, steps: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """After the emulator answers each step's action (in order), set the step's faults.

    How a test makes one answer get lost and then the look-up that follows fail once,
    deterministically, while the real SDK talks HTTP to the emulator.
    """
    original = core.call
    pending = list(steps)

    def call(action: str, region: str | None, params: Any, *, request_id: str = "") -> Any:
        try:
            return original(action, region, params, request_id=request_id)
        finally:
            if pending and pending[0][0] == action:
                core.set_faults(pending.pop(0)[1])

    core.call = call  # type: ignore[method-assign]


def write_config(root: Path, endpoint: str, *, quota: int = 10, **api: Any) -> Path:
    """The daemon config for the emulator at ``endpoint``, secret key in a 0600 file."""
    key_file = root / "secret_key"
    key_file.write_text(SECRET_KEY + "\n")
    key_file.chmod(0o600)
    (root / "policies").mkdir(exist_ok=True)
    config = {
        "policies_dir": "policies",
        "state_dir": "state",  # the stop journal lives here: never the host's /var/lib
        "regions": [REGION],
        "image_quota": quota,
        "cloud": {"endpoint": endpoint, "scheme": "http", "timeout": "10s"},
        "credentials": {
            "secret_id": SECRET_ID,
            "secret_key_file": str(key_file),
            "cvm_role": False,
        },
        "api": {
            "wait_timeout": "20s",
            "poll_interval": "1s",
            "retries": {"base_seconds": 0.02, "cap_seconds": 0.2, "deadline_seconds": 20},
            **api,
        },
    }
    path = root / "cvmkeeper.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


#: the image of the broken ``weekly`` policy in :func:`broken_policy_world`: held
HELD = "img-week0001"


@contextmanager
def broken_policy_world(root: Path) -> Iterator[World]:
    """One bad policy file among good ones (issue #19): the policy ``hourly`` (keep_last 1)
    targets A and ``weekly.yaml`` cannot be used (:func:`broken_weekly`); A has an image of
    ``weekly`` (``HELD``, old enough that keep_last would let it go) and two of ``hourly``."""
    images = [
        managed(A, T0 - timedelta(hours=5), HELD, policy="weekly"),
        managed(A, T0 - timedelta(hours=2), "img-hour0001"),
        managed(A, T0 - timedelta(hours=1), "img-hour0002"),
    ]
    with world(root, fleet(images=images), policy(ids=[A], keep_last=1)) as built:
        built.write_broken_weekly()
        yield built


@contextmanager
def world(
    root: Path,
    fleet_spec: Mapping[str, Any],
    *policies: Mapping[str, Any],
    quota: int = 10,
    **api: Any,
) -> Iterator[World]:
    """Serve ``fleet_spec`` and write a config and ``policies`` under ``root``."""
    with running_emulator(fleet_spec) as emu:
        path = write_config(root, emu.endpoint, quota=quota, **api)
        built = World(emu, root, path)
        built.write_policies(*policies)
        yield built
