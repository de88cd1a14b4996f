"""The background reader of the ingestion queues: what the Data Management service does with each message.

For every message: decode it, check its identity token, hand the blob to the ingestion worker, then report
the outcome as the message asks (ReportLevel / ReportMethod) and only then delete the message. If the
emulator stops before that, the message becomes visible again and is ingested then (at least once, as
with the real service). Nothing makes the reader stop: a message that names its source but cannot be
ingested becomes a failure notification; one that cannot even be tied to a source (not base64, not JSON,
no Id), or that keeps failing, is moved to `<queue>-poison` with a log line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, UpdateMode
from azure.storage.queue import QueueClient, QueueMessage, TextBase64EncodePolicy

from .catalog import Failure
from .errors import EmulatorError, IngestionError
from .identity_token import IdentityTokens, InvalidIdentityTokenError
from .ingestion_job import BlobOutcome, IngestionJob
from .ingestion_resources import POISON_SUFFIX, IngestionResources
from .queue_messages import (
    IngestionMessage,
    RejectedMessageError,
    Reporting,
    UnattributableMessageError,
    decode_message,
    failure_notification,
    parse_message,
    success_notification,
)
from .state import EmulatorState
from .storage import blob_client, delete_blob, split_credential

logger = logging.getLogger(__name__)

PAGE_SIZE = 32  # the most one receive call may ask for
VISIBILITY_TIMEOUT_SECONDS = 600  # a message stays hidden this long while its blob is being ingested
MAX_DEQUEUE_COUNT = 5  # a message seen this often without being settled is moved to the poison queue
POLL_INTERVAL_SECONDS = 0.5
MAX_IN_FLIGHT = 64


class QueueConsumer:
    """One thread that polls every ingestion queue and settles each message after the worker is done."""

    def __init__(self, state: EmulatorState, resources: IngestionResources, tokens: IdentityTokens) -> None:
        self._state = state
        self._resources = resources
        self._tokens = tokens
        self._clients: dict[str, QueueClient] = {}
        self._clients_lock = threading.Lock()
        names = resources.names
        self._failed = resources.queues.get_queue_client(names.failed_queue, message_encode_policy=TextBase64EncodePolicy())
        self._succeeded = resources.queues.get_queue_client(names.succeeded_queue, message_encode_policy=TextBase64EncodePolicy())
        self._status_table = resources.tables.get_table_client(names.status_table)
        self._stop = threading.Event()
        self._in_flight = 0
        self._in_flight_changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="queue-consumer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _client(self, name: str) -> QueueClient:
        with self._clients_lock:
            if name not in self._clients:
                self._clients[name] = self._resources.queues.get_queue_client(name)
            return self._clients[name]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                received = self.poll_once()
            except Exception:
                logger.exception("reading the ingestion queues failed; trying again")
                received = 0
            if not received:
                self._stop.wait(POLL_INTERVAL_SECONDS)

    def poll_once(self) -> int:
        """Receive and start one page from each ingestion queue; returns how many messages were taken."""
        taken = 0
        for name in self._resources.queues_to_read():
            with self._in_flight_changed:
                room = min(PAGE_SIZE, MAX_IN_FLIGHT - self._in_flight)
            if room <= 0 or self._stop.is_set():
                break
            client = self._client(name)
            pages = client.receive_messages(messages_per_page=room, visibility_timeout=VISIBILITY_TIMEOUT_SECONDS).by_page()
            for message in next(pages, []):
                taken += 1
                self._handle(name, client, message)
        return taken

    def _handle(self, queue_name: str, client: QueueClient, message: QueueMessage) -> None:
        if (message.dequeue_count or 0) > MAX_DEQUEUE_COUNT:
            self._poison(queue_name, client, message, f"it was received {message.dequeue_count} times without being settled")
            return
        try:
            parsed = parse_message(decode_message(str(message.content or "")))
            self._check_token(parsed)
        except UnattributableMessageError as error:
            self._poison(queue_name, client, message, str(error))
            return
        except RejectedMessageError as rejected:
            self._reject(queue_name, rejected)
            client.delete_message(message)
            return
        if self._state.config.auto_create_databases:
            # An invalid database name is not created here; the worker then reports the database as missing.
            with contextlib.suppress(EmulatorError):
                self._state.use_database(parsed.database)
        job = IngestionJob(parsed.database, parsed.table, parsed.blob_url, parsed.source_id, parsed.raw_size, parsed.properties)
        with self._in_flight_changed:
            self._in_flight += 1
        self._state.worker.submit(job, partial(self._finished, client, message, parsed))

    def _check_token(self, parsed: IngestionMessage) -> None:
        try:
            self._tokens.verify(parsed.authorization_context)
        except InvalidIdentityTokenError as error:
            raise RejectedMessageError(
                "BadRequest_InvalidKustoIdentityToken",
                str(error),
                source_id=parsed.source_id,
                database=parsed.database,
                table=parsed.table,
                blob_url=parsed.blob_url,
                reporting=parsed.reporting,
            ) from None

    def _poison(self, queue_name: str, client: QueueClient, message: QueueMessage, reason: str) -> None:
        poison_name = queue_name + POISON_SUFFIX
        poison = self._client(poison_name)
        with contextlib.suppress(ResourceExistsError):
            poison.create_queue()
        poison.send_message(message.content or "")
        client.delete_message(message)
        logger.warning("queue message %s on %s moved to %s: %s", message.id, queue_name, poison_name, reason)

    def _reject(self, queue_name: str, rejected: RejectedMessageError) -> None:
        plain_url = split_credential(rejected.blob_url)[0]
        operation_id = str(uuid.uuid4())
        self._state.catalog.record_failures(
            [
                Failure(
                    operation_id=operation_id,
                    database=rejected.database,
                    table=rejected.table,
                    source_path=plain_url,
                    source_id=rejected.source_id,
                    error_code=rejected.code,
                    failure_status="Permanent",
                    details=rejected.details,
                )
            ]
        )
        self._state.stats.count_blob("Failed")
        logger.info("queue message for source %s on %s rejected: %s", rejected.source_id, queue_name, rejected.code)
        self._report(
            rejected.reporting,
            status="Failed",
            notification=failure_notification(
                operation_id=operation_id,
                database=rejected.database,
                table=rejected.table,
                source_id=rejected.source_id,
                source_path=plain_url,
                error_code=rejected.code,
                failure_status="Permanent",
                details=rejected.details,
            ),
            source_id=rejected.source_id,
        )

    def _finished(self, client: QueueClient, message: QueueMessage, parsed: IngestionMessage, outcome: BlobOutcome) -> None:
        """Runs on a worker thread: report, delete the blob if asked, then settle the message."""
        try:
            job = outcome.job
            if outcome.status == "Failed":
                notification = failure_notification(
                    operation_id=job.operation_id,
                    database=job.database,
                    table=job.table,
                    source_id=job.source_id,
                    source_path=job.plain_url,
                    error_code=outcome.error_code or "Unknown",
                    failure_status=outcome.failure_status or "Unknown",
                    details=outcome.details or "",
                )
            else:
                notification = success_notification(
                    operation_id=job.operation_id,
                    database=job.database,
                    table=job.table,
                    source_id=job.source_id,
                    source_path=job.plain_url,
                )
                if not parsed.retain_blob_on_success:
                    self._delete_source(job)
            self._report(parsed.reporting, status=outcome.status, notification=notification, source_id=job.source_id)
            client.delete_message(message)
        finally:
            with self._in_flight_changed:
                self._in_flight -= 1
                self._in_flight_changed.notify_all()

    def _delete_source(self, job: IngestionJob) -> None:
        """RetainBlobOnSuccess=false: the service deletes the blob once it is ingested (best effort, like Kusto)."""
        try:
            delete_blob(blob_client(job.blob_url, self._state.storage_connection_string), job.plain_url)
        except IngestionError as error:
            logger.warning("could not delete %s after ingestion: %s", job.plain_url, error.code)

    def _report(self, reporting: Reporting, *, status: str, notification: dict[str, Any], source_id: str) -> None:
        if not reporting.reports(succeeded=status != "Failed"):
            return
        if reporting.to_queue:
            queue = self._failed if status == "Failed" else self._succeeded
            queue.send_message(json.dumps(notification, separators=(",", ":")))
        if reporting.to_table:
            self._update_status_row(reporting, status, notification, source_id)

    def _update_status_row(self, reporting: Reporting, status: str, notification: dict[str, Any], source_id: str) -> None:
        """Fill in the status-table row: the one the message names, else PartitionKey = RowKey = source id in ours."""
        if reporting.status_table is not None:
            table = TableClient.from_table_url(reporting.status_table.table_url)
            keys = {"PartitionKey": reporting.status_table.partition_key, "RowKey": reporting.status_table.row_key}
        else:
            table = self._status_table
            keys = {"PartitionKey": source_id, "RowKey": source_id}
        entity = {
            **keys,
            "Status": status,
            "UpdatedOn": datetime.now(UTC),
            "OperationId": notification["OperationId"],
            "ActivityId": notification["RootActivityId"],
            "IngestionSourceId": notification["IngestionSourceId"],
            "IngestionSourcePath": notification["IngestionSourcePath"],
            "Database": notification["Database"],
            "Table": notification["Table"],
            "ErrorCode": notification.get("ErrorCode"),
            "FailureStatus": notification.get("FailureStatus"),
            "Details": notification.get("Details"),
            "OriginatesFromUpdatePolicy": notification.get("OriginatesFromUpdatePolicy", False),
        }
        table.upsert_entity({key: value for key, value in entity.items() if value is not None}, mode=UpdateMode.MERGE)
