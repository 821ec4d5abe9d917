"""A transport that calls an emulator core directly (no HTTP), for fast simulations.

It lives with the emulator, not in ``cvmkeeper.cloud``: the emulator depends on the cloud
layer (it answers what the cloud client asks), never the reverse. ``in_process_client(core)``
is the ``CloudClient`` a simulation or a test uses; the errors the core raises become the
same classified ``CloudError`` subclasses the SDK transport gives, and requests and answers
take the JSON round trip, so nothing can share mutable state with the emulator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.errors import NetworkError, classify
from cvmkeeper.emulator.errors import ApiError, ConnectionFault

__all__ = ["InProcessTransport", "in_process_client"]


def _wire_copy(value: Any) -> Any:
    """``value`` as it comes out of the wire: ``json.loads(json.dumps(value))``, computed
    without the text for the plain types requests and answers are made of (``dict`` with
    ``str`` keys, ``list``, ``tuple``, ``str``, ``int``, ``float``, ``bool``, ``None``).
    Anything else (subclasses, other keys) takes the real round trip, so the result and the
    ``TypeError`` for what JSON cannot carry are exactly JSON's (for acyclic values)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        if all(type(key) is str for key in value):
            return {key: _wire_copy(item) for key, item in value.items()}
    elif kind is list or kind is tuple:
        return [_wire_copy(item) for item in value]
    return json.loads(json.dumps(value))


class InProcessTransport:
    """Calls an emulator core directly (no HTTP); for fast simulations and tests.

    ``core`` is a ``cvmkeeper.emulator.core.EmulatorCore`` (or anything with its
    ``call(action, region, params)``).
    """

    def __init__(self, core: Any) -> None:
        self.core = core

    def call(self, region: str, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``action`` in the core; its errors and faults become classified errors."""
        try:
            answer = self.core.call(action, region, _wire_copy(dict(params)))
        except ApiError as exc:
            raise classify(exc.code, exc.message, action=action, region=region) from None
        except ConnectionFault:
            raise NetworkError(
                "ClientNetworkError",
                "connection closed without an answer",
                action=action,
                region=region,
            ) from None
        result: dict[str, Any] = _wire_copy(answer)
        return result


def in_process_client(core: Any, **options: Any) -> CloudClient:
    """A ``CloudClient`` calling an emulator core directly (options as ``CloudClient``'s)."""
    return CloudClient(InProcessTransport(core), **options)
