"""Queue mode's view of the Data Management service: its ingestion resources and its identity token.

Queued ingestion without the REST endpoint (the queue-based protocol) starts with two management commands on the
ingest- host: `.get ingestion resources` (SAS URLs of the queues Kusto reads ingestion messages from, its
temporary containers, its success and failure notification queues, its status table) and `.get kusto
identity token` (an opaque token Kusto checks on every queue message, since a queue carries no
Authorization header). Both answers are v1 JSON tables, read here by column name.

The SDKs cache both for an hour; so does `DmResourceCache`, refreshing a little before the hour is up so a
drain never posts with a token about to expire, and at once when Kusto or storage says a cached value no
longer works (a rejected token, a 403 from a queue whose SAS expired, a rotated queue that is gone).

The HTTP side is the REST client's pipeline (`shared.kusto_pipeline`): authentication, retries, headers and
redacted request logging are policies, and errors are the same typed `KustoError`s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest

from shared.kusto_errors import TransientKustoError
from shared.kusto_pipeline import KustoPipeline

logger = logging.getLogger(__name__)

MGMT_PATH = "/v1/rest/mgmt"
MGMT_DATABASE = "NetDefaultDB"
"""The database every SDK names in management calls to the DM service."""
RESOURCES_COMMAND = ".get ingestion resources"
IDENTITY_TOKEN_COMMAND = ".get kusto identity token"  # noqa: S105 - a command, not a secret
CACHE_LIFETIME_SECONDS = 3600.0
"""How long resources and the identity token are used (the SDKs' one hour)."""
REFRESH_MARGIN_SECONDS = 300.0
"""Refresh this long before the hour is up, so a value is never used in its last minutes."""

MAX_REMEMBERED_REJECTIONS = 10_000

INGESTION_QUEUE = "SecuredReadyForAggregationQueue"
TEMP_STORAGE = "TempStorage"
FAILURE_QUEUE = "FailedIngestionsQueue"
SUCCESS_QUEUE = "SuccessfulIngestionsQueue"
STATUS_TABLE = "IngestionsStatusTable"


@dataclass(frozen=True)
class IngestionResources:
    """The DM service's resources: SAS URLs (secrets, never logged) of its queues, containers and table."""

    ingestion_queues: tuple[str, ...]
    temp_containers: tuple[str, ...]
    failure_queue: str
    success_queue: str | None
    status_table: str | None


def _rows(document: Any, command: str) -> list[dict[str, Any]]:
    """The first table of a v1 answer as dicts keyed by column name (the column order is not relied on)."""
    try:
        table = document["Tables"][0]
        names = [column["ColumnName"] for column in table["Columns"]]
        return [dict(zip(names, row, strict=True)) for row in table["Rows"]]
    except (KeyError, IndexError, TypeError, ValueError):
        raise TransientKustoError(f"Kusto '{command}' answered with something that is not a v1 result table") from None


def parse_ingestion_resources(document: Any) -> IngestionResources:
    """Read `.get ingestion resources`; a missing ingestion or failure queue is an error naming it."""
    found: dict[str, list[str]] = {}
    for row in _rows(document, RESOURCES_COMMAND):
        kind, root = row.get("ResourceTypeName"), row.get("StorageRoot")
        if isinstance(kind, str) and isinstance(root, str) and root:
            found.setdefault(kind, []).append(root)
    for required in (INGESTION_QUEUE, FAILURE_QUEUE):
        if not found.get(required):
            # Without them nothing can be posted, or failures could not alert: the blobs wait for a better answer.
            raise TransientKustoError(f"Kusto '{RESOURCES_COMMAND}' listed no {required}; the blobs wait and are retried")
    return IngestionResources(
        ingestion_queues=tuple(found[INGESTION_QUEUE]),
        temp_containers=tuple(found.get(TEMP_STORAGE, ())),
        failure_queue=found[FAILURE_QUEUE][0],
        success_queue=next(iter(found.get(SUCCESS_QUEUE, ())), None),
        status_table=next(iter(found.get(STATUS_TABLE, ())), None),
    )


def parse_identity_token(document: Any) -> str:
    """Read `.get kusto identity token`: one row, column AuthorizationContext."""
    rows = _rows(document, IDENTITY_TOKEN_COMMAND)
    token = rows[0].get("AuthorizationContext") if rows else None
    if not isinstance(token, str) or not token:
        raise TransientKustoError(f"Kusto '{IDENTITY_TOKEN_COMMAND}' returned no AuthorizationContext")
    return token


class DataManagementClient:
    """Runs the two management commands queue mode needs; errors are typed like the REST client's."""

    def __init__(
        self,
        endpoint: str,
        credential: TokenCredential | None = None,
        *,
        token_scope: str | None = None,
        request_timeout: float = 30.0,
        transport: HttpTransport | None = None,
        retry_total: int = 3,
    ) -> None:
        """The same arguments as `KustoIngestClient`; the retry policy is azure-core's own: the two commands are
        cached for an hour, so a throttled fetch may wait out Retry-After."""
        self._pipeline = KustoPipeline(
            endpoint,
            credential,
            token_scope=token_scope,
            retry_policy=RetryPolicy(
                retry_total=retry_total, retry_backoff_factor=0.5, retry_backoff_max=8, timeout=2 * request_timeout
            ),
            request_timeout=request_timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._pipeline.close()

    def fetch_resources(self) -> IngestionResources:
        resources = parse_ingestion_resources(self.command(RESOURCES_COMMAND))
        logger.info(
            "ingestion resources fetched: %d ingestion queues, %d temp containers",
            len(resources.ingestion_queues),
            len(resources.temp_containers),
        )
        return resources

    def fetch_identity_token(self) -> str:
        token = parse_identity_token(self.command(IDENTITY_TOKEN_COMMAND))
        logger.info("Kusto identity token fetched")
        return token

    def command(self, csl: str) -> Any:
        """POST one management command to the DM service; returns its JSON answer or raises a KustoError."""
        request = HttpRequest(
            "POST",
            self._pipeline.endpoint + MGMT_PATH,
            json={"db": MGMT_DATABASE, "csl": csl},
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        return self._pipeline.send_json(request, operation=f"'{csl}'")


T = TypeVar("T")


class _Expiring(Generic[T]):
    """One value fetched on demand and kept until it is due for refresh; one fetch at a time."""

    def __init__(self, fetch: Callable[[], T], clock: Callable[[], float], keep_seconds: float) -> None:
        self._fetch = fetch
        self._clock = clock
        self._keep = keep_seconds
        self._lock = threading.Lock()
        self._value: T | None = None
        self._due = 0.0
        self.fetched_at: float | None = None

    def get(self) -> T:
        # Fetching under the lock makes the concurrent chunks of a drain wait for one answer, not all ask.
        with self._lock:
            if self._value is None or self._clock() >= self._due:
                self._value = self._fetch()
                self.fetched_at = self._clock()
                self._due = self.fetched_at + self._keep
            return self._value

    def invalidate(self, stale: T | None = None) -> None:
        """Forget the value (only if it is still `stale`, when given: another thread may have refreshed it)."""
        with self._lock:
            if stale is None or self._value == stale:
                self._value = None


class DmResourceCache:
    """Ingestion resources and identity token, each fetched once per CACHE_LIFETIME_SECONDS (less the margin)."""

    def __init__(
        self,
        client: DataManagementClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        lifetime_seconds: float = CACHE_LIFETIME_SECONDS,
        refresh_margin_seconds: float = REFRESH_MARGIN_SECONDS,
    ) -> None:
        keep = max(1.0, lifetime_seconds - refresh_margin_seconds)
        self.client = client
        self._resources = _Expiring(client.fetch_resources, clock, keep)
        self._token = _Expiring(client.fetch_identity_token, clock, keep)
        self._rejections: Counter[str] = Counter()
        self._rejections_lock = threading.Lock()

    def resources(self) -> IngestionResources:
        return self._resources.get()

    def identity_token(self) -> str:
        return self._token.get()

    @property
    def token_fetched_at(self) -> float | None:
        """When (on the cache's clock) the current token was fetched; None before the first fetch."""
        return self._token.fetched_at

    def invalidate_resources(self, stale: IngestionResources | None = None) -> None:
        """A queue answered 403/404: the next use fetches the resources again."""
        self._resources.invalidate(stale)

    def invalidate_token(self, stale: str | None = None) -> None:
        """Kusto rejected the token: the next use fetches a new one."""
        self._token.invalidate(stale)

    def record_token_rejection(self, source_id: str) -> int:
        """Kusto refused the token on the message for `source_id`: drop the token; returns this source's refusals so far.

        The count lets the caller stop resubmitting a blob whose messages keep being refused (the count is
        per process, kept small by forgetting everything past MAX_REMEMBERED_REJECTIONS sources).
        """
        self._token.invalidate()
        with self._rejections_lock:
            if len(self._rejections) >= MAX_REMEMBERED_REJECTIONS:
                self._rejections.clear()
            self._rejections[source_id] += 1
            return self._rejections[source_id]
