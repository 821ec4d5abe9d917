"""The two ways an emulated call can fail: an API error, or a broken connection.

``ApiError`` becomes ``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`` on the
wire; ``ConnectionFault`` makes the HTTP front close the socket without any answer.
"""

from __future__ import annotations


class ApiError(Exception):
    """A Tencent Cloud API error with its ``Code`` and ``Message``."""

    def __init__(self, code: str, message: str) -> None:
        """Create the error; ``code`` is the API error code, e.g. ``InvalidImageId.NotFound``."""
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectionFault(Exception):
    """An injected network fault: the connection is dropped without a response.

    ``committed`` is False for a reset before processing (nothing happened) and True for a
    lost response (the call was processed and its effects are committed).
    """

    def __init__(self, committed: bool) -> None:
        """Create the fault; ``committed`` says whether the call took effect."""
        kind = "lost response (committed)" if committed else "connection reset (not committed)"
        super().__init__(kind)
        self.committed = committed
