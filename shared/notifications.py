"""Builds and sends failure notifications: the one message shape every failure in the app ends up as.

Kusto's queue-based protocol defines the failure message Kusto writes to its FailedIngestionsQueue. The app uses the same
shape for failures it finds itself (a blob it cannot route, a request Kusto rejects, a poisoned message, an
operation whose outcome never came), so the failure queue trigger has one format to turn into alerts. Every
notification is built by `failure_notification` and written by `send_failure`, nowhere else.
"""

from __future__ import annotations

from typing import TypedDict

from azure.storage.queue import QueueClient

from shared import schemas
from shared.messages import FailureNotification, PendingMessage, TrackedBlob, TrackingRecord
from shared.redaction import plain_blob_url, redact
from shared.times import utc_now_iso

PERMANENT = "Permanent"
TRANSIENT = "Transient"
EXHAUSTED = "Exhausted"
UNKNOWN = "Unknown"


class BlobFields(TypedDict, total=False):
    """The `failure_notification` arguments that name a blob (and its target and operation)."""

    database: str
    table: str
    blob_url: str
    blob_name: str
    source_id: str
    operation_id: str


def failure_notification(
    *,
    error_code: str,
    details: str,
    origin: str,
    database: str = "",
    table: str = "",
    blob_url: str = "",
    blob_name: str = "",
    source_id: str = "",
    operation_id: str = "",
    failure_status: str = PERMANENT,
    root_activity_id: str = "",
    should_retry: bool = False,
    failed_on: str | None = None,
) -> FailureNotification:
    """A schema-valid failure notification; credentials are stripped from the path and the details."""
    message: FailureNotification = {
        "OperationId": operation_id,
        "Database": database,
        "Table": table,
        "FailedOn": failed_on or utc_now_iso(),
        "IngestionSourceId": source_id,
        "IngestionSourcePath": plain_blob_url(blob_url) if blob_url else "",
        "Details": redact(details)[:32768],
        "ErrorCode": error_code,
        "FailureStatus": failure_status,
        "RootActivityId": root_activity_id,
        "OriginatesFromUpdatePolicy": False,
        "ShouldRetry": should_retry,
        "Origin": origin,
        "BlobName": blob_name,
    }
    schemas.validate(schemas.FAILURE_NOTIFICATION, message)
    return message


def send_failure(queue: QueueClient, notification: FailureNotification) -> None:
    """Write one failure notification to the failures queue (validated against its schema first)."""
    queue.send_message(schemas.dump(schemas.FAILURE_NOTIFICATION, notification))


def pending_blob_fields(pending: PendingMessage | None) -> BlobFields:
    """The `failure_notification` arguments that name a blob, from a pending message ({} when there is none)."""
    if not pending:
        return {}
    return {
        "database": pending["database"],
        "table": pending["table"],
        "blob_url": pending["blobUrl"],
        "blob_name": pending["blobName"],
        "source_id": pending["sourceId"],
    }


def tracked_blob_fields(record: TrackingRecord, blob: TrackedBlob) -> BlobFields:
    """The `failure_notification` arguments that name a blob of a tracking record, with its operation."""
    return {
        "database": record["database"],
        "table": record["table"],
        "blob_url": blob["blobUrl"],
        "blob_name": blob["blobName"],
        "source_id": blob["sourceId"],
        "operation_id": record["operationId"],
    }
