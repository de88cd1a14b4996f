"""Counts the storage requests the app's own code makes, by kind, with a transport wrapped around the SDK.

`counted_services()` builds a `Services` exactly like `shared.services.build_services` (same clients, same
base64 policies, same Kusto client) except that every storage client sends through `CountingTransport`.
The transport sits below the SDK's retry policy, so a retried request counts each time it goes out.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.alert_markers import AlertMarkers
from shared.blob_access import BlobAccess
from shared.services import Services, build_services
from shared.settings import Settings
from shared.staging_area import StagingArea
from shared.submission_ledger import SubmissionLedger
from shared.transport import STORAGE_CONNECTION_TIMEOUT, STORAGE_DATA_BLOCK_SIZE, STORAGE_READ_TIMEOUT, EnvironmentOnceTransport


class RequestCounter:
    """Thread-safe tally of storage requests, keyed like `queue:ingest-pending receive` or `blob properties`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def reset(self) -> Counter[str]:
        with self._lock:
            counts, self.counts = self.counts, Counter()
            return counts


def request_kind(method: str, url: str) -> str:
    """Name one storage request by what it does (the URL path says which queue or blob, the method what)."""
    parts = urlsplit(url)
    segments = [segment for segment in parts.path.split("/") if segment][1:]  # drop the account name
    query = parts.query
    if "messages" in segments:
        queue = segments[0]
        action = {"GET": "receive", "POST": "enqueue", "DELETE": "delete", "PUT": "update"}.get(method, method)
        return f"queue {queue}: {action}"
    if len(segments) == 1 and "comp=metadata" in query:
        return f"queue {segments[0]}: properties"
    if len(segments) >= 2:
        action = {"HEAD": "properties", "GET": "read", "PUT": "write", "DELETE": "delete"}.get(method, method)
        return f"blob: {action}"
    return f"{method} {'/'.join(segments) or '/'}?{query.split('&')[0]}"


class CountingTransport(EnvironmentOnceTransport):
    """The app's storage transport (`shared.transport.storage_transport`), tallying each request it sends."""

    def __init__(self, counter: RequestCounter) -> None:
        super().__init__(
            connection_timeout=STORAGE_CONNECTION_TIMEOUT,
            read_timeout=STORAGE_READ_TIMEOUT,
            connection_data_block_size=STORAGE_DATA_BLOCK_SIZE,
        )
        self._counter = counter

    def send(self, request: Any, **kwargs: Any) -> Any:
        self._counter.add(request_kind(request.method, request.url))
        return super().send(request, **kwargs)


def counted_queue(connection_string: str, name: str, counter: RequestCounter, *, decode: bool = True) -> QueueClient:
    """A queue client like `shared.storage.queue_client` builds (base64 out; in: decoded or raw) that counts."""
    return QueueClient.from_connection_string(
        connection_string,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy() if decode else None,
        transport=CountingTransport(counter),
    )


def counted_services(settings: Settings, counter: RequestCounter) -> Services:
    """`build_services(settings)` with every storage client swapped for one that counts (connection strings only).

    Everything else (the Kusto client, the submitter of the SUBMISSION_MODE) is what the app builds.
    """
    connection = settings.staging.connection_string
    if not connection:
        raise ValueError("the benchmark counts requests against Azurite: StagingStorage must be a connection string")
    blob_service = BlobServiceClient.from_connection_string(connection, transport=CountingTransport(counter))
    state = blob_service.get_container_client(settings.state_container)
    staging = StagingArea(blob_service, settings.staging_container, settings.allowed_targets)
    return replace(
        build_services(settings),
        pending_queue=counted_queue(connection, settings.pending_queue, counter, decode=False),
        failures_queue=counted_queue(connection, settings.failures_queue, counter),
        tracking_queue=counted_queue(connection, settings.tracking_queue, counter),
        pending_poison_queue=counted_queue(connection, settings.pending_poison_queue, counter),
        blob_service=blob_service,
        staging=staging,
        blob_access=BlobAccess(settings, staging),
        ledger=SubmissionLedger(state, settings.duplicate_window_seconds),
        alert_markers=AlertMarkers(state, settings.duplicate_window_seconds),
    )
