"""Fixtures for the emulator tests: emulators served on free ports, stopped afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from cvmkeeper.emulator.server import RunningEmulator, running_emulator
from emulator.sdk import base_fleet


@pytest.fixture
def emu() -> Iterator[RunningEmulator]:
    """The base fleet served on a free port."""
    with running_emulator(base_fleet()) as running:
        yield running


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningEmulator]]:
    """Start emulators with custom fleets; all are stopped after the test."""
    started: list[RunningEmulator] = []
    contexts: list[Any] = []

    def _serve(fleet: Mapping[str, Any], **options: Any) -> RunningEmulator:
        context = running_emulator(fleet, **options)
        contexts.append(context)
        running = context.__enter__()
        started.append(running)
        return running

    yield _serve
    for context in reversed(contexts):
        context.__exit__(None, None, None)
