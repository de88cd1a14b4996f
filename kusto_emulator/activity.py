"""Requests being answered right now, so that background ingestion keeps out of their way.

Why: the emulator is one Python process, so its request handlers and its ingestion threads share one
interpreter lock: one core's worth of Python. Kusto ingests on other nodes than the ones that answer. Here an
ingestion thread that finds a request being answered waits for a quiet moment (at most GIVE_WAY_SECONDS)
before it takes its next blob, so a burst of requests is answered at full speed and the blobs it brought are
ingested right after it. Niceness alone does not do this: it orders threads for the CPU, not for the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

GIVE_WAY_SECONDS = 0.02
"""The longest an ingestion thread waits for a quiet moment, so ingestion still moves under endless requests."""


class RequestActivity:
    """Counts the requests being answered; ingestion threads `give_way` to them."""

    def __init__(self) -> None:
        self._quiet = threading.Condition()
        self._answering = 0

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Marks one request as being answered for the duration of the block."""
        with self._quiet:
            self._answering += 1
        try:
            yield
        finally:
            with self._quiet:
                self._answering -= 1
                if not self._answering:
                    self._quiet.notify_all()

    def give_way(self, limit: float = GIVE_WAY_SECONDS) -> bool:
        """Wait until no request is being answered, at most `limit` seconds; whether it got quiet."""
        with self._quiet:
            return self._quiet.wait_for(lambda: not self._answering, timeout=limit)
