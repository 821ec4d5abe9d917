"""Deliver notifications in the background: a queue, one worker thread, bounded retries.

An alert must never slow down or break a backup run, so the channels of
``cvmkeeper.alerting`` (webhook, Healthchecks, Apprise) only enqueue a job; one worker
thread per channel sends it, retrying a network error or a 5xx answer a few times with a
short backoff, and logs (with the URL redacted) what could not be delivered.
``flush(timeout)`` waits until the queue is empty; ``close(timeout)`` flushes and stops.

A log line alone hides a dead channel in the journal (issue #17): each ``Deliverer`` also
tells its ``DeliveryObserver`` (the daemon's: state file and metrics) how every job ended,
by channel name (``webhook``, ``apprise``, ``healthchecks``) and a redacted reason, never
the URL, which carries the channel's secret.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from cvmkeeper.logs import redact, register_secret

log = logging.getLogger(__name__)

#: attempts per job, and the pause before the 2nd, 3rd ... (seconds)
ATTEMPTS = 3
BACKOFF = (0.5, 2.0)
USER_AGENT = "cvmkeeper"


def public_url(url: str) -> str:
    """``https://hc-ping.com/***``: the scheme and host of ``url``, never its path,
    query or user part (which carry the token of a webhook or a ping URL)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/***"


#: a path segment at least this long is taken for a token (a UUID, a Slack or WeCom key);
#: shorter ones (``hooks``, ``cvmkeeper``, ``ping``) are words and stay readable
TOKEN_SEGMENT_LENGTH = 16


def register_url_secret(url: str) -> None:
    """Make the log redactor hide ``url`` and each secret-bearing part of it: the URL
    with and without its scheme, its query, user and password, and every path segment
    long enough to be a token. Words of the path are not registered: the registry is
    process-wide, and hiding ``cvmkeeper`` would blank half of every log line."""
    register_secret(url)
    parts = urlsplit(url)
    for piece in (url.partition("://")[2], parts.query, parts.username, parts.password):
        if piece:
            register_secret(piece)
    for segment in parts.path.split("/"):
        if len(segment) >= TOKEN_SEGMENT_LENGTH:
            register_secret(segment)


#: ``observer(channel, reason)`` after each job: ``reason`` is why it could not be delivered
#: (redacted, no URL), ``None`` when it was delivered
DeliveryObserver = Callable[[str, str | None], None]


class DeliveryError(Exception):
    """A job failed in a way that retrying will not fix (a 4xx answer)."""


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST ``body`` to ``url``; the HTTP status. A 5xx or network error raises ``OSError``
    (retried), a 4xx raises ``DeliveryError`` (not retried)."""
    request = urllib.request.Request(  # noqa: S310 - the operator's http(s) URL, checked
        url, data=body, method="POST", headers={"User-Agent": USER_AGENT, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            answer.read(65536)
            return int(answer.status)
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise OSError(f"HTTP {error.code}") from None
        raise DeliveryError(f"HTTP {error.code}") from None


class Deliverer:
    """One background worker that runs delivery jobs in order, retrying transient errors."""

    def __init__(
        self,
        name: str,
        *,
        channel: str = "",
        observer: DeliveryObserver | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``name`` appears in the thread name and in log lines (no secret in it);
        ``observer`` hears how each job ended, under ``channel`` (default: ``name``)."""
        self.name = name
        self.channel = channel or name
        self._observer = observer
        self._sleep = sleep
        self._jobs: queue.Queue[tuple[str, Callable[[], object]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=f"cvmkeeper-{name}", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, what: str, job: Callable[[], object]) -> None:
        """Run ``job`` in the background; ``what`` (redacted) names it in log lines."""
        if not self._closed:
            self._jobs.put((what, job))

    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds until every job submitted so far has run."""
        end = time.monotonic() + max(0.0, timeout)
        while self._jobs.unfinished_tasks and time.monotonic() < end:
            time.sleep(0.01)

    def close(self, timeout: float) -> None:
        """Run what is pending (up to ``timeout`` seconds), then stop the worker."""
        self.flush(timeout)
        self._closed = True
        self._jobs.put(None)
        self._thread.join(timeout=max(0.1, timeout))

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            try:
                if item is None:
                    return
                self._run(*item)
            finally:
                self._jobs.task_done()

    def _run(self, what: str, job: Callable[[], object]) -> None:
        self._tell(self._attempts(what, job))

    def _attempts(self, what: str, job: Callable[[], object]) -> str | None:
        """Run ``job`` with retries; why it could not be delivered, or ``None``."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                job()
                return None
            except DeliveryError as error:
                log.warning("%s: %s was refused (%s); not retried", self.name, what, error)
                return f"{what} was refused ({error})"
            except Exception as error:  # network, timeout, 5xx, a library's own error
                if attempt == ATTEMPTS:
                    log.warning(
                        "%s: %s failed after %d attempts: %s", self.name, what, ATTEMPTS, error
                    )
                    return f"{what} failed after {ATTEMPTS} attempts: {error}"
                self._sleep(BACKOFF[min(attempt - 1, len(BACKOFF) - 1)])
        return None  # not reached: the last attempt returns

    def _tell(self, reason: str | None) -> None:
        """Give the observer the outcome; an observer's own failure is only logged."""
        if self._observer is None:
            return
        try:
            self._observer(self.channel, None if reason is None else redact(reason))
        except Exception as error:
            log.warning("%s: cannot record a delivery outcome: %s", self.name, error)
