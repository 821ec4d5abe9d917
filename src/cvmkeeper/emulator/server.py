"""Start and stop an emulator on a background thread: what tests and tools use.

``with running_emulator(fleet) as emu:`` serves on ``127.0.0.1`` on a free port; point the
SDK at ``emu.endpoint`` with ``emu.secret_id`` / ``emu.secret_key``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cvmkeeper.emulator.clock import Clock, SystemClock
from cvmkeeper.emulator.core import EmulatorCore
from cvmkeeper.emulator.fleet import FleetSpec, load_fleet
from cvmkeeper.emulator.http import CONTROL_TOKEN_HEADER, EmulatorHTTPServer

HOST = "127.0.0.1"


def as_fleet(fleet: FleetSpec | Mapping[str, Any] | Path | str) -> FleetSpec:
    """Accept a spec, a mapping (as in the YAML file) or the path of a fleet file."""
    if isinstance(fleet, FleetSpec):
        return fleet
    if isinstance(fleet, Mapping):
        return FleetSpec.from_mapping(fleet)
    return load_fleet(fleet)


class RunningEmulator:
    """An emulator serving HTTP on a background thread until :meth:`stop`."""

    def __init__(
        self,
        core: EmulatorCore,
        *,
        port: int = 0,
        signature_clock: Clock | None = None,
        control_token: str | None = None,
    ) -> None:
        """Bind ``127.0.0.1:port`` (0 picks a free port) and start serving ``core``; the
        control endpoints take ``control_token`` (default: a random one)."""
        self.core = core
        self._server = EmulatorHTTPServer((HOST, port), core, signature_clock, control_token)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"cvm-emulator:{self.port}",
            daemon=True,
        )
        self._stopped = False
        self._thread.start()

    @property
    def port(self) -> int:
        """The TCP port the emulator listens on."""
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, the form ``HttpProfile(endpoint=...)`` wants (no scheme)."""
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.endpoint}"

    @property
    def control_token(self) -> str:
        """The token the control endpoints (``/_emulator/*``) want in ``X-Emulator-Token``."""
        return self._server.control_token

    @property
    def control_headers(self) -> dict[str, str]:
        """The headers a control request needs (the token)."""
        return {CONTROL_TOKEN_HEADER: self.control_token}

    @property
    def header_names(self) -> frozenset[str]:
        """Every request header name the API path received so far (lowercase)."""
        return frozenset(self._server.header_names)

    @property
    def secret_id(self) -> str:
        """The SecretId the emulator accepts."""
        return self.core.fleet.credentials.secret_id

    @property
    def secret_key(self) -> str:
        """The SecretKey the emulator accepts (never printed or logged)."""
        return self.core.fleet.credentials.secret_key

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __repr__(self) -> str:
        return f"RunningEmulator(url={self.url!r})"


@contextmanager
def running_emulator(
    fleet: FleetSpec | Mapping[str, Any] | Path | str,
    *,
    port: int = 0,
    clock: Clock | None = None,
    core: EmulatorCore | None = None,
    signature_clock: Clock | None = None,
) -> Iterator[RunningEmulator]:
    """Serve an emulator for the duration of a ``with`` block.

    ``fleet`` is a spec, a mapping or a fleet file path; ``clock`` defaults to the
    system clock (signatures are always checked against the wall clock); ``core`` serves
    an existing core instead of a fresh one (``fleet`` is then ignored);
    ``signature_clock`` replaces the wall clock for the 5-minute signature-age check.
    """
    if core is None:
        core = EmulatorCore(as_fleet(fleet), clock or SystemClock())
    emulator = RunningEmulator(core, port=port, signature_clock=signature_clock)
    try:
        yield emulator
    finally:
        emulator.stop()
