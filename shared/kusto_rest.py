"""Client of Kusto's queued-ingestion REST endpoint (`/v1/rest/ingestion/...` on the ingest- host).

There is no Python SDK for this endpoint, so this is a small azure-core `PipelineClient`: authentication,
retries, headers and request logging are pipeline policies (the Azure SDK design), not code in each call,
and the pipeline's `RetryPolicy` is the only retry loop. The transport and the credential are arguments,
so tests hand in a fake transport instead of patching.

Wire details follow the official contract (`kusto-ingest-v2-openapi.yaml`, and the docs where they differ):
the status answer is read with case-insensitive keys and both spellings of its time fields, because the
docs and the spec disagree on them.
"""

from __future__ import annotations

import logging
import platform
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HeadersPolicy,
    HttpLoggingPolicy,
    RetryPolicy,
    SansIOHTTPPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared import schemas
from shared.kusto_errors import (
    KustoAuthError,
    KustoError,
    PermanentKustoError,
    TransientKustoError,
    UncertainKustoError,
    error_from_response,
)
from shared.names import InvalidNameError, check_entity_name, quote_path_segment
from shared.notifications import utc_now_iso
from shared.redaction import plain_blob_url, redact
from shared.settings import Settings
from shared.transport import EnvironmentOnceTransport
from shared.url_checks import is_loopback_url

logger = logging.getLogger(__name__)

CLIENT_NAME = "kusto-blob-ingest"
CLIENT_VERSION = "0.1.0"
CLIENT_MONIKER = "Kusto.BlobIngest.Functions"
API_VERSION = "2024-12-12"
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


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def kusto_credential(settings: Settings) -> TokenCredential | None:
    """The identity that calls Kusto, as KUSTO_CREDENTIAL says (None: no Authorization header, emulator only)."""
    if settings.kusto_credential == "managedidentity":
        return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    if settings.kusto_credential == "default":
        return DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
    return None


class _BoundedRetryPolicy(RetryPolicy):
    """azure-core's RetryPolicy, except that it does not sleep through a Retry-After longer than `max_wait`.

    A throttled request that asks for a long pause is handed back to the caller instead, which then leaves
    its blobs hidden in the pending queue for that long: a drain never blocks beyond its time budget.
    """

    def __init__(self, *, max_wait: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_wait = max_wait

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > self._max_wait:
            return False
        return super().is_retry(settings, response)


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


HTTP_LOGGER = logging.getLogger(f"{__name__}.http")
# azure-core logs every request and response at INFO; in a function app that floods Application Insights.
# Set this logger to INFO to trace Kusto requests (headers and query are redacted by the policy).
HTTP_LOGGER.setLevel(logging.WARNING)


class TryObserver(Protocol):
    """Told of each try of a call, retries included: just before it goes out, and the status that answered it.

    The submission timer writes its ledger marks from here, so a worker that dies while the pipeline waits
    out a Retry-After leaves "not accepted" behind (that try was refused), not "sending".
    """

    def sending(self) -> None: ...

    def answered(self, status: int) -> None: ...


class _AnswerWatch:
    """Whether the last try of one call went out and got no answer (filled in by `_WatchAnswers`)."""

    OPTION = "answer_watch"

    def __init__(self, observer: TryObserver | None) -> None:
        self.unanswered = False
        self.observer = observer


class _WatchAnswers(SansIOHTTPPolicy):
    """Marks each try of a call as sent, then as answered, so a failure can tell whether Kusto may have the request.

    azure-core's errors alone cannot: its retry policy raises a response timeout when the call's budget
    runs out before a retry it never sends. It runs last, just before the transport, once per try.
    """

    def on_request(self, request: PipelineRequest[Any]) -> None:
        if _AnswerWatch.OPTION in request.context.options:  # first try: out of the options the transport sees
            request.context[_AnswerWatch.OPTION] = request.context.options.pop(_AnswerWatch.OPTION)
        watch = request.context.get(_AnswerWatch.OPTION)
        if watch is not None:
            watch.unanswered = True
            if watch.observer is not None:
                watch.observer.sending()

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        watch = request.context.get(_AnswerWatch.OPTION)
        if watch is not None:
            watch.unanswered = False
            if watch.observer is not None:
                watch.observer.answered(response.http_response.status_code)


def kusto_pipeline(
    settings: Settings, credential: TokenCredential | None, transport: HttpTransport | None, retry_policy: RetryPolicy
) -> PipelineClient:
    """The one way the app talks to Kusto's ingestion endpoint: headers, retries, bearer token, redacted logging.

    Shared by the REST client and the queue mode's management commands, so both send the same client
    identification, retry the same way and never log a token.
    """
    timeout = settings.kusto_request_timeout_seconds
    logging_policy = HttpLoggingPolicy(logger=HTTP_LOGGER, additional_allowed_query_params=["details"])
    logging_policy.allowed_header_names.update({"x-ms-activity-id", "x-ms-app", "x-ms-client-version", "x-ms-version"})
    policies = [
        HeadersPolicy(
            {
                "Accept": "application/json",
                "x-ms-app": CLIENT_NAME,
                "x-ms-client-version": f"{CLIENT_MONIKER}:{CLIENT_VERSION}|Runtime.Python:{platform.python_version()}",
                "x-ms-version": API_VERSION,
            }
        ),
        UserAgentPolicy(sdk_moniker=f"{CLIENT_NAME}/{CLIENT_VERSION}"),
        retry_policy,
        BearerTokenCredentialPolicy(credential, settings.kusto_token_scope) if credential is not None else None,
        logging_policy,
        _WatchAnswers(),
    ]
    return PipelineClient(
        base_url=settings.kusto_ingest_uri,
        policies=[policy for policy in policies if policy is not None],
        transport=transport or EnvironmentOnceTransport(connection_timeout=min(10.0, timeout), read_timeout=timeout),
    )


def run_options(settings: Settings, credential: TokenCredential | None) -> dict[str, Any]:
    """Per-request pipeline options: azure-core refuses bearer tokens over plain http, which the settings
    allow only for a loopback emulator, so only there is that check turned off."""
    uri = settings.kusto_ingest_uri
    if credential is not None and uri.startswith("http://") and is_loopback_url(uri):
        return {"enforce_https": False}
    return {}


def send_json(
    pipeline: PipelineClient,
    settings: Settings,
    request: HttpRequest,
    *,
    operation: str,
    observer: TryObserver | None = None,
    **options: Any,
) -> Any:
    """One call through a Kusto pipeline: returns the JSON answer or raises a typed KustoError naming `operation`.

    Every failure becomes transient (uncertain when a try went out and no answer came back) or permanent here,
    in one place, for the REST client and queue mode alike. `observer` hears of each try (`TryObserver`).
    """
    request.headers["x-ms-client-request-id"] = f"KIC.execute;{uuid.uuid4()}"
    watch = _AnswerWatch(observer)
    try:
        response: HttpResponse = pipeline.send_request(request, **{_AnswerWatch.OPTION: watch}, **options)
    except ClientAuthenticationError as error:
        raise KustoAuthError(
            f"Kusto {operation}: no token for scope {settings.kusto_token_scope}: {error}; check KUSTO_CREDENTIAL "
            "and MANAGED_IDENTITY_CLIENT_ID"
        ) from None
    except AzureError as error:
        if watch.unanswered and not isinstance(error, ServiceRequestError):
            raise UncertainKustoError(
                f"Kusto {operation}: the request went out and no answer came back ({type(error).__name__}: {error}); "
                "Kusto may have acted on it"
            ) from None
        if isinstance(error, (ServiceRequestTimeoutError, ServiceResponseTimeoutError)):
            raise TransientKustoError(f"Kusto {operation} timed out: {error}") from None
        raise TransientKustoError(f"Kusto {operation} failed: {type(error).__name__}: {error}") from None
    activity_id = response.headers.get("x-ms-activity-id", "")
    text = response.text()
    if not 200 <= response.status_code < 300:
        raise error_from_response(
            response.status_code,
            text,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            activity_id=activity_id,
            operation=operation,
        )
    try:
        return response.json()
    except ValueError:
        raise TransientKustoError(
            f"Kusto {operation} answered HTTP {response.status_code} with a body that is not JSON: {text[:200]}",
            status_code=response.status_code,
            activity_id=activity_id,
        ) from None


class KustoIngestClient:
    """Configuration, submission and status of queued ingestion, with typed errors (`shared.kusto_errors`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        credential: TokenCredential | None = None,
        transport: HttpTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_total: int = 3,
    ) -> None:
        if credential is None and settings.kusto_credential != "none":
            raise ValueError(f"KUSTO_CREDENTIAL is {settings.kusto_credential!r}: pass the credential it names")
        self._settings = settings
        self._base_url = settings.kusto_ingest_uri
        self._clock = clock
        self._lock = threading.Lock()
        self._configuration: IngestConfiguration | None = None
        self._configuration_expires = 0.0
        timeout = settings.kusto_request_timeout_seconds
        # One request, retries included, never takes longer than two request timeouts (callers may cut it shorter).
        self._call_budget = 2 * timeout
        self._run_options = run_options(settings, credential)
        self._client = kusto_pipeline(
            settings,
            credential,
            transport,
            _BoundedRetryPolicy(
                max_wait=min(10.0, timeout),
                retry_total=retry_total,
                retry_backoff_factor=0.5,
                retry_backoff_max=8,
                timeout=self._call_budget,
            ),
        )

    def close(self) -> None:
        self._client.close()

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
        return min(self.get_configuration().max_blobs_per_batch, self._settings.max_blobs_per_batch)

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
                f"ingestion request for {database}.{table} is invalid: {error}", code="InvalidRequest"
            ) from None
        path = f"/v1/rest/ingestion/queued/{self._target_path(database, table)}"
        operation = f"submission to {database}.{table}"
        answer = _lower_keys(self._send("POST", path, body=body, operation=operation, timeout=timeout, observer=observer))
        operation_id = answer.get("ingestionoperationid")
        if not isinstance(operation_id, str) or not operation_id:
            raise PermanentKustoError(
                f"Kusto accepted the request for {database}.{table} but returned no ingestionOperationId, so its outcome "
                "cannot be tracked; check the table for the blobs' rows",
                code="MissingOperationId",
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
                f"operation id {operation_id!r} cannot be queried: {error}", code="InvalidOperationId"
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
            raise PermanentKustoError(str(error), code="BadRequest_EntityNameIsNotValid") from None

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
        request = HttpRequest(method, self._base_url + path, json=body)
        return send_json(
            self._client, self._settings, request, operation=operation, observer=observer, timeout=budget, **self._run_options
        )
