"""Wire formats of the queue-based protocol: ingestion messages in, status notifications out.

The official clients disagree on spelling: the Python and Node SDKs send PascalCase keys and integer
enums, the Java SDK camelCase keys and enum names, and AdditionalProperties values arrive either as JSON
text (`"tags": "[\\"a\\"]"`) or as native JSON. The real service accepts all of them, so the parser here
matches keys case-insensitively and takes every form. Notifications are written the way the SDKs read
them: PascalCase keys and .NET timestamps with 7 fractional digits.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .ingestion_properties import job_properties

REPORT_FAILURES_ONLY, REPORT_NONE, REPORT_ALL = 0, 1, 2
METHOD_QUEUE, METHOD_TABLE, METHOD_QUEUE_AND_TABLE = 0, 1, 2

INT64_MAX = 2**63 - 1
"""Kusto reads sizes as 64-bit integers (C# long): a larger RawDataSize cannot be parsed."""

_REPORT_LEVELS = {
    "failuresonly": REPORT_FAILURES_ONLY,
    "donotreport": REPORT_NONE,
    "none": REPORT_NONE,
    "failuresandsuccesses": REPORT_ALL,
}
_REPORT_METHODS = {"queue": METHOD_QUEUE, "table": METHOD_TABLE, "queueandtable": METHOD_QUEUE_AND_TABLE}


class UnattributableMessageError(ValueError):
    """The message cannot be tied to a source id, so no notification can report it: it goes to the poison queue."""


@dataclass(frozen=True)
class StatusTableRow:
    """Where ReportMethod Table reports: the status table (URL with SAS) and the row the client created."""

    table_url: str
    partition_key: str
    row_key: str


@dataclass(frozen=True)
class Reporting:
    """Who hears about the outcome of a message: ReportLevel, ReportMethod and the status-table row."""

    level: int = REPORT_FAILURES_ONLY
    method: int = METHOD_QUEUE
    status_table: StatusTableRow | None = None

    def reports(self, succeeded: bool) -> bool:
        return self.level == REPORT_ALL or (self.level == REPORT_FAILURES_ONLY and not succeeded)

    @property
    def to_queue(self) -> bool:
        return self.method in (METHOD_QUEUE, METHOD_QUEUE_AND_TABLE)

    @property
    def to_table(self) -> bool:
        return self.method in (METHOD_TABLE, METHOD_QUEUE_AND_TABLE)


@dataclass(frozen=True)
class IngestionMessage:
    """A parsed ingestion message; `properties` uses the REST names the worker reads."""

    source_id: str
    blob_url: str
    database: str
    table: str
    reporting: Reporting
    authorization_context: Any = None
    raw_size: int | None = None
    retain_blob_on_success: bool = True
    properties: dict[str, Any] = field(default_factory=dict)


class RejectedMessageError(ValueError):
    """A message that names its source but cannot be ingested: reported as a failure with `code`."""

    def __init__(
        self, code: str, details: str, *, source_id: str, database: str, table: str, blob_url: str, reporting: Reporting
    ) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details
        self.source_id = source_id
        self.database = database
        self.table = table
        self.blob_url = blob_url
        self.reporting = reporting


def decode_message(text: str) -> dict[str, Any]:
    """The JSON object of a queue message: base64 of UTF-8 JSON (every SDK), or plain JSON text (lenient)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        payload = stripped
    else:
        try:
            payload = base64.b64decode(stripped, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise UnattributableMessageError("the message is neither base64 of JSON nor JSON text") from None
    try:
        document = json.loads(payload)
    except ValueError as error:
        raise UnattributableMessageError(f"the message is not valid JSON ({error.msg} at position {error.pos})") from None
    if not isinstance(document, dict):
        raise UnattributableMessageError(f"the message is JSON {type(document).__name__}, not an object")
    return document


def _folded(document: dict[str, Any]) -> dict[str, Any]:
    return {str(key).lower(): value for key, value in document.items()}


def _enum(value: Any, names: dict[str, int], field_name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError(f"{field_name} {value!r} is not a number or a name")
    if isinstance(value, int) and value in names.values():
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and int(text) in names.values():
            return int(text)
        if text.lower() in names:
            return names[text.lower()]
    raise ValueError(f"{field_name} {value!r} is not one of {sorted(set(names.values()))} or {sorted(names)}")


def _status_table(value: Any) -> StatusTableRow | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    folded = _folded(value) if isinstance(value, dict) else {}
    url, partition, row = folded.get("tableconnectionstring"), folded.get("partitionkey"), folded.get("rowkey")
    if not all(isinstance(item, str) and item for item in (url, partition, row)):
        raise ValueError("IngestionStatusInTable needs TableConnectionString, PartitionKey and RowKey strings")
    return StatusTableRow(url, partition, row)


def _text(folded: dict[str, Any], key: str) -> str:
    value = folded.get(key)
    return value.strip() if isinstance(value, str) else ""


def _additional_properties(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if not isinstance(value, dict):
        raise ValueError("AdditionalProperties must be a JSON object")
    return value


def _as_bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def parse_message(document: dict[str, Any]) -> IngestionMessage:
    """An IngestionMessage, or RejectedMessageError (reportable) / UnattributableMessageError (poison)."""
    folded = _folded(document)
    source_id = folded.get("id")
    if not isinstance(source_id, str) or not source_id.strip():
        raise UnattributableMessageError("the message has no Id, so no notification could name its source")
    source_id = source_id.strip()
    database, table, blob_url = _text(folded, "databasename"), _text(folded, "tablename"), _text(folded, "blobpath")
    reporting = Reporting()

    def reject(code: str, details: str) -> RejectedMessageError:
        return RejectedMessageError(
            code, details, source_id=source_id, database=database, table=table, blob_url=blob_url, reporting=reporting
        )

    try:
        reporting = Reporting(
            _enum(folded.get("reportlevel"), _REPORT_LEVELS, "ReportLevel", REPORT_FAILURES_ONLY),
            _enum(folded.get("reportmethod"), _REPORT_METHODS, "ReportMethod", METHOD_QUEUE),
            _status_table(folded.get("ingestionstatusintable")),
        )
    except ValueError as error:
        raise reject("BadRequest_MalformedIngestionProperty", str(error)) from None
    if not blob_url:
        raise reject("BadRequest_EmptyBlobUri", "the message has no BlobPath")
    if not database:
        raise reject("BadRequest_EmptyDatabaseName", "the message has no DatabaseName")
    if not table:
        raise reject("BadRequest_InvalidOrEmptyTableName", "the message has no TableName")
    try:
        additional = _additional_properties(folded.get("additionalproperties"))
    except ValueError as error:
        raise reject("BadRequest_MalformedIngestionProperty", f"AdditionalProperties cannot be read: {error}") from None
    raw_size = folded.get("rawdatasize")
    try:
        raw_size = int(raw_size) if raw_size not in (None, "") else None
    except (TypeError, ValueError):
        raise reject("BadRequest_MalformedIngestionProperty", f"RawDataSize {raw_size!r} is not a number") from None
    if raw_size is not None and not 0 <= raw_size <= INT64_MAX:
        raise reject("BadRequest_MalformedIngestionProperty", f"RawDataSize {raw_size} is outside 0..{INT64_MAX} (a 64-bit size)")
    authorization = next((value for key, value in additional.items() if str(key).lower() == "authorizationcontext"), None)
    return IngestionMessage(
        source_id=source_id,
        blob_url=blob_url,
        database=database,
        table=table,
        reporting=reporting,
        authorization_context=authorization,
        raw_size=raw_size,
        retain_blob_on_success=_as_bool(folded.get("retainblobonsuccess"), True),
        properties=job_properties(additional),
    )


def dotnet_timestamp() -> str:
    """The current UTC time as .NET writes it: 7 fractional digits and `Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def success_notification(*, operation_id: str, database: str, table: str, source_id: str, source_path: str) -> dict[str, Any]:
    """The SuccessfulIngestionsQueue message; `source_path` must be free of credentials."""
    return {
        "OperationId": operation_id,
        "Database": database,
        "Table": table,
        "SucceededOn": dotnet_timestamp(),
        "IngestionSourceId": source_id,
        "IngestionSourcePath": source_path,
        "RootActivityId": str(uuid.uuid4()),
    }


def failure_notification(
    *,
    operation_id: str,
    database: str,
    table: str,
    source_id: str,
    source_path: str,
    error_code: str,
    failure_status: str,
    details: str,
) -> dict[str, Any]:
    """The FailedIngestionsQueue message; `source_path` and `details` must be free of credentials."""
    return {
        "OperationId": operation_id,
        "Database": database,
        "Table": table,
        "FailedOn": dotnet_timestamp(),
        "IngestionSourceId": source_id,
        "IngestionSourcePath": source_path,
        "Details": details,
        "ErrorCode": error_code,
        "FailureStatus": failure_status,
        "RootActivityId": str(uuid.uuid4()),
        "OriginatesFromUpdatePolicy": False,
        "ShouldRetry": failure_status == "Transient",
    }
