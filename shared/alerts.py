"""Failure queue trigger body: every failure notification becomes one structured alert log record.

The record is the alert of record: an Azure Monitor log alert rule matches the stable message prefix
`KUSTO_INGESTION_FAILURE` (logger `shared.alerts`) and reads the custom dimensions, which follow
`alert.schema.json`. Permanent and Exhausted failures log at ERROR, because nothing will fix them without a
person; Transient and Unknown ones at WARNING. A notification that is not valid still alerts, at ERROR, as
`Alert_MalformedNotification` with the redacted payload attached: a broken message must never turn a
failure into silence. Every text dimension is redacted and has its control and bidi characters escaped, so
neither the log line nor a webhook message built from the dimensions carries a secret or a forged line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared import error_codes, schemas
from shared.messages import FailureNotification, read_failure_notification
from shared.notifications import EXHAUSTED, PERMANENT
from shared.redaction import clean, plain_blob_url
from shared.storage import readable_text

logger = logging.getLogger(__name__)

ALERT_KEY = "KUSTO_INGESTION_FAILURE"
"""Every alert record's message starts with this; alert rules match on it. Changing it breaks deployed rules."""
DETAILS_LIMIT = 4096
"""Longest text kept in one dimension: Application Insights cuts custom dimension values at 8192 characters."""
MESSAGE_DETAILS_LIMIT = 512
VALIDATION_ERROR_LIMIT = 1024

_MESSAGE = ALERT_KEY + " errorCode=%s failureStatus=%s database=%s table=%s blob=%s origin=%s details=%s"
"""The record's text. errorCode, database and table (what alert rules split by) are written by `_record_field`;
infra/queries/ingestion-failures.kql reads them back. Changing the text breaks deployed rules."""


def _record_field(value: str) -> str:
    """`value` as a JSON string in which a quote is written `\\u0022`: a `"` in the record then only ever bounds a
    field, so names with dots, spaces or dashes (`"My.Db"`, `"Order Lines"`) read back whole with a KQL `parse`
    on `database="` ... `"`, and `parse_json` undoes the escapes. No literal quote inside also means that the
    log redaction, which cuts a secret off at a quote, can never leave one behind that ends the field early."""
    return '"' + json.dumps(value, ensure_ascii=False)[1:-1].replace('\\"', "\\u0022") + '"'


@dataclass(frozen=True)
class Alert:
    """One alert: the level and text it was logged with and its dimensions (valid per alert.schema.json).

    `notification` is the parsed failure notification, or None when the payload was malformed; sinks that
    come later (webhook, digest) read the alert instead of parsing the queue message again.
    """

    level: int
    args: tuple[str, ...]
    """The values of the record's message template (from the dimensions: redacted, control characters escaped)."""
    dimensions: Mapping[str, Any]
    notification: FailureNotification | None

    @property
    def message(self) -> str:
        return _MESSAGE % self.args

    @property
    def error_code(self) -> str:
        return self.dimensions["errorCode"]

    @property
    def failure_status(self) -> str:
        return self.dimensions["failureStatus"]


def _clean(value: Any, limit: int) -> str:
    """Text safe for a log dimension: a string, credentials redacted, control and bidi characters escaped
    (`shared.names.printable`: a crafted blob name cannot forge a log line or a chat message), cut to `limit`."""
    return clean(value if isinstance(value, str) else "")[:limit]


def _safe_path(value: Any) -> str:
    return _clean(plain_blob_url(value), 4096) if isinstance(value, str) and value else ""


def level_for(failure_status: str) -> int:
    """ERROR when a person must act (Permanent, Exhausted), WARNING when it may still resolve itself."""
    return logging.ERROR if failure_status in (PERMANENT, EXHAUSTED) else logging.WARNING


def _dimensions(notification: Mapping[str, Any], queue_name: str, message_id: str, dequeue_count: int) -> dict[str, Any]:
    return {
        "alertKey": ALERT_KEY,
        "errorCode": _clean(notification.get("ErrorCode"), 256),
        "failureStatus": notification.get("FailureStatus"),
        "origin": _clean(notification.get("Origin"), 64),
        "database": _clean(notification.get("Database"), 1024),
        "table": _clean(notification.get("Table"), 1024),
        "blobPath": _safe_path(notification.get("IngestionSourcePath")),
        "blobName": _clean(notification.get("BlobName"), 1024),
        "operationId": _clean(notification.get("OperationId"), 256),
        "sourceId": _clean(notification.get("IngestionSourceId"), 256),
        "rootActivityId": _clean(notification.get("RootActivityId"), 256),
        "failedOn": _clean(notification.get("FailedOn"), 64),
        "shouldRetry": notification.get("ShouldRetry") is True,
        "details": _clean(notification.get("Details"), DETAILS_LIMIT),
        "queueName": queue_name[:63],
        "messageId": message_id[:256],
        "dequeueCount": max(dequeue_count, 0),
    }


def _malformed_dimensions(body: str, problem: str, queue_name: str, message_id: str, dequeue_count: int) -> dict[str, Any]:
    """Dimensions for a payload that is not a valid notification: keep what can be read, name what is wrong."""
    dimensions = _dimensions({}, queue_name, message_id, dequeue_count)
    dimensions.update(
        errorCode=error_codes.ALERT_MALFORMED_NOTIFICATION,
        failureStatus=PERMANENT,
        details=f"a failure notification on {queue_name} could not be read: {_clean(problem, VALIDATION_ERROR_LIMIT)}",
        validationError=_clean(problem, VALIDATION_ERROR_LIMIT),
        # Decoded first when it is base64 text (written encoded twice, say): a SAS inside base64 escapes redaction.
        rawPayload=_clean(readable_text(body), DETAILS_LIMIT),
    )
    return dimensions


def raise_alert(body: str, *, queue_name: str, message_id: str, dequeue_count: int) -> Alert:
    """Turn one failure notification (the decoded queue message text) into one alert log record.

    The record needs no client; the sinks that build on the returned Alert do (`shared.sinks`).
    """
    alert = build_alert(body, queue_name=queue_name, message_id=message_id, dequeue_count=dequeue_count)
    log_alert(alert)
    return alert


def log_alert(alert: Alert) -> None:
    """Write the alert log record: the stable message template, the alert's values, its custom dimensions."""
    logger.log(alert.level, _MESSAGE, *alert.args, extra={"custom_dimensions": alert.dimensions})


def build_alert(body: str, *, queue_name: str, message_id: str, dequeue_count: int) -> Alert:
    """The alert for one failure notification, not yet logged (`alert_markers` may find it was logged already)."""
    notification: FailureNotification | None
    try:
        notification = read_failure_notification(body)
    except schemas.MessageError as error:
        notification = None
        dimensions = _malformed_dimensions(body, str(error), queue_name, message_id, dequeue_count)
    else:
        dimensions = _dimensions(notification, queue_name, message_id, dequeue_count)
    schemas.validate(schemas.ALERT, dimensions)
    level = logging.ERROR if notification is None else level_for(dimensions["failureStatus"])
    args = (
        _record_field(dimensions["errorCode"]),
        dimensions["failureStatus"],
        _record_field(dimensions["database"]),
        _record_field(dimensions["table"]),
        *(
            value or "?"
            for value in (
                dimensions["blobName"] or dimensions["blobPath"],
                dimensions["origin"],
                dimensions["details"][:MESSAGE_DETAILS_LIMIT],
            )
        ),
    )
    return Alert(level=level, args=args, dimensions=dimensions, notification=notification)
