"""Group commit: one writer thread commits whatever records are waiting in one DuckDB transaction.

Why: a commit to the DuckDB file costs about a millisecond of CPU whatever it holds, and it holds the GIL
for much of it. Committed one at a time, the records that arrive by the hundred a second (accepted
operations, failed blobs) would cost the request handlers most of their core; committed together, the
commit is shared by all that waited while the previous one ran.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .catalog import Catalog

logger = logging.getLogger(__name__)

T = TypeVar("T")

BATCH_LIMIT = 1000
"""The most records one transaction takes, so one commit never holds the writer for long."""

Write = Callable[[Any, list[T]], None]
"""Writes a batch of records with the cursor it is given, inside the writer's transaction."""
Settle = Callable[[list[T], Exception | None], None]
"""Called after the transaction with its records and the error that rolled it back (None: committed)."""


class GroupCommitter(Generic[T]):
    """A writer thread that takes records from `put` and commits them in batches, then settles each batch."""

    def __init__(self, catalog: Catalog, name: str, write: Write[T], settle: Settle[T]) -> None:
        self._catalog = catalog
        self._write = write
        self._settle = settle
        # SimpleQueue: its put never waits on a lock the writer may hold, so an event loop is never held up.
        self._queue: queue.SimpleQueue[T | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def put(self, record: T) -> None:
        self._queue.put(record)

    def close(self) -> None:
        """Commit and settle what was put before, then stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        with self._catalog.cursor() as cursor:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < BATCH_LIMIT:
                    try:
                        record = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if record is None:
                        self._queue.put(None)  # stop after this batch
                        break
                    batch.append(record)
                error = self._commit(cursor, batch)
                try:
                    self._settle(batch, error)
                except Exception:
                    logger.exception("settling %d committed records failed", len(batch))

    def _commit(self, cursor: Any, batch: list[T]) -> Exception | None:
        try:
            cursor.execute("BEGIN")
            self._write(cursor, batch)
            cursor.execute("COMMIT")
        except Exception as error:
            logger.exception("could not commit %d records", len(batch))
            with contextlib.suppress(Exception):
                cursor.execute("ROLLBACK")
            return error
        return None
