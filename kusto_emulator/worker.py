"""The ingestion worker: a bounded pool of threads that download, decode and append blobs.

Both ingestion front doors feed it: the REST queued-ingestion endpoint (`rest_ingestion.py`) and the
queue-based protocol (`queued_protocol.py`). Each job is one blob. The rows, the extent record and, for
tracked REST operations, the blob's final status are committed in one DuckDB transaction, so after a
crash a blob is either fully ingested and marked Succeeded or not ingested at all (and is resumed).

A failed blob has no rows to commit, only its failure record and final status, and failures come by the
thousand when a benchmark or a fault rule fails every blob: one transaction each cost 2.4 ms of CPU a blob,
so a burst of 60,000 kept the emulator busy for minutes after it. So failures are committed together by one
writer (`group_commit`), 0.08 ms a blob; the blob stays InProgress, and its caller is told, only once its
failure is on disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from .activity import RequestActivity
from .archives import unpack
from .catalog import Catalog, Failure, insert_rows, utc_now
from .config import DEFAULT_MAX_DATA_SIZE
from .errors import EmulatorError, IngestionError
from .faults import Faults
from .formats import SUPPORTED_FORMATS, append_records
from .group_commit import GroupCommitter
from .ingestion_properties import as_bool, parse_creation_time, tag_list
from .mappings import FORMAT_MAPPING_KIND, ColumnMapping, check_against_table, identity_mapping, parse_mapping
from .stats import Stats
from .storage import BlobAccess, delete_blob, download_blob, split_credential

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestionJob:
    """One blob to ingest. `blob_url` carries its credential (SAS query or `;managed_identity=...`).

    `properties` uses the REST (v2) property names: format, ingestionMappingReference, ingestionMapping
    (a JSON string), ignoreFirstRecord, tags, ingestIfNotExists, creationTime, zipPattern,
    deleteAfterDownload. `blob_index` is set only for tracked REST operations: the worker then records the
    blob's final status in `_emulator.blob_outcomes` within the ingestion transaction.
    """

    database: str
    table: str
    blob_url: str
    source_id: str
    raw_size: int | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    operation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    blob_index: int | None = None

    @property
    def plain_url(self) -> str:
        """The blob URL without its credential: the only form that is logged or stored."""
        return split_credential(self.blob_url)[0]


@dataclass(frozen=True)
class BlobOutcome:
    """How one job ended: Succeeded (rows appended), Skipped (ingestIfNotExists matched) or Failed."""

    job: IngestionJob
    status: str
    rows: int = 0
    error_code: str | None = None
    failure_status: str | None = None
    details: str | None = None
    started_at: datetime = field(default_factory=utc_now)
    finished_at: datetime = field(default_factory=utc_now)


OnFinished = Callable[[BlobOutcome], None]


@dataclass(frozen=True)
class _Failed:
    """A failed job's outcome on its way to the failure writer, and the callback to call once it is recorded."""

    outcome: BlobOutcome
    on_finished: OnFinished | None


_RECORD_OUTCOME_SQL = "INSERT INTO _emulator.blob_outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _lower_priority() -> None:
    """Lower this worker thread's scheduling priority (Linux nice is per thread).

    Ingestion runs behind the API, as in Kusto: on a small machine the request handlers should keep
    answering quickly while a backlog of blobs is worked off. Niceness orders the work done outside the
    interpreter lock (DuckDB, decompression); `RequestActivity.give_way` orders the Python.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class IngestionWorker:
    """Runs ingestion jobs on `workers` threads; `submit` never blocks on the ingestion itself."""

    def __init__(
        self,
        catalog: Catalog,
        storage_connection_string: str,
        faults: Faults,
        stats: Stats,
        workers: int,
        temp_dir: Path,
        max_data_size: int = DEFAULT_MAX_DATA_SIZE,
        activity: RequestActivity | None = None,
    ) -> None:
        self._catalog = catalog
        self._activity = activity  # the requests to give way to; None without the HTTP front (tests)
        self._max_data_size = max_data_size
        self._blobs = BlobAccess(storage_connection_string, workers)
        self._faults = faults
        self._stats = stats
        self._temp_dir = temp_dir
        # Scratch files left by a crash belong to blobs that will be resumed from the start: drop them.
        shutil.rmtree(temp_dir, ignore_errors=True)
        temp_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._in_progress: dict[tuple[str, int], datetime] = {}
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        # ingestIfNotExists is check-then-append: one lock per table makes the pair atomic.
        self._table_locks: dict[tuple[str, str], threading.Lock] = {}
        # A plain queue and threads rather than an executor: submit runs 20 times per POST, and a Future per job
        # costs more than the rest of the request.
        self._jobs: queue.SimpleQueue[tuple[IngestionJob, OnFinished | None] | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._failures = GroupCommitter[_Failed](catalog, "failure-writer", self._write_failures, self._failures_written)
        self._reporters = ThreadPoolExecutor(max(1, workers), thread_name_prefix="report")
        self._threads = [threading.Thread(target=self._serve, name=f"ingest-{i}", daemon=True) for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, job: IngestionJob, on_finished: OnFinished | None = None) -> None:
        """Queue a job; `on_finished` is called on a worker thread with the outcome (exceptions are logged)."""
        if self._stopping.is_set():
            raise RuntimeError("the ingestion worker is shut down")
        with self._lock:
            self._pending += 1
        self._jobs.put((job, on_finished))

    def in_progress(self, operation_id: str) -> dict[int, datetime]:
        """Blob index -> start time of the tracked blobs of an operation that are being ingested now."""
        with self._lock:
            return {index: started for (op, index), started in self._in_progress.items() if op == operation_id}

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or running (tests and shutdown); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def shutdown(self) -> None:
        """Stop taking jobs and wait for running ones; queued jobs of tracked operations resume after restart."""
        self._stopping.set()
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._failures.close()
        self._reporters.shutdown()
        self._blobs.close()

    def _serve(self) -> None:
        _lower_priority()
        while True:
            item = self._jobs.get()
            if item is None:
                return
            self._faults.wait_while_held(self._stopping)
            if self._activity is not None:
                self._activity.give_way()
            if self._stopping.is_set():
                self._finished()  # dropped: left without a final status, so it is resumed at the next start
                continue
            self._run(*item)

    def _finished(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _run(self, job: IngestionJob, on_finished: OnFinished | None) -> None:
        """Ingest the job; an unexpected error (an emulator bug) becomes a transient failure, never a lost blob."""
        started = utc_now()
        if job.blob_index is not None:
            with self._lock:
                self._in_progress[(job.operation_id, job.blob_index)] = started
        try:
            outcome = self._ingest_or_raise(job, started)
        except IngestionError as error:
            failure = _failure(job, started, error)
        except Exception:
            logger.exception("ingestion of %s into %s.%s crashed", job.plain_url, job.database, job.table)
            error = IngestionError("General_InternalServerError", "the emulator failed unexpectedly; see its log")
            failure = _failure(job, started, error)
        else:
            self._done(outcome, on_finished)
            return
        self._failures.put(_Failed(failure, on_finished))

    def _write_failures(self, cursor: duckdb.DuckDBPyConnection, batch: list[_Failed]) -> None:
        outcomes = [failed.outcome for failed in batch]
        self._catalog.record_failures([_failure_row(outcome) for outcome in outcomes], cursor)
        insert_rows(
            cursor,
            "_emulator.blob_outcomes",
            [_outcome_row(outcome) for outcome in outcomes if outcome.job.blob_index is not None],
        )

    def _failures_written(self, batch: list[_Failed], error: Exception | None) -> None:
        if error is not None:
            # Not recorded: these blobs have no final status, so they are resumed at the next start.
            logger.error("the failures of %d blobs were not recorded; they are resumed at the next start", len(batch))
        for failed in batch:
            if failed.on_finished is None:
                self._done(failed.outcome, None)
            else:  # a caller's callback does network I/O (queue-protocol notifications): not on the writer's thread
                self._reporters.submit(self._done, failed.outcome, failed.on_finished)

    def _done(self, outcome: BlobOutcome, on_finished: OnFinished | None) -> None:
        """The job's outcome is recorded: it is no longer in progress, and its caller is told."""
        job = outcome.job
        try:
            if job.blob_index is not None:
                with self._lock:
                    self._in_progress.pop((job.operation_id, job.blob_index), None)
            self._report(outcome, on_finished)
        finally:
            self._finished()

    def _report(self, outcome: BlobOutcome, on_finished: OnFinished | None) -> None:
        job = outcome.job
        self._stats.count_blob(outcome.status, outcome.rows)
        if outcome.status == "Failed":
            logger.info(
                "ingestion %s.%s %s failed: %s (%s)",
                job.database,
                job.table,
                job.plain_url,
                outcome.error_code,
                outcome.failure_status,
            )
        else:
            logger.info(
                "ingestion %s.%s %s %s: %d rows", job.database, job.table, job.plain_url, outcome.status.lower(), outcome.rows
            )
        if on_finished is not None:
            try:
                on_finished(outcome)
            except Exception:
                logger.exception("on_finished callback failed for %s", job.plain_url)

    def _resolve_mapping(self, job: IngestionJob, fmt: str, columns: list[tuple[str, str]]) -> list[ColumnMapping]:
        kind = FORMAT_MAPPING_KIND[fmt]
        reference = job.properties.get("ingestionMappingReference")
        inline = job.properties.get("ingestionMapping")
        if reference and inline:
            raise IngestionError("BadRequest_DuplicateMapping", "both ingestionMapping and ingestionMappingReference are set")
        if reference:
            try:
                stored = self._catalog.get_mapping(job.database, job.table, str(reference), kind)
            except EmulatorError as error:
                raise IngestionError("BadRequest_MappingReferenceWasNotFound", error.message) from None
            mapping = parse_mapping(stored.mapping, kind)
        elif inline:
            mapping = parse_mapping(inline if isinstance(inline, str) else json.dumps(inline), kind)
        else:
            return identity_mapping(columns[:1] if fmt in ("txt", "raw") else columns, kind)
        check_against_table(mapping, columns, job.table)
        return mapping

    def _ingest_or_raise(self, job: IngestionJob, started: datetime) -> BlobOutcome:
        forced = self._faults.forced_blob_error(job.plain_url)
        if forced:
            raise IngestionError(forced, f"failure forced by the emulator's failBlobs rule for '{job.plain_url}'")
        fmt = str(job.properties.get("format") or "csv").lower()
        if fmt not in SUPPORTED_FORMATS:
            raise IngestionError("BadRequest_FormatNotSupported", f"the emulator cannot ingest format '{fmt}'")
        try:
            columns = self._catalog.table_columns(job.database, job.table)
        except EmulatorError as error:
            raise IngestionError(error.code, error.message) from None
        mapping = self._resolve_mapping(job, fmt, columns)
        tags = tag_list(job.properties.get("tags"), "tags")
        if_not_exists = tag_list(job.properties.get("ingestIfNotExists"), "ingestIfNotExists")
        creation_time = parse_creation_time(job.properties.get("creationTime"))
        with tempfile.TemporaryDirectory(dir=self._temp_dir) as scratch:
            client = self._blobs.client(job.blob_url)
            downloaded = Path(scratch) / "blob"
            size = download_blob(client, downloaded, job.plain_url)
            if as_bool(job.properties.get("deleteAfterDownload")):
                delete_blob(client, job.plain_url)
            if size == 0:
                raise IngestionError("BadRequest_EmptyBlob", f"blob '{job.plain_url}' is empty")
            files = unpack(downloaded, job.plain_url, job.properties.get("zipPattern"))
            self._check_size(job, sum(path.stat().st_size for path in files))
            lock = self._table_lock(job) if if_not_exists else None
            if lock:
                lock.acquire()
            try:
                return self._commit(job, started, fmt, columns, files, mapping, tags, if_not_exists, creation_time)
            finally:
                if lock:
                    lock.release()

    def _check_size(self, job: IngestionJob, uncompressed: int) -> None:
        """Kusto refuses data over its size limit unless the caller set ignoreSizeLimit."""
        if uncompressed > self._max_data_size and not as_bool(job.properties.get("ignoreSizeLimit")):
            raise IngestionError(
                "BadRequest_FileTooLarge",
                f"blob '{job.plain_url}' holds {uncompressed} bytes uncompressed, over the limit of {self._max_data_size} "
                "(maxDataSize); set ignoreSizeLimit to ingest it anyway",
            )

    def _table_lock(self, job: IngestionJob) -> threading.Lock:
        with self._lock:
            return self._table_locks.setdefault((job.database, job.table), threading.Lock())

    def _commit(
        self,
        job: IngestionJob,
        started: datetime,
        fmt: str,
        columns: list[tuple[str, str]],
        files: list[Path],
        mapping: list[ColumnMapping],
        tags: list[str],
        if_not_exists: list[str],
        creation_time: datetime | None,
    ) -> BlobOutcome:
        with self._catalog.cursor() as cur:
            cur.execute("BEGIN")
            try:
                if if_not_exists and self._catalog.ingest_by_tag_exists(job.database, job.table, if_not_exists, cur):
                    outcome = BlobOutcome(
                        job,
                        "Skipped",
                        0,
                        None,
                        None,
                        f"skipped: an extent already has an ingest-by tag in {if_not_exists}",
                        started,
                    )
                    _record_outcome(cur, outcome)
                    cur.execute("COMMIT")
                    return outcome
                rows = append_records(
                    cur,
                    self._catalog.table_ref(job.database, job.table),
                    columns,
                    fmt,
                    files,
                    mapping,
                    as_bool(job.properties.get("ignoreFirstRecord")),
                )
                if rows == 0:
                    raise IngestionError("Stream_NoDataToIngest", f"blob '{job.plain_url}' holds no records to ingest")
                self._catalog.add_extent(
                    cur,
                    database=job.database,
                    table=job.table,
                    creation_time=creation_time,
                    tags=tags,
                    source_id=job.source_id,
                    row_count=rows,
                    operation_id=job.operation_id,
                    blob_url=job.plain_url,
                )
                outcome = BlobOutcome(job, "Succeeded", rows, None, None, None, started)
                _record_outcome(cur, outcome)
                cur.execute("COMMIT")
                return outcome
            except BaseException:
                cur.execute("ROLLBACK")
                raise


def _failure(job: IngestionJob, started: datetime, error: IngestionError) -> BlobOutcome:
    return BlobOutcome(job, "Failed", 0, error.code, error.failure_status, error.details, started, utc_now())


def _failure_row(outcome: BlobOutcome) -> Failure:
    job = outcome.job
    return Failure(
        operation_id=job.operation_id,
        database=job.database,
        table=job.table,
        source_path=job.plain_url,
        source_id=job.source_id,
        error_code=outcome.error_code or "",
        failure_status=outcome.failure_status or "",
        details=outcome.details or "",
        failed_on=outcome.finished_at,
    )


def _record_outcome(cursor: duckdb.DuckDBPyConnection, outcome: BlobOutcome) -> None:
    if outcome.job.blob_index is not None:
        cursor.execute(_RECORD_OUTCOME_SQL, _outcome_row(outcome))


def _outcome_row(outcome: BlobOutcome) -> list[Any]:
    """The job's row of `_emulator.blob_outcomes` (only tracked REST operations have one)."""
    job = outcome.job
    return [
        job.operation_id,
        job.blob_index,
        outcome.status,
        outcome.rows,
        outcome.error_code,
        outcome.failure_status,
        outcome.details,
        outcome.started_at,
        outcome.finished_at,
    ]
