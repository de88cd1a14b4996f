"""Client of Kusto's queued-ingestion REST endpoint (`/v1/rest/ingestion/...` on the ingest- host), and its models.

The client is a small layer over the shared pipeline (`shared.kusto_pipeline`), which does authentication,
retries, headers, logging and the typing of errors; here are the endpoint's paths, bodies and answers.
Like an Azure SDK client it takes an endpoint, a credential and keyword options, never the app's settings.

Wire details follow the official contract (`kusto-ingest-v2-openapi.yaml`, and the docs where they differ):
the status answer is read with case-insensitive keys and both spellings of its time fields, because the
docs and the spec disagree on them.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest

from shared import error_codes, schemas
from shared.kusto_errors import KustoAuthError, KustoError, PermanentKustoError
from shared.kusto_pipeline import BoundedRetryPolicy, KustoPipeline, TryObserver
from shared.names import InvalidNameError, check_entity_name, quote_path_segment
from shared.redaction import plain_blob_url, redact
from shared.times import utc_now_iso

logger = logging.getLogger(__name__)

FALLBACK_MAX_BLOBS_PER_BATCH = 20
"""Used when the configuration cannot be read: the documented limit (the Java client's 70 is not documented)."""
MAX_CONFIGURATION_AGE_SECONDS = 3600.0
FALLBACK_CONFIGURATION_AGE_SECONDS = 60.0
"""A failed configuration read is retried after a minute, not on every call."""

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?$")
_BLOB_STATES = ("Queued", "InProgress", "Succeeded", "Failed", "Canceled")
FINISHED_BLOB_STATES = frozenset({"Succeeded", "Failed", "Canceled"})


@dataclass(frozen=True)
class IngestConfiguration:
    """What `GET /v1/rest/ingestion/configuration` said (or the fallback when it could not be read)."""

    max_blobs_per_batch: int
    max_data_size: int | None = None
    refresh_interval_seconds: float = MAX_CONFIGURATION_AGE_SECONDS
    from_server: bool = True


@dataclass(frozen=True)
class BlobSource:
    """One blob of a request: `url` carries the access Kusto needs (SAS or `;managed_identity=`)."""

    url: str
    source_id: str
    raw_size: int | None = None


@dataclass(frozen=True)
class BlobOutcome:
    """The state of one blob of an operation; `url` is plain (any credential removed)."""

    source_id: str
    status: str
    error_code: str | None = None
    failure_status: str | None = None
    details: str | None = None
    url: str | None = None
    started_at: str | None = None
    last_updated: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_BLOB_STATES


@dataclass(frozen=True)
class OperationStatus:
    """The state of one operation: counts per state and, when asked for, one outcome per blob."""

    succeeded: int
    failed: int
    in_progress: int
    canceled: int
    start_time: str | None = None
    last_updated: str | None = None
    blobs: tuple[BlobOutcome, ...] = ()


def parse_timespan(text: str) -> float:
    """Seconds in a .NET TimeSpan string (`hh:mm:ss`, `d.hh:mm:ss`, `hh:mm:ss.fffffff`); ValueError otherwise."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a TimeSpan like '01:00:00'")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


def _lower_keys(value: Any) -> Any:
    """The same JSON with every object key lower-cased, so `Succeeded` and `succeeded` read alike."""
    if isinstance(value, Mapping):
        return {str(key).lower(): _lower_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_lower_keys(item) for item in value]
    return value


def _count(status: Mapping[str, Any], key: str) -> int:
    value = status.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _text(document: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = document.get(key)
        if value is not None and value != "":
            return str(value)
    return None


def _blob_outcome(item: Mapping[str, Any]) -> BlobOutcome:
    raw_status = _text(item, "status") or ""
    status = next((state for state in _BLOB_STATES if state.lower() == raw_status.lower()), raw_status)
    url = _text(item, "url", "blobpath")
    details = _text(item, "details", "message")
    return BlobOutcome(
        source_id=_text(item, "sourceid") or "",
        status=status,
        error_code=_text(item, "errorcode"),
        failure_status=_text(item, "failurestatus"),
        details=redact(details) if details else None,
        url=plain_blob_url(url) if url else None,
        started_at=_text(item, "startedat", "starttime"),
        last_updated=_text(item, "lastupdatetime", "lastupdated"),
    )


class KustoIngestClient:
    """Configuration, submission and status of queued ingestion, with typed errors (`shared.kusto_errors`)."""

    def __init__(
        self,
        endpoint: str,
        credential: TokenCredential | None = None,
        *,
        token_scope: str | None = None,
        request_timeout: float = 30.0,
        max_blobs_per_batch: int = FALLBACK_MAX_BLOBS_PER_BATCH,
        transport: HttpTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_total: int = 3,
    ) -> None:
        """`endpoint`: the ingest- URI; `credential`: None sends no Authorization header (a local emulator);
        `token_scope` defaults to `<endpoint>/.default`; `max_blobs_per_batch` caps the server's own limit."""
        self._max_blobs_per_batch = max_blobs_per_batch
        self._clock = clock
        self._lock = threading.Lock()
        self._configuration: IngestConfiguration | None = None
        self._configuration_expires = 0.0
        # One request, retries included, never takes longer than two request timeouts (callers may cut it shorter).
        self._call_budget = 2 * request_timeout
        self._pipeline = KustoPipeline(
            endpoint,
            credential,
            token_scope=token_scope,
            retry_policy=BoundedRetryPolicy(
                max_wait=min(10.0, request_timeout),
                retry_total=retry_total,
                retry_backoff_factor=0.5,
                retry_backoff_max=8,
                timeout=self._call_budget,
            ),
            request_timeout=request_timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._pipeline.close()

    def get_configuration(self) -> IngestConfiguration:
        """The service configuration, cached for min(its refreshInterval, 1 h); a fallback when it cannot be read."""
        with self._lock:
            if self._configuration is not None and self._clock() < self._configuration_expires:
                return self._configuration
        try:
            configuration = self._fetch_configuration()
            age = min(configuration.refresh_interval_seconds, MAX_CONFIGURATION_AGE_SECONDS)
        except KustoError as error:
            log = logger.error if isinstance(error, KustoAuthError) else logger.warning
            log("ingestion configuration unavailable, using %d blobs per request: %s", FALLBACK_MAX_BLOBS_PER_BATCH, error)
            configuration = IngestConfiguration(max_blobs_per_batch=FALLBACK_MAX_BLOBS_PER_BATCH, from_server=False)
            age = FALLBACK_CONFIGURATION_AGE_SECONDS
        with self._lock:
            self._configuration = configuration
            self._configuration_expires = self._clock() + age
        return configuration

    def effective_batch_size(self) -> int:
        """Blobs per request: the server's maxBlobsPerBatch, capped by MAX_BLOBS_PER_BATCH."""
        return min(self.get_configuration().max_blobs_per_batch, self._max_blobs_per_batch)

    def _fetch_configuration(self) -> IngestConfiguration:
        document = _lower_keys(self._send("GET", "/v1/rest/ingestion/configuration", operation="configuration"))
        ingestion = document.get("ingestionsettings") or {}
        containers = document.get("containersettings") or {}
        max_blobs = ingestion.get("maxblobsperbatch")
        if not isinstance(max_blobs, int) or isinstance(max_blobs, bool) or max_blobs < 1:
            logger.warning("configuration has no usable maxBlobsPerBatch (%r); using %d", max_blobs, FALLBACK_MAX_BLOBS_PER_BATCH)
            max_blobs = FALLBACK_MAX_BLOBS_PER_BATCH
        refresh = MAX_CONFIGURATION_AGE_SECONDS
        if isinstance(containers.get("refreshinterval"), str):
            try:
                refresh = parse_timespan(containers["refreshinterval"])
            except ValueError as error:
                logger.warning("configuration refreshInterval ignored: %s", error)
        max_size = ingestion.get("maxdatasize")
        return IngestConfiguration(
            max_blobs_per_batch=max_blobs,
            max_data_size=max_size if isinstance(max_size, int) else None,
            refresh_interval_seconds=refresh,
        )

    def submit(
        self,
        database: str,
        table: str,
        blobs: Sequence[BlobSource],
        properties: Mapping[str, Any],
        *,
        timeout: float | None = None,
        observer: TryObserver | None = None,
    ) -> str:
        """POST one queued-ingestion request with tracking on; returns Kusto's operation id.

        `timeout` caps the whole call, retries included (the drain passes what is left of its budget);
        `observer` hears of each try.
        """
        body = {
            "timestamp": utc_now_iso(),
            "blobs": [
                {"url": blob.url, "sourceId": blob.source_id} | ({"rawSize": blob.raw_size} if blob.raw_size is not None else {})
                for blob in blobs
            ],
            "properties": {**properties, "enableTracking": True},
        }
        try:
            schemas.validate(schemas.INGEST_REQUEST, body)
        except schemas.MessageError as error:
            raise PermanentKustoError(
                f"ingestion request for {database}.{table} is invalid: {error}", code=error_codes.INVALID_REQUEST
            ) from None
        path = f"/v1/rest/ingestion/queued/{self._target_path(database, table)}"
        operation = f"submission to {database}.{table}"
        answer = _lower_keys(self._send("POST", path, body=body, operation=operation, timeout=timeout, observer=observer))
        operation_id = answer.get("ingestionoperationid")
        if not isinstance(operation_id, str) or not operation_id:
            raise PermanentKustoError(
                f"Kusto accepted the request for {database}.{table} but returned no ingestionOperationId, so its outcome "
                "cannot be tracked; check the table for the blobs' rows",
                code=error_codes.MISSING_OPERATION_ID,
            )
        return operation_id

    def get_status(
        self, database: str, table: str, operation_id: str, *, details: bool = True, timeout: float | None = None
    ) -> OperationStatus:
        """The state of an operation; with `details`, one outcome per blob."""
        try:
            operation = quote_path_segment(operation_id)
        except InvalidNameError as error:
            raise PermanentKustoError(
                f"operation id {operation_id!r} cannot be queried: {error}", code=error_codes.INVALID_OPERATION_ID
            ) from None
        path = f"/v1/rest/ingestion/queued/{self._target_path(database, table)}/{operation}"
        if details:
            path += "?details=true"
        document = _lower_keys(self._send("GET", path, operation=f"status of {operation_id}", timeout=timeout))
        counts = document.get("status") if isinstance(document.get("status"), Mapping) else {}
        items = document.get("details") if isinstance(document.get("details"), list) else []
        return OperationStatus(
            succeeded=_count(counts, "succeeded"),
            failed=_count(counts, "failed"),
            in_progress=_count(counts, "inprogress"),
            canceled=_count(counts, "canceled"),
            start_time=_text(document, "starttime", "startedat"),
            last_updated=_text(document, "lastupdated", "lastupdatetime"),
            blobs=tuple(_blob_outcome(item) for item in items if isinstance(item, Mapping)),
        )

    @staticmethod
    def _target_path(database: str, table: str) -> str:
        try:
            database_segment = quote_path_segment(check_entity_name(database, "database"))
            return f"{database_segment}/{quote_path_segment(check_entity_name(table, 'table'))}"
        except InvalidNameError as error:
            raise PermanentKustoError(str(error), code=error_codes.ENTITY_NAME_IS_NOT_VALID) from None

    def _send(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        body: Any = None,
        timeout: float | None = None,
        observer: TryObserver | None = None,
    ) -> Any:
        """One call through the pipeline, within the call budget; returns the JSON answer or raises a KustoError."""
        budget = self._call_budget if timeout is None else max(1.0, min(timeout, self._call_budget))
        request = HttpRequest(method, self._pipeline.endpoint + path, json=body)
        return self._pipeline.send_json(request, operation=operation, observer=observer, timeout=budget)
