"""Fills a pending queue with valid pending-blob messages, fast, for the drain benchmarks.

Each message names a distinct blob URL with its own ETag and `sourceId` (the recorder's `source_id()`),
and is serialised with `schemas.dump`, so the drain parses exactly what the blob trigger would have
written. The blobs themselves are not uploaded: the emulator is told (`failBlobs`) to fail their names
at once, so its background ingestion does not compete with the drain for the machine's two cores (a
real Kusto cluster runs elsewhere). Everything the drain does per blob still happens: parse, SAS,
POST, tracking record, delete.

Enqueueing is the slow part (about 2 ms of SDK CPU per message), so it runs on several processes, each
with its own client; it is setup, never part of a measured figure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from shared import schemas
from shared.notifications import utc_now_iso
from shared.recorder import source_id
from shared.settings import StorageConnection
from shared.storage import ensure_queue, queue_client

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


def _enqueue_slice(connection_string: str, queue: str, texts: list[str]) -> int:
    connection = StorageConnection(connection_string=connection_string)
    clients = [queue_client(connection, queue) for _ in range(_THREADS_PER_PROCESS)]
    with ThreadPoolExecutor(_THREADS_PER_PROCESS) as pool:
        futures = [
            pool.submit(lambda c=client, p=part: [c.send_message(texts[i]) for i in p])
            for client, part in zip(clients, _slices(len(texts), _THREADS_PER_PROCESS), strict=False)
        ]
        for future in futures:
            future.result()
    for client in clients:
        client.close()
    return len(texts)


def fill_pending_queue(
    connection_string: str, queue: str, blob_endpoint: str, container: str, database: str, table: str, count: int, run: str
) -> None:
    """Put `count` pending messages on `queue` (created if missing), using every core."""
    client = queue_client(StorageConnection(connection_string=connection_string), queue)
    ensure_queue(client)
    texts = [pending_message(blob_endpoint, container, database, table, index, run) for index in range(count)]
    processes = max(2, os.cpu_count() or 2)
    with ProcessPoolExecutor(processes) as pool:
        sent = sum(
            pool.map(
                _enqueue_slice,
                [connection_string] * processes,
                [queue] * processes,
                [texts[part.start : part.stop] for part in _slices(count, processes)],
            )
        )
    if sent != count:
        raise RuntimeError(f"enqueued {sent} pending messages instead of {count}")
    client.close()
