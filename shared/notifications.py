"""Builds failure notifications: the one message shape every failure in the app ends up as.

Design doc 000 defines the failure message Kusto writes to its FailedIngestionsQueue. The app uses the same
shape for failures it finds itself (a blob it cannot route, a request Kusto rejects, a poisoned message, an
operation whose outcome never came), so the failure queue trigger has one format to turn into alerts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared import schemas
from shared.redaction import plain_blob_url, redact

PERMANENT = "Permanent"
TRANSIENT = "Transient"
EXHAUSTED = "Exhausted"
UNKNOWN = "Unknown"


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 with a Z suffix (the form every message in the app uses)."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


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
) -> dict[str, Any]:
    """A schema-valid failure notification; credentials are stripped from the path and the details."""
    message = {
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


def pending_blob_fields(pending: Mapping[str, Any]) -> dict[str, str]:
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


def tracked_blob_fields(record: Mapping[str, Any], blob: Mapping[str, Any]) -> dict[str, str]:
    """The `failure_notification` arguments that name a blob of a tracking record, with its operation."""
    return {
        "database": record["database"],
        "table": record["table"],
        "blob_url": blob["blobUrl"],
        "blob_name": blob["blobName"],
        "source_id": blob["sourceId"],
        "operation_id": record["operationId"],
    }
