"""Ingestion while the client waits: `.ingest` commands and streaming ingestion, on the request's own thread.

Queued ingestion answers before the data is read; these answer after it is committed, as Kusto's engine
does, with the same pipeline as the worker (`blob_ingestion.py`). A failure is the answer to the request:
Kusto's ingestion error code, HTTP 400 when permanent, 500 when retrying may help. Failures of `.ingest`
commands are also listed by `.show ingestion failures` (Kusto documents that command for them); those of
streaming ingestion are not (Kusto keeps them apart, in `.show streamingingestion failures`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .blob_ingestion import LocalSource, failure_outcome, failure_row
from .catalog import utc_now
from .errors import BadRequest, EmulatorError, IngestionError, InternalError
from .ids import random_uuid
from .ingestion_job import BlobOutcome, IngestionJob
from .state import EmulatorState

logger = logging.getLogger(__name__)


def ingestion_refusal(error: IngestionError) -> EmulatorError:
    """The HTTP answer to a failed direct ingestion: 400 for a permanent failure, 500 for a transient one."""
    refusal: EmulatorError = BadRequest(error.details) if error.permanent else InternalError(error.details)
    refusal.code = error.code  # Kusto's ingestion error code, e.g. Stream_WrongNumberOfFields
    return refusal


def ingest_data(state: EmulatorState, job: IngestionJob, data: bytes, name: str, *, record_failure: bool) -> BlobOutcome:
    """Ingest `data` (the job's source, sent with the request) now; `name` decides decompression (`x.gz`)."""
    with tempfile.TemporaryDirectory(dir=state.worker.ingestor.temp_dir) as scratch:
        path = Path(scratch) / "data"
        path.write_bytes(data)
        return _run(state, job, LocalSource(path, name), record_failure=record_failure)


def ingest_blob(state: EmulatorState, job: IngestionJob, *, record_failure: bool) -> BlobOutcome:
    """Download and ingest the job's blob now (`.ingest into`, streaming from a blob)."""
    return _run(state, job, None, record_failure=record_failure)


def new_job(database: str, table: str, source: str, properties: Mapping[str, Any], raw_size: int | None = None) -> IngestionJob:
    """A job for one source of a direct ingestion; `source` is a blob URL, or a name for data sent with the request."""
    return IngestionJob(database, table, source, random_uuid(), raw_size, dict(properties))


def _run(state: EmulatorState, job: IngestionJob, local: LocalSource | None, *, record_failure: bool) -> BlobOutcome:
    started = utc_now()
    try:
        outcome = state.worker.ingestor.ingest(job, started, local)
    except IngestionError as error:
        state.stats.count_blob("Failed")
        logger.info(
            "direct ingestion %s.%s %s failed: %s (%s)", job.database, job.table, job.plain_url, error.code, error.failure_status
        )
        if record_failure:
            state.catalog.record_failures([failure_row(failure_outcome(job, started, error))])
        raise ingestion_refusal(error) from None
    state.stats.count_blob(outcome.status, outcome.rows)
    logger.info(
        "direct ingestion %s.%s %s %s: %d rows", job.database, job.table, job.plain_url, outcome.status.lower(), outcome.rows
    )
    return outcome
