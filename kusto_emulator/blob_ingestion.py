"""How one source is ingested: resolve the mapping, fetch and unpack the data, append it, record the extent.

Every ingestion path uses this pipeline: the worker pool for queued ingestion (`worker.py`) and, on the
request's own thread, `.ingest` commands and streaming ingestion (`direct_ingestion.py`). A blob is
downloaded with the credential its URL carries; data that came with the request (`LocalSource`) is read
from the file the caller wrote. The rows, the extent record and, for tracked REST operations, the blob's
final status are committed in one DuckDB transaction, so after a crash a blob is either fully ingested
and marked Succeeded or not ingested at all.
"""

from __future__ import annotations

import json
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from .archives import unpack
from .catalog import Catalog, Failure, utc_now
from .errors import EmulatorError, IngestionError
from .faults import Faults
from .formats import SUPPORTED_FORMATS, append_records
from .ingestion_job import BlobOutcome, IngestionJob
from .ingestion_properties import as_bool, parse_creation_time, tag_list
from .mappings import FORMAT_MAPPING_KIND, ColumnMapping, check_against_table, identity_mapping, parse_mapping
from .storage import BlobAccess, delete_blob, download_blob

_RECORD_OUTCOME_SQL = "INSERT INTO _emulator.blob_outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class LocalSource:
    """Data that came with the request, already in a file; `name` decides decompression (`x.gz`) as a blob name would."""

    path: Path
    name: str


@dataclass(frozen=True)
class _Plan:
    """What the job's properties ask for, checked before any data is read."""

    fmt: str
    columns: list[tuple[str, str]]
    mapping: list[ColumnMapping]
    tags: list[str]
    if_not_exists: list[str]
    creation_time: datetime | None


class BlobIngestor:
    """Ingests one job at a time on the calling thread; safe to call from many threads at once."""

    def __init__(self, catalog: Catalog, blobs: BlobAccess, faults: Faults, temp_dir: Path, max_data_size: int) -> None:
        self._catalog = catalog
        self._blobs = blobs
        self._faults = faults
        self.temp_dir = temp_dir
        self._max_data_size = max_data_size
        self._lock = threading.Lock()
        # ingestIfNotExists is check-then-append: one lock per table makes the pair atomic.
        self._table_locks: dict[tuple[str, str], threading.Lock] = {}

    def ingest(self, job: IngestionJob, started: datetime, local: LocalSource | None = None) -> BlobOutcome:
        """Ingest the job's blob (or `local`, data that came with the request); raises IngestionError on failure."""
        forced = self._faults.forced_blob_error(job.plain_url)
        if forced:
            raise IngestionError(forced, f"failure forced by the emulator's failBlobs rule for '{job.plain_url}'")
        plan = self._plan(job)
        with tempfile.TemporaryDirectory(dir=self.temp_dir) as scratch:
            if local is None:
                client = self._blobs.client(job.blob_url)
                downloaded = Path(scratch) / "blob"
                size = download_blob(client, downloaded, job.plain_url)
                if as_bool(job.properties.get("deleteAfterDownload")):
                    delete_blob(client, job.plain_url)
                local = LocalSource(downloaded, job.plain_url)
            else:
                size = local.path.stat().st_size
            if size == 0:
                raise IngestionError("BadRequest_EmptyBlob", f"blob '{job.plain_url}' is empty")
            files = unpack(local.path, local.name, job.properties.get("zipPattern"))
            self._check_size(job, sum(path.stat().st_size for path in files))
            lock = self._table_lock(job) if plan.if_not_exists else None
            if lock:
                lock.acquire()
            try:
                return self._commit(job, started, plan, files)
            finally:
                if lock:
                    lock.release()

    def _plan(self, job: IngestionJob) -> _Plan:
        fmt = str(job.properties.get("format") or "csv").lower()
        if fmt not in SUPPORTED_FORMATS:
            raise IngestionError("BadRequest_FormatNotSupported", f"the emulator cannot ingest format '{fmt}'")
        try:
            columns = self._catalog.table_columns(job.database, job.table)
        except EmulatorError as error:
            raise IngestionError(error.code, error.message) from None
        return _Plan(
            fmt,
            columns,
            self._resolve_mapping(job, fmt, columns),
            tag_list(job.properties.get("tags"), "tags"),
            tag_list(job.properties.get("ingestIfNotExists"), "ingestIfNotExists"),
            parse_creation_time(job.properties.get("creationTime")),
        )

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

    def _commit(self, job: IngestionJob, started: datetime, plan: _Plan, files: list[Path]) -> BlobOutcome:
        with self._catalog.cursor() as cur:
            cur.execute("BEGIN")
            try:
                if plan.if_not_exists and self._catalog.ingest_by_tag_exists(job.database, job.table, plan.if_not_exists, cur):
                    details = f"skipped: an extent already has an ingest-by tag in {plan.if_not_exists}"
                    outcome = BlobOutcome(job, "Skipped", 0, None, None, details, started)
                    record_outcome(cur, outcome)
                    cur.execute("COMMIT")
                    return outcome
                rows = append_records(
                    cur,
                    self._catalog.table_ref(job.database, job.table),
                    plan.columns,
                    plan.fmt,
                    files,
                    plan.mapping,
                    as_bool(job.properties.get("ignoreFirstRecord")),
                )
                if rows == 0:
                    raise IngestionError("Stream_NoDataToIngest", f"blob '{job.plain_url}' holds no records to ingest")
                extent_id = self._catalog.add_extent(
                    cur,
                    database=job.database,
                    table=job.table,
                    creation_time=plan.creation_time,
                    tags=plan.tags,
                    source_id=job.source_id,
                    row_count=rows,
                    operation_id=job.operation_id,
                    blob_url=job.plain_url,
                )
                outcome = BlobOutcome(job, "Succeeded", rows, None, None, None, started, utc_now(), str(extent_id))
                record_outcome(cur, outcome)
                cur.execute("COMMIT")
                return outcome
            except BaseException:
                cur.execute("ROLLBACK")
                raise


def failure_outcome(job: IngestionJob, started: datetime, error: IngestionError) -> BlobOutcome:
    return BlobOutcome(job, "Failed", 0, error.code, error.failure_status, error.details, started, utc_now())


def failure_row(outcome: BlobOutcome) -> Failure:
    """The `.show ingestion failures` row of a failed outcome."""
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


def record_outcome(cursor: duckdb.DuckDBPyConnection, outcome: BlobOutcome) -> None:
    if outcome.job.blob_index is not None:
        cursor.execute(_RECORD_OUTCOME_SQL, outcome_row(outcome))


def outcome_row(outcome: BlobOutcome) -> list[Any]:
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
