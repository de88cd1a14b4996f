"""The ingestion worker: a bounded pool of threads that ingest queued blobs in the background.

Both queued front doors feed it: the REST queued-ingestion endpoint (`rest_ingestion.py`) and the
queue-based protocol (`queued_protocol.py`). Each job is one blob, ingested by `blob_ingestion.py`, which
commits the rows, the extent and (tracked REST operations) the final status in one transaction, so after
a crash a blob is either fully ingested and marked Succeeded or not ingested at all (and is resumed).

A failed blob has no rows to commit, only its failure record and final status, and failures come by the
thousand when a benchmark or a fault rule fails every blob: one transaction each cost 2.4 ms of CPU a blob,
so a burst of 60,000 kept the emulator busy for minutes after it. So failures are committed together by one
writer (`group_commit`), 0.08 ms a blob; the blob stays InProgress, and its caller is told, only once its
failure is on disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from .activity import RequestActivity
from .blob_ingestion import BlobIngestor, failure_outcome, failure_row, outcome_row
from .catalog import Catalog, insert_rows, utc_now
from .config import DEFAULT_MAX_DATA_SIZE
from .errors import IngestionError
from .faults import Faults
from .group_commit import GroupCommitter
from .ingestion_job import BlobOutcome, IngestionJob
from .stats import Stats
from .storage import BlobAccess

logger = logging.getLogger(__name__)


OnFinished = Callable[[BlobOutcome], None]


@dataclass(frozen=True)
class _Failed:
    """A failed job's outcome on its way to the failure writer, and the callback to call once it is recorded."""

    outcome: BlobOutcome
    on_finished: OnFinished | None


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
        self._blobs = BlobAccess(storage_connection_string, workers)
        self._faults = faults
        self._stats = stats
        self.ingestor = BlobIngestor(catalog, self._blobs, faults, temp_dir, max_data_size)
        # Scratch files left by a crash belong to blobs that will be resumed from the start: drop them.
        shutil.rmtree(temp_dir, ignore_errors=True)
        temp_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._in_progress: dict[tuple[str, int], datetime] = {}
        self._pending = 0
        self._idle = threading.Condition(self._lock)
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
            outcome = self.ingestor.ingest(job, started)
        except IngestionError as error:
            failure = failure_outcome(job, started, error)
        except Exception:
            logger.exception("ingestion of %s into %s.%s crashed", job.plain_url, job.database, job.table)
            error = IngestionError("General_InternalServerError", "the emulator failed unexpectedly; see its log")
            failure = failure_outcome(job, started, error)
        else:
            self._done(outcome, on_finished)
            return
        self._failures.put(_Failed(failure, on_finished))

    def _write_failures(self, cursor: duckdb.DuckDBPyConnection, batch: list[_Failed]) -> None:
        outcomes = [failed.outcome for failed in batch]
        self._catalog.record_failures([failure_row(outcome) for outcome in outcomes], cursor)
        insert_rows(
            cursor,
            "_emulator.blob_outcomes",
            [outcome_row(outcome) for outcome in outcomes if outcome.job.blob_index is not None],
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
