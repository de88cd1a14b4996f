"""The clients a worker process needs, created once and handed to every function body.

Clients hold connection pools and token caches, so they are built once per process (`get_services()`)
and passed in as arguments; nothing else in the app keeps a client in a module global. Tests build their
own `Services` with `build_services()` from explicit settings, a fake Kusto transport or a test credential.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from shared import storage
from shared.alert_markers import AlertMarkers
from shared.blob_access import BlobAccess
from shared.dm_resources import DataManagementClient, DmResourceCache
from shared.kusto_rest import BlobSource, KustoIngestClient, TryObserver, kusto_credential
from shared.queue_submitter import QueueSubmitter
from shared.routing import router_for
from shared.settings import Settings, load_settings
from shared.staging_area import StagingArea
from shared.submission_ledger import SubmissionLedger


class Submitter(Protocol):
    """What the submission timer needs of a mode: the chunk size, and one call per chunk.

    `KustoIngestClient` (REST mode) and `QueueSubmitter` (queue mode) both fit; either returns an operation
    id or raises `TransientKustoError` / `PermanentKustoError`, so the drain handles both modes alike, and
    either tells `observer` when the chunk goes out (and, in REST mode, how each try was answered).
    """

    def effective_batch_size(self) -> int: ...

    def submit(
        self,
        database: str,
        table: str,
        blobs: Sequence[BlobSource],
        properties: Mapping[str, Any],
        *,
        timeout: float | None = None,
        observer: TryObserver | None = None,
    ) -> str: ...


@dataclass(frozen=True)
class Services:
    """Settings plus every client of one worker process."""

    settings: Settings
    pending_queue: QueueClient
    """Read raw: `shared.storage.decode_message` decodes each message, so one foreign message cannot block a page."""
    failures_queue: QueueClient
    tracking_queue: QueueClient
    pending_poison_queue: QueueClient
    blob_service: BlobServiceClient
    staging: StagingArea
    """The staging container: every blob the app acts on is reached through it, and every message is checked against it."""
    kusto: KustoIngestClient
    """The REST client: status polling in either mode, submission in REST mode."""
    submitter: Submitter
    """Submits chunks in the mode SUBMISSION_MODE names."""
    blob_access: BlobAccess
    ledger: SubmissionLedger
    """The blob versions Kusto accepted recently; the worker keeps what it read, so each drain reads only what is new."""
    alert_markers: AlertMarkers
    """Which failures were alerted recently, so a repeated notification is dropped."""
    dm_resources: DmResourceCache | None = None
    """Queue mode only: the Data Management service's queues and identity token, cached with an expiry."""

    @property
    def queues(self) -> tuple[QueueClient, ...]:
        return (self.pending_queue, self.failures_queue, self.tracking_queue, self.pending_poison_queue)


def build_services(
    settings: Settings,
    *,
    kusto_transport: HttpTransport | None = None,
    kusto_token_credential: TokenCredential | None = None,
    storage_credential: TokenCredential | None = None,
) -> Services:
    """Create every client from `settings`; credentials default to what the settings name.

    Routing rules are compiled here, so invalid ROUTING_RULES stop the worker at start-up with the rule's
    index and field, instead of failing blob by blob.
    """
    router_for(settings)
    connection = settings.staging
    if storage_credential is None:
        storage_credential = storage.staging_credential(connection)
    if kusto_token_credential is None:
        kusto_token_credential = kusto_credential(settings)
    blob_service = storage.blob_service_client(connection, storage_credential)
    staging = StagingArea(blob_service, settings.staging_container, settings.allowed_targets)
    state = blob_service.get_container_client(settings.state_container)
    kusto = KustoIngestClient(settings, credential=kusto_token_credential, transport=kusto_transport)
    dm_resources = None
    submitter: Submitter = kusto
    if settings.submission_mode == "queue":
        dm_resources = DmResourceCache(DataManagementClient(settings, kusto_token_credential, transport=kusto_transport))
        submitter = QueueSubmitter(settings, dm_resources)
    return Services(
        settings=settings,
        pending_queue=storage.queue_client(connection, settings.pending_queue, storage_credential, decode=False),
        failures_queue=storage.queue_client(connection, settings.failures_queue, storage_credential),
        tracking_queue=storage.queue_client(connection, settings.tracking_queue, storage_credential),
        pending_poison_queue=storage.queue_client(connection, settings.pending_poison_queue, storage_credential),
        blob_service=blob_service,
        staging=staging,
        kusto=kusto,
        submitter=submitter,
        blob_access=BlobAccess(settings, staging),
        ledger=SubmissionLedger(state, settings.duplicate_window_seconds),
        alert_markers=AlertMarkers(state, settings.duplicate_window_seconds),
        dm_resources=dm_resources,
    )


def ensure_queues(services: Services) -> None:
    """Create the app's queues if they are missing (first start of a new storage account)."""
    for queue in services.queues:
        storage.ensure_queue(queue)


_creation_lock = threading.Lock()


def get_services() -> Services:
    """The process's services, from the environment's settings; the queues exist once this returns.

    The worker runs functions on several threads; the lock makes the first callers share one `Services`.
    A failure (storage unreachable) is not cached: the next invocation tries again.
    """
    with _creation_lock:
        return _process_services()


@functools.cache
def _process_services() -> Services:
    services = build_services(load_settings())
    ensure_queues(services)
    return services
