"""Queue mode (SUBMISSION_MODE=queue): hands blobs to Kusto as ingestion messages on the DM service's queues.

Some clusters and clouds only offer queued ingestion through queues (Kusto's queue-based protocol): the client posts one
JSON message per blob, base64-encoded, to one of the `SecuredReadyForAggregationQueue` queues it got from
`.get ingestion resources`, with the Kusto identity token inside. `QueueSubmitter` keeps the REST client's
contract (`submit(database, table, blobs, properties, timeout=) -> operation id`, `effective_batch_size()`)
so the submission timer drains, groups, chunks, retries and poisons exactly as in REST mode.

* Every message is built from the chunk's ingestion properties and checked against
  `ingestion-message.schema.json` before anything is posted: a chunk that cannot be expressed is rejected
  whole, as a 400 would be in REST mode.
* Messages go round-robin over the ingestion queues, as the official SDKs do, to spread the load and avoid throttling.
* A queue that answers 403 (its SAS expired) or 404 (it was rotated away) makes the cached resources stale:
  they are fetched again and that message is retried once.
* If a chunk fails half-way, the messages already posted are deleted again before the error is raised, so
  the chunk's pending messages reappear without leaving a copy in Kusto's queue. A message Kusto already
  took cannot be withdrawn, and a post that got no answer may have arrived: then the error is uncertain
  (`UncertainKustoError`), and the drain treats the chunk's blobs as in doubt (`shared.submission`).
* Kusto gives no operation id for queue messages, so the chunk gets a synthetic one, `queue;<uuid>`; the
  outcome is matched later by each blob's source id, which Kusto echoes as `IngestionSourceId`.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ServiceResponseError
from azure.storage.queue import QueueClient, QueueMessage

from shared import error_codes, schemas
from shared.dm_resources import DmResourceCache
from shared.kusto_errors import KustoAuthError, PermanentKustoError, TransientKustoError, UncertainKustoError
from shared.kusto_pipeline import TryObserver
from shared.kusto_rest import BlobSource
from shared.redaction import REDACTED, plain_blob_url, redact
from shared.storage import sas_queue_client
from shared.times import utc_now_iso
from shared.transport import storage_transport

logger = logging.getLogger(__name__)

INGESTION_MESSAGE = "ingestion-message.schema.json"
OPERATION_PREFIX = "queue;"
REPORT_LEVEL_CODES = {"FailuresOnly": 0, "None": 1, "FailuresAndSuccesses": 2}
"""ReportLevel as the Python SDK sends it (0 failures, 1 none, 2 all)."""
REPORT_METHOD_CODES = {"Queue": 0, "Table": 1, "QueueAndTable": 2}
_STALE_QUEUE_STATUS = frozenset({403, 404})
"""A queue SAS that expired (403) or a queue rotated away (404): the cached resources are stale."""
_REJECTED_STATUS = frozenset({400, 413})
"""The storage service refused the message itself (too large, malformed): posting it again cannot help."""


def operation_id() -> str:
    """A synthetic operation id for one chunk of queue mode (Kusto returns none for queue messages)."""
    return f"{OPERATION_PREFIX}{uuid.uuid4()}"


class _StaleQueueError(Exception):
    """A queue refused us in a way fresh ingestion resources can fix (its SAS expired, or it was rotated away)."""

    def __init__(self, queue: str, status: int, code: str) -> None:
        super().__init__(f"{queue}: HTTP {status} {code}")
        self.queue = queue
        self.status = status
        self.code = code


def build_ingestion_message(
    blob: BlobSource,
    database: str,
    table: str,
    properties: Mapping[str, Any],
    *,
    identity_token: str,
    report_level: str,
    report_method: str,
    created_at: str,
) -> dict[str, Any]:
    """One schema-valid ingestion message of the queue-based protocol for one blob; PermanentKustoError names what is wrong."""
    additional: dict[str, Any] = {"authorizationContext": identity_token, "format": properties.get("format")}
    for name in ("ingestionMappingReference", "ignoreFirstRecord", "creationTime", "zipPattern"):
        if name in properties:
            additional[name] = properties[name]
    for name in ("tags", "ingestIfNotExists"):
        if name in properties:
            # v1 messages carry these lists as JSON text, the way every SDK sends them.
            additional[name] = json.dumps(list(properties[name]), ensure_ascii=False)
    message: dict[str, Any] = {
        "Id": blob.source_id,
        "BlobPath": blob.url,
        "DatabaseName": database,
        "TableName": table,
        "RetainBlobOnSuccess": not properties.get("deleteAfterDownload", False),
        "FlushImmediately": bool(properties.get("skipBatching", False)),
        "ReportLevel": REPORT_LEVEL_CODES[report_level],
        "ReportMethod": REPORT_METHOD_CODES[report_method],
        "SourceMessageCreationTime": created_at,
        "AdditionalProperties": additional,
    }
    if blob.raw_size is not None:
        message["RawDataSize"] = blob.raw_size
    try:
        schemas.validate(INGESTION_MESSAGE, message)
    except schemas.MessageError as error:
        # The schema error may quote the token or the blob URL: neither may reach a log or an alert.
        problem = redact(str(error).replace(identity_token, REDACTED) if identity_token else str(error))
        raise PermanentKustoError(
            f"ingestion message for blob {plain_blob_url(blob.url)} to {database}.{table} is invalid: {problem}",
            code=error_codes.INVALID_INGESTION_MESSAGE,
        ) from None
    return message


class QueueSubmitter:
    """Submits chunks as ingestion messages; the same contract as `KustoIngestClient.submit`."""

    def __init__(
        self,
        cache: DmResourceCache,
        *,
        max_blobs_per_batch: int = 20,
        report_level: str = "FailuresOnly",
        report_method: str = "Queue",
        queue_client_for: Callable[[str], QueueClient] | None = None,
        now: Callable[[], str] = utc_now_iso,
    ) -> None:
        """`report_level` and `report_method` say what Kusto reports back (`shared.settings` refuses the ones under
        which no failure could alert); `queue_client_for` builds the client of one ingestion queue from its SAS URL
        (by default on a transport of the submitter's own)."""
        self.cache = cache
        self._max_blobs_per_batch = max_blobs_per_batch
        self._report_level = report_level
        self._report_method = report_method
        self._queue_client_for = queue_client_for or functools.partial(
            sas_queue_client, transport=storage_transport(), short_retries=True
        )
        self._now = now
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._clients: dict[str, QueueClient] = {}

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
        self.cache.client.close()

    def effective_batch_size(self) -> int:
        """Blobs per chunk: MAX_BLOBS_PER_BATCH (each blob is its own message; the chunk is one tracking record)."""
        return self._max_blobs_per_batch

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
        """Post one ingestion message per blob; returns the chunk's synthetic operation id.

        Raises TransientKustoError (the chunk waits; nothing of it stays posted, see the module docstring)
        or PermanentKustoError (the chunk can never be posted as it is). `observer` hears once, before the
        first message is posted, that the chunk is being sent.
        """
        token = self.cache.identity_token()
        created_at = self._now()
        texts = [
            schemas.dump(
                INGESTION_MESSAGE,
                build_ingestion_message(
                    blob,
                    database,
                    table,
                    properties,
                    identity_token=token,
                    report_level=self._report_level,
                    report_method=self._report_method,
                    created_at=created_at,
                ),
            )
            for blob in blobs
        ]
        server_timeout = max(1, int(timeout)) if timeout is not None else None
        posted: list[tuple[QueueClient, QueueMessage]] = []
        if observer is not None:
            observer.sending()
        try:
            for blob, text in zip(blobs, texts, strict=True):
                posted.append(self._post(blob, text, server_timeout))
        except (TransientKustoError, PermanentKustoError) as error:
            if not self._withdraw(posted) and not isinstance(error, UncertainKustoError):
                raise UncertainKustoError(f"{error}; messages already posted for this chunk could not be withdrawn") from None
            raise
        operation = operation_id()
        logger.info("posted %d ingestion messages for %s.%s as %s", len(posted), database, table, operation)
        return operation

    def _next_queue(self, queues: Sequence[str]) -> str:
        with self._lock:
            return queues[next(self._turn) % len(queues)]

    def _client(self, url: str) -> QueueClient:
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = self._clients[url] = self._queue_client_for(url)
            return client

    def _forget_clients(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _post(self, blob: BlobSource, text: str, server_timeout: int | None) -> tuple[QueueClient, QueueMessage]:
        """Post one message; a stale queue makes the resources be fetched again and the message go once more."""
        resources = self.cache.resources()
        try:
            return self._send(resources.ingestion_queues, blob, text, server_timeout)
        except _StaleQueueError as stale:
            logger.warning(
                "ingestion queue %s answered HTTP %d: fetching the ingestion resources again", stale.queue, stale.status
            )
            self.cache.invalidate_resources(resources)
            self._forget_clients()
        try:
            return self._send(self.cache.resources().ingestion_queues, blob, text, server_timeout)
        except _StaleQueueError as stale:
            raise KustoAuthError(
                f"ingestion queue {stale.queue} refused the message (HTTP {stale.status} {stale.code}) even with freshly "
                "fetched ingestion resources; the blobs wait. Check that the DM service's queues are reachable",
                status_code=stale.status,
                code=stale.code,
            ) from None

    def _send(
        self, queues: Sequence[str], blob: BlobSource, text: str, server_timeout: int | None
    ) -> tuple[QueueClient, QueueMessage]:
        url = self._next_queue(queues)
        client = self._client(url)
        queue = plain_blob_url(url)
        try:
            return client, client.send_message(text, timeout=server_timeout)
        except HttpResponseError as error:
            status = error.status_code or 0
            # Storage error codes are enum members; their value is the code the service sent.
            error_code = getattr(error, "error_code", None)  # set by the storage SDK on the errors it raises
            code = str(getattr(error_code, "value", error_code) or f"HTTP_{status}")
            if status in _STALE_QUEUE_STATUS:
                raise _StaleQueueError(queue, status, code) from None
            reason = f"ingestion queue {queue} answered HTTP {status} {code} for {plain_blob_url(blob.url)}"
            if status in _REJECTED_STATUS:
                raise PermanentKustoError(f"{reason}: the message was refused", status_code=status, code=code) from None
            raise TransientKustoError(reason, status_code=status, code=code) from None
        except ServiceResponseError as error:
            raise UncertainKustoError(
                f"ingestion queue {queue} gave no answer to a posted message ({type(error).__name__}: "
                f"{redact(str(error))}); it may be in the queue"
            ) from None
        except AzureError as error:
            raise TransientKustoError(
                f"ingestion queue {queue} unreachable: {type(error).__name__}: {redact(str(error))}"
            ) from None

    def _withdraw(self, posted: Sequence[tuple[QueueClient, QueueMessage]]) -> bool:
        """Delete messages of a failed chunk that were already posted, so the chunk's retry does not double them.

        Returns whether every one was withdrawn.
        """
        withdrawn = True
        for client, message in posted:
            try:
                client.delete_message(message)
            except AzureError as error:
                withdrawn = False
                logger.warning(
                    "ingestion message %s could not be withdrawn from %s (%s): Kusto may already have taken it",
                    message.id,
                    client.queue_name,
                    type(error).__name__,
                )
        return withdrawn
