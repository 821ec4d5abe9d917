"""Issue #17's "Done when": a newcomer installs from the wheel and runs the daemon under
systemd using only docs/install.md; an administrator's ``cvmkeeper status`` works on the
same host.

The journey takes its commands from the page itself: the ``cvmkeeper`` lines of the "Write
the config" block, the credentials steps and ``LoadCredential=`` lines of the "Credentials"
block, and the administrator's ``CREDENTIALS_DIRECTORY=... cvmkeeper status``. A change to
any of them changes what the test runs (or fails it), so page and product cannot drift apart.

What the test changes, and why:

- Every absolute path of the page (``/etc/cvmkeeper``, ``/etc/systemd/system``,
  ``/var/lib/cvmkeeper``) lives below a temporary ``root``; ``$CVMKEEPER_CONFIG`` names the
  config below it (the daemon's default path is ``/etc/cvmkeeper/cvmkeeper.yaml``) and the
  config's ``state_dir`` the state directory below it (default ``/var/lib/cvmkeeper``).
- The wheel is in a venv (the page's venv install, ``/opt/cvmkeeper``: the session's
  ``wheel_venv``), so ``systemd-unit`` gets the ``--executable`` step 1 names.
- The config's edits are the ones the page asks for: the region, and ``cloud.endpoint`` of
  an emulator on 127.0.0.1 (the page's config reference), with ``scheme: http``.
- Only the ``secret_id`` and ``secret_key`` credentials: no Sentry here.
- systemd cannot run in the test container (no systemd as PID 1, no user manager), so
  ``tests/support/systemd_sim.py`` starts the unit as systemd would: ExecStart=,
  LoadCredential=, StateDirectory=, NOTIFY_SOCKET, WATCHDOG_USEC, UMask=, and when the tests
  run as root, the unprivileged user of ``DynamicUser=yes``.

The verdict holds at any time of day: the generated policy's daily slot is always within
its catch-up window, so the daemon makes the latest slot at start; should a slot also come
due during the test, it is one more image, checked the same way.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cvmkeeper.emulator.server import RunningEmulator, running_emulator
from docs.readme import blocks, section
from support import systemd_sim

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "docs" / "install.md"
REGION = "ap-shanghai"  # not the generated config's region: the edit must be read
SECRET_ID = "AKIDJOURNEY000000000000000000000000"
SECRET_KEY = "journey-secret-key-0123456789"
INSTANCE = "ins-6pb6lrmy"
TIMEOUT = 60.0
VENV = "/opt/cvmkeeper"  # the page's venv install; the session's wheel_venv here


def fleet() -> dict[str, Any]:
    """One region, one instance tagged as the generated policy targets (backup=daily)."""
    return {
        "credentials": {"secret_id": SECRET_ID, "secret_key": SECRET_KEY},
        "limits": "legacy",
        "latency_ms": 0,
        "seed": 17,
        "timing": {"create_seconds": 1.0, "create_failed_probability": 0.0},
        "regions": {
            REGION: {
                "quota": 10,
                "instances": [
                    {
                        "id": INSTANCE,
                        "name": "web-1",
                        "state": "RUNNING",
                        "zone": f"{REGION}-2",
                        "tags": {"backup": "daily"},
                    }
                ],
            }
        },
    }


def install_section() -> str:
    return section("Installing for real")


def doc_block(containing: str) -> str:
    """The text of the ``sh`` block of "Installing for real" that holds ``containing``."""
    found = [b.text for b in blocks(install_section()) if containing in b.text]
    assert len(found) == 1, f"docs/install.md: {len(found)} blocks hold {containing!r}"
    return found[0]


class Host:
    """The test's host: ``root`` stands for ``/``, ``venv`` holds the installed wheel."""

    def __init__(self, root: Path, venv: Path) -> None:
        self.root = root
        self.venv = venv
        self.command = venv / "bin" / "cvmkeeper"
        self.config = self.path("/etc/cvmkeeper/cvmkeeper.yaml")

    def path(self, absolute: str) -> Path:
        """Where the page's ``absolute`` path is here: the venv for ``/opt/cvmkeeper``."""
        if absolute == VENV or absolute.startswith(f"{VENV}/"):
            return self.venv / absolute.removeprefix(VENV).lstrip("/")
        return systemd_sim.host_path(self.root, absolute)

    def argv(self, line: str) -> list[str]:
        """A ``cvmkeeper ...`` line of the page with its paths below ``root``."""
        words = shlex.split(line)
        assert words[0] == "cvmkeeper", line
        mapped = [str(self.path(w)) if w.startswith("/") else w for w in words[1:]]
        return [str(self.command), *mapped]

    def env(self) -> dict[str, str]:
        """A root shell's environment: no keys anywhere, the config at its mapped path."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TENCENTCLOUD_", "SENTRY_", "CVMKEEPER_"))
            and k not in {"CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC"}
        }
        return env | {"HOME": str(self.root / "root"), "CVMKEEPER_CONFIG": str(self.config)}

    def run(self, argv: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            cwd=self.root,
            env=self.env() | extra,
        )


@pytest.fixture
def host(wheel_venv: Path) -> Iterator[Host]:
    """A root directory any user can traverse (the service user reads /etc/cvmkeeper)."""
    root = Path(tempfile.mkdtemp(prefix="cvmkeeper-root-"))
    try:
        root.chmod(0o755)
        (root / "root").mkdir(mode=0o700)
        yield Host(root, wheel_venv)
    finally:
        for directory in root.rglob("*"):  # the credentials directory is read-only
            if directory.is_dir() and not directory.is_symlink():
                directory.chmod(0o700)
        shutil.rmtree(root, ignore_errors=True)


def venv_executable() -> str:
    """Step 1's venv install: where the page puts the venv and what it gives systemd-unit."""
    block = doc_block(f"python3 -m venv {VENV}")
    assert f"{VENV}/bin/pip install" in block
    match = re.search(r"cvmkeeper systemd-unit --executable (\S+)", block)
    assert match, (
        f"docs/install.md step 1 does not say how a venv install writes the unit:\n{block}"
    )
    return match.group(1)


def write_config_and_unit(host: Host, emu: RunningEmulator) -> Path:
    """Step 2: the page's three commands, with the edits the page asks for in between."""
    lines = [
        line.strip()
        for line in doc_block("cvmkeeper config generate").splitlines()
        if line.strip().startswith("cvmkeeper ")
    ]
    assert [shlex.split(line)[1] for line in lines] == ["config", "systemd-unit", "validate"]
    generate, unit_line, validate = lines
    executable = venv_executable()
    assert host.path(executable) == host.command

    generated = host.run(host.argv(generate))
    assert generated.returncode == 0, generated.stdout + generated.stderr
    text = host.config.read_text(encoding="utf-8")
    assert "\nregions: [ap-guangzhou]\n" in text  # "edit the regions"
    reference = section("Daemon config reference")
    for key in ("`regions`", "`cloud.endpoint`", "`cloud.scheme`", "`state_dir`"):
        assert f"\n| {key} |" in reference, key  # every key the test sets is documented
    text = text.replace("\nregions: [ap-guangzhou]\n", f"\nregions: [{REGION}]\n")
    text += (
        f'\ncloud: {{endpoint: "{emu.endpoint}", scheme: http}}\n'
        f"state_dir: {host.path('/var/lib/cvmkeeper')}\n"
    )
    host.config.write_text(text, encoding="utf-8")

    unit = host.run([*host.argv(unit_line), "--executable", str(host.path(executable))])
    assert unit.returncode == 0, unit.stderr
    unit_file = host.path("/etc/systemd/system/cvmkeeper.service")
    assert f"\nExecStart={host.command} daemon\n" in unit_file.read_text()

    validated = host.run(host.argv(validate))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "ok: 1 policies valid" in validated.stdout
    return unit_file


def verify_unit(unit_file: Path) -> None:
    """``systemd-analyze verify`` of the written unit: no line about it, exit 0."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # CI installs it (.ci/run); tests/scheduler/test_unit_file.py says so too
    result = subprocess.run(
        [analyze, "verify", str(unit_file)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    problems = [line for line in output.splitlines() if unit_file.name in line]
    assert result.returncode == 0 and not problems, output


def write_credentials(host: Host, unit_file: Path) -> None:
    """Step 3: root-only key files and the page's LoadCredential= lines in a drop-in."""
    block = doc_block("LoadCredential=secret_id:")
    assert "install -d -m 0700 /etc/cvmkeeper/credentials" in block
    assert "umask 077" in block
    keys = host.path("/etc/cvmkeeper/credentials")
    keys.mkdir(mode=0o700, parents=True)
    for name, value in (("secret_id", SECRET_ID), ("secret_key", SECRET_KEY)):
        assert f"> {name}" in block
        fd = os.open(keys / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(value)  # printf %s: no newline
    loads = re.findall(r"#\s+(LoadCredential=(?:secret_id|secret_key):\S+)", block)
    assert len(loads) == 2, block
    assert "systemctl edit cvmkeeper    # add, under [Service]:" in block
    drop_in = Path(f"{unit_file}.d") / "override.conf"
    drop_in.parent.mkdir()
    drop_in.write_text("[Service]\n" + "".join(f"{line}\n" for line in loads))


def image_states(emu: RunningEmulator) -> dict[str, str]:
    return {i["ImageName"]: i["ImageState"] for i in emu.core.state()["regions"][REGION]["images"]}


def wait_for_normal_image(emu: RunningEmulator, service: systemd_sim.Service) -> None:
    """The catch-up's image exists and is NORMAL (bounded in count and time)."""
    for _ in range(int(TIMEOUT / 0.2)):
        states = image_states(emu)
        made = states and all(state == "NORMAL" for state in states.values())
        if made and "catch-up finished: ok" in service.text():
            return
        assert service.process.poll() is None, service.text()
        service.notify.receive(0.2)  # paces the loop, keeping what the daemon says
    raise AssertionError(f"no NORMAL image in {TIMEOUT}s: {image_states(emu)}\n{service.text()}")


def administrators_status(host: Host) -> subprocess.CompletedProcess[str]:
    """Step 4: ``CREDENTIALS_DIRECTORY=/etc/cvmkeeper/credentials cvmkeeper status`` as root."""
    line = "CREDENTIALS_DIRECTORY=/etc/cvmkeeper/credentials cvmkeeper status"
    assert f"`{line}` (as root)" in install_section()
    assignment, *command = shlex.split(line)
    name, _, value = assignment.partition("=")
    return host.run(host.argv(shlex.join(command)), **{name: str(host.path(value))})


@pytest.mark.timeout(900)
@pytest.mark.skipif(
    bool(os.environ.get("CVMKEEPER_SHIFTED_CLOCK")) and os.geteuid() == 0,
    reason="under make test-clock as root: the service drops root through setpriv, which "
    "libfaketime (preloaded) enters as root; its shared clock is then root's, and the "
    "service user cannot open it, so the daemon cannot start. The journey reads no time "
    "of day: nothing is lost by leaving it to the unshifted runs",
)
def test_a_newcomer_follows_install_md_from_the_wheel_to_a_running_daemon(host: Host) -> None:
    with running_emulator(fleet()) as emu:
        unit_file = write_config_and_unit(host, emu)
        verify_unit(unit_file)
        write_credentials(host, unit_file)

        service = systemd_sim.start(
            unit_file,
            host.root,
            log=host.root / "journal.log",
            extra_env={"CVMKEEPER_CONFIG": str(host.config)},
        )
        try:
            ready = service.notify.expect("READY", timeout=TIMEOUT)
            assert ready["READY"] == "1", service.text()
            assert ready["STATUS"].startswith("next: web-daily at "), ready
            wait_for_normal_image(emu, service)
            state = service.directories["STATE_DIRECTORY"]
            state_file = state / "daemon-state.json"
            assert state_file.is_file(), sorted(p.name for p in state.iterdir())
            assert {"WATCHDOG": "1"} in service.notify.received  # WatchdogSec= is honoured

            # Step 4's `systemctl reload cvmkeeper`: ExecReload= sends SIGHUP to $MAINPID.
            assert "systemctl reload cvmkeeper" in doc_block("systemctl enable --now cvmkeeper")
            service.reload()
            service.notify.expect("RELOADING", timeout=TIMEOUT)
            reloaded = service.notify.expect("READY", timeout=TIMEOUT)
            assert "rejected" not in reloaded.get("STATUS", ""), reloaded

            status = administrators_status(host)
            output = status.stdout + status.stderr
            assert "no Tencent Cloud credentials" not in output, output
            assert status.returncode in (0, 1), output
            assert REGION in status.stdout, output
            assert SECRET_KEY not in output
            # root's status leaves the service user's files to it (DynamicUser=)
            owners = {p.name: p.stat().st_uid for p in state.iterdir()}
            if os.geteuid() == 0:
                assert set(owners.values()) == {systemd_sim.NOBODY}, owners

            assert service.stop() == 0, service.text()
            service.notify.expect("STOPPING", timeout=5)
        finally:
            service.kill()
        journal = service.text()
        assert SECRET_KEY not in journal
        # "logs to the journal with priorities": every line, so `journalctl -p` can filter
        assert journal.strip() and all(
            re.match(r"<[0-7]>", line) for line in journal.splitlines() if line
        ), journal
