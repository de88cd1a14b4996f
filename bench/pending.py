"""Fills a pending queue with valid pending-blob messages, fast, for the drain benchmarks.

Each message names a distinct blob URL with its own ETag and `sourceId` (the recorder's `source_id()`),
and is serialised with `schemas.dump`, so the drain parses exactly what the blob trigger would have
written. The blobs themselves are not uploaded: the emulator is told (`failBlobs`) to fail their names
at once, so its background ingestion does not compete with the drain for the machine's two cores (a
real Kusto cluster runs elsewhere). Everything the drain does per blob still happens: parse, SAS,
POST, tracking record, delete.

Enqueueing is the slow part (about 2 ms of SDK CPU per message), so it runs on several processes, each
with its own client; it is setup, never part of a measured figure.

A drain larger than Azurite can hold queued at a sensible speed (its cost per queue request grows with the
messages stored, see docs/performance.md) is fed instead: the queue starts with `depth` messages and
`topped_up` sends the rest while the drain runs, never letting more than `depth` wait. The drain sees the
same messages in the same order; only the depth Azurite has to scan stays bounded.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager

from azure.storage.queue import QueueClient

from shared import schemas
from shared.settings import StorageConnection
from shared.staging_area import source_id
from shared.storage import ensure_queue, storage_account
from shared.times import utc_now_iso

FAIL_FAST_PATTERN = "bench-*.csv"
"""Blob names of the throughput scenarios; the emulator fails them without downloading (see module docstring)."""
_THREADS_PER_PROCESS = 8


def pending_message(blob_endpoint: str, container: str, database: str, table: str, index: int, run: str) -> str:
    """The text of one valid pending message for blob number `index` of scenario `run`."""
    name = f"{database}/{table}/{run}/bench-{index:07d}.csv"
    url = f"{blob_endpoint}/{container}/{name}"
    etag = f'"0x8DC{index:013X}"'
    return schemas.dump(
        schemas.PENDING_BLOB,
        {
            "version": 1,
            "blobUrl": url,
            "container": container,
            "blobName": name,
            "etag": etag,
            "size": 64,
            "rawSize": 64,
            "sourceId": source_id(url, etag),
            "database": database,
            "table": table,
            "properties": {"format": "csv"},
            "recordedAt": utc_now_iso(),
        },
    )


def _slices(count: int, parts: int) -> Iterator[range]:
    step = -(-count // parts)
    for start in range(0, count, step):
        yield range(start, min(count, start + step))


def pending_messages(blob_endpoint: str, container: str, database: str, table: str, count: int, run: str) -> list[str]:
    """The texts of `count` valid pending messages of scenario `run`, in the order they are to be queued."""
    return [pending_message(blob_endpoint, container, database, table, index, run) for index in range(count)]


def _clients(connection_string: str, queue: str) -> list[QueueClient]:
    connection = StorageConnection(connection_string=connection_string)
    # An account (a transport, a connection pool) per client: the threads send side by side.
    return [storage_account(connection).queue(queue) for _ in range(_THREADS_PER_PROCESS)]


def _send(clients: list[QueueClient], pool: ThreadPoolExecutor, texts: list[str]) -> None:
    """Send `texts`, split between `clients`, each on a thread of `pool`."""
    futures = [
        pool.submit(lambda c=client, p=part: [c.send_message(texts[i]) for i in p])
        for client, part in zip(clients, _slices(len(texts), len(clients)), strict=False)
    ]
    for future in futures:
        future.result()


def _enqueue_slice(connection_string: str, queue: str, texts: list[str]) -> int:
    clients = _clients(connection_string, queue)
    with ThreadPoolExecutor(len(clients)) as pool:
        _send(clients, pool, texts)
    for client in clients:
        client.close()
    return len(texts)


def fill_pending_queue(connection_string: str, queue: str, texts: list[str]) -> None:
    """Put `texts` on `queue` (created if missing), using every core."""
    client = storage_account(StorageConnection(connection_string=connection_string)).queue(queue)
    ensure_queue(client)
    processes = max(2, os.cpu_count() or 2)
    with ProcessPoolExecutor(processes) as pool:
        sent = sum(
            pool.map(
                _enqueue_slice,
                [connection_string] * processes,
                [queue] * processes,
                [texts[part.start : part.stop] for part in _slices(len(texts), processes)],
            )
        )
    if sent != len(texts):
        raise RuntimeError(f"enqueued {sent} pending messages instead of {len(texts)}")
    client.close()


class _Feeder(threading.Thread):
    """Sends `texts` in order whenever the queue has room under `depth` messages, until all are sent or stopped."""

    _PAUSE_SECONDS = 0.05

    def __init__(self, connection_string: str, queue: str, texts: list[str], depth: int) -> None:
        super().__init__(name="pending-feeder", daemon=True)
        self._clients = _clients(connection_string, queue)
        self._texts = texts
        self._depth = depth
        self._stopped = threading.Event()
        self.sent = 0
        self.error: Exception | None = None

    def run(self) -> None:
        # Small top-ups are as good as large ones, but each costs a count request: wait for a tenth of the room.
        least = max(1, self._depth // 10)
        try:
            with ThreadPoolExecutor(len(self._clients)) as pool:
                while self.sent < len(self._texts) and not self._stopped.is_set():
                    room = self._depth - self._clients[0].get_queue_properties().approximate_message_count
                    if room < least:
                        self._stopped.wait(self._PAUSE_SECONDS)
                        continue
                    batch = self._texts[self.sent : self.sent + room]
                    _send(self._clients, pool, batch)
                    self.sent += len(batch)
        except Exception as error:  # reported by `topped_up` once the drain is over
            self.error = error
        finally:
            for client in self._clients:
                client.close()

    def stop(self) -> None:
        self._stopped.set()
        self.join()


@contextmanager
def topped_up(connection_string: str, queue: str, texts: list[str], depth: int) -> Iterator[None]:
    """While the block runs, send `texts` to `queue` in order, keeping at most `depth` messages queued.

    Raises when the block ends before every text was sent (the drain stopped short of its count, or the feeder
    fell behind it) or the feeder failed: a figure taken over fewer blobs than asked for must not be reported.
    """
    if not texts:
        yield
        return
    feeder = _Feeder(connection_string, queue, texts, depth)
    feeder.start()
    try:
        yield
    finally:
        feeder.stop()
    if feeder.error is not None:
        raise RuntimeError(f"feeding the pending queue failed after {feeder.sent} messages") from feeder.error
    if feeder.sent < len(texts):
        raise RuntimeError(
            f"the drain ended with {len(texts) - feeder.sent} of {len(texts)} top-up messages unsent (depth {depth}):"
            " it stopped early, or the feeder could not keep up with it"
        )
