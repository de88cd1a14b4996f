"""The shapes of the app's own queue messages, as Python types: pending message, tracking record, failure notification.

Each shape is a JSON Schema in `shared/schemas/` (the contract, checked on every write and read); the TypedDicts
here say the same to the type checker, so code reads `pending["blobName"]` against a declared field instead of
a bare string key. `read_*` parse and validate a message's text and hand it back typed: a text that is not a
valid message raises `schemas.MessageError` (a ValueError) naming the field.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict, cast

from shared import schemas


class PendingMessage(TypedDict):
    """A staged blob waiting to be submitted (`pending-blob.schema.json`), written by the recorder."""

    version: int
    blobUrl: str
    container: str
    blobName: str
    etag: str
    size: int
    rawSize: NotRequired[int | None]
    sourceId: str
    database: str
    table: str
    properties: dict[str, Any]
    recordedAt: str
    attempt: NotRequired[int]
    """A deliberate resubmission's number (absent or 0 for the first recording)."""
    submitAlone: NotRequired[bool]
    """Sent in a request of its own next time: a request holding it failed with a server error."""


class TrackedBlob(TypedDict):
    """One blob of a tracking record; `pending` is its pending message, kept for a resubmission when it fits."""

    sourceId: str
    blobUrl: str
    container: str
    blobName: str
    pending: NotRequired[PendingMessage]


class TrackingRecord(TypedDict):
    """One operation Kusto accepted, whose outcome is not known yet (`tracking-record.schema.json`)."""

    version: int
    database: str
    table: str
    operationId: str
    mode: NotRequired[str]
    submittedAt: str
    polls: NotRequired[int]
    lastError: NotRequired[str]
    blobs: list[TrackedBlob]


class FailureNotification(TypedDict):
    """One failure, in the shape of Kusto's failure queue (`failure-notification.schema.json`), that becomes an alert."""

    OperationId: str
    Database: str
    Table: str
    FailedOn: str
    IngestionSourceId: str
    IngestionSourcePath: str
    Details: str
    ErrorCode: str
    FailureStatus: str
    RootActivityId: str
    OriginatesFromUpdatePolicy: bool
    ShouldRetry: bool
    Origin: NotRequired[str]
    BlobName: NotRequired[str]


def read_pending(text: str | bytes) -> PendingMessage:
    """A pending message from its JSON text; MessageError when it is not one."""
    return cast(PendingMessage, schemas.parse(schemas.PENDING_BLOB, text))


def read_tracking_record(text: str | bytes) -> TrackingRecord:
    """A tracking record from its JSON text; MessageError when it is not one."""
    return cast(TrackingRecord, schemas.parse(schemas.TRACKING_RECORD, text))


def read_failure_notification(text: str | bytes) -> FailureNotification:
    """A failure notification from its JSON text; MessageError when it is not one."""
    return cast(FailureNotification, schemas.parse(schemas.FAILURE_NOTIFICATION, text))


def is_valid(schema: str, message: object) -> bool:
    """Whether an already parsed `message` matches `schema` (a payload found somewhere, such as a poison queue)."""
    try:
        schemas.validate(schema, message)
    except schemas.MessageError:
        return False
    return True
