"""Queued-ingestion operations as accepted by `POST /v1/rest/ingestion/queued/...`, kept in DuckDB.

An accepted request is answered only once it is on disk, so nothing acknowledged is lost in a crash. A
commit to the DuckDB file costs about a millisecond, which would cap the endpoint far below the hundreds
of requests per second a benchmark sends, so the requests waiting are committed together
(`group_commit`) and their handlers woken.

Blob credentials (the SAS query or `;managed_identity=` suffix) are stored apart from the plain URL, only
so that unfinished blobs can be resumed after a restart; they never appear in a status answer or a log.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from .catalog import Catalog, insert_arrow
from .group_commit import GroupCommitter

_BLOB_TYPE = pa.struct([("url", pa.string()), ("credential", pa.string()), ("source_id", pa.string()), ("raw_size", pa.int64())])


@dataclass(frozen=True)
class BlobRef:
    url: str
    credential: str
    source_id: str
    raw_size: int | None


@dataclass(frozen=True)
class Operation:
    operation_id: str
    database: str
    table: str
    tracked: bool
    start_time: datetime
    properties: dict[str, Any]
    blobs: tuple[BlobRef, ...]


@dataclass(frozen=True)
class BlobResult:
    """The stored final state of one blob of an operation (absent while Queued or InProgress)."""

    status: str
    rows: int
    error_code: str | None
    failure_status: str | None
    details: str | None
    started_at: datetime
    finished_at: datetime


_Waiting = tuple[Operation, asyncio.Future, asyncio.AbstractEventLoop]
"""An operation put to the writer, with the future its request handler awaits and that handler's loop."""


class OperationStore:
    """Writes operations with group commit and reads them back for status answers and resumption."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._writer = GroupCommitter[_Waiting](catalog, "operation-writer", _write, _wake)

    async def record(self, operation: Operation) -> None:
        """Persist `operation`; returns once it is committed (raises if the commit failed)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        self._writer.put((operation, done, loop))
        await done

    def close(self) -> None:
        self._writer.close()

    def get(self, operation_id: str) -> Operation | None:
        with self._catalog.cursor() as cursor:
            row = cursor.execute(
                'SELECT operation_id, database, "table", tracked, start_time, properties, blobs FROM _emulator.operations '
                "WHERE operation_id = ?",
                [operation_id],
            ).fetchone()
        return _operation(row) if row else None

    def results(self, operation_id: str) -> dict[int, BlobResult]:
        with self._catalog.cursor() as cursor:
            rows = cursor.execute(
                "SELECT blob_index, status, row_count, error_code, failure_status, details, started_at, finished_at "
                "FROM _emulator.blob_outcomes WHERE operation_id = ?",
                [operation_id],
            ).fetchall()
        return {index: BlobResult(*rest) for index, *rest in rows}

    def unfinished(self) -> list[tuple[Operation, int]]:
        """(operation, blob index) of every recorded blob with no final state: to resume after a restart."""
        with self._catalog.cursor() as cursor:
            rows = cursor.execute(
                'SELECT o.operation_id, o.database, o."table", o.tracked, o.start_time, o.properties, o.blobs, b.i '
                "FROM _emulator.operations o, range(len(o.blobs)) AS b(i) "
                "WHERE NOT EXISTS (SELECT 1 FROM _emulator.blob_outcomes r WHERE r.operation_id = o.operation_id "
                "AND r.blob_index = b.i) ORDER BY o.start_time, b.i"
            ).fetchall()
        return [(_operation(row[:7]), int(row[7])) for row in rows]


def _write(cursor: Any, batch: list[_Waiting]) -> None:
    operations = [operation for operation, _, _ in batch]
    insert_arrow(
        cursor,
        "_emulator.operations",
        pa.table(
            {
                "operation_id": [op.operation_id for op in operations],
                "database": [op.database for op in operations],
                "table": [op.table for op in operations],
                "tracked": [op.tracked for op in operations],
                "start_time": pa.array([op.start_time for op in operations], pa.timestamp("us")),
                "properties": [json.dumps(op.properties) for op in operations],
                "blobs": pa.array([[blob.__dict__ for blob in op.blobs] for op in operations], pa.list_(_BLOB_TYPE)),
            }
        ),
    )


def _wake(batch: list[_Waiting], error: Exception | None) -> None:
    for _, done, loop in batch:
        loop.call_soon_threadsafe(_settle, done, error)


def _settle(done: asyncio.Future, error: Exception | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _operation(row: tuple) -> Operation:
    operation_id, database, table, tracked, start_time, properties, blobs = row
    return Operation(
        operation_id,
        database,
        table,
        tracked,
        start_time,
        json.loads(properties),
        tuple(BlobRef(blob["url"], blob["credential"], blob["source_id"], blob["raw_size"]) for blob in blobs),
    )
