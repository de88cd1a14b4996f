"""Blob trigger body: records one arriving blob as a pending message, or reports why it cannot be loaded.

The blob is never downloaded: one `get_blob_properties()` call gives the size, ETag, metadata and content
settings, which is all routing needs. Every blob ends as exactly one message: a pending message on the
pending queue, or a failure notification on the failures queue. A blob that can never be routed is
reported once and the function returns normally, because a retry could not fix it and would only end in
the blob trigger's poison queue with no reason attached. Storage errors other than "not found" propagate,
so the host retries them and, if they last, poisons the blob.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobClient

from shared import schemas
from shared.formats import reports_raw_size
from shared.notifications import failure_notification, utc_now_iso
from shared.redaction import plain_blob_url
from shared.routing import COMPRESSION_MISMATCH, EMPTY_BLOB, Route, RoutingError, check_blob_name, router_for
from shared.staging_area import source_id
from shared.storage import QUEUE_TEXT_LIMIT

if TYPE_CHECKING:
    from shared.services import Services

logger = logging.getLogger(__name__)

PENDING = "pending"
REJECTED = "rejected"
SOURCE_NOT_FOUND = "Download_SourceNotFound"
"""Kusto's own code for a blob that is gone, so one alert rule covers the app's and Kusto's reports alike."""
ORIGIN = "routing"
MESSAGE_TOO_LARGE = "Routing_MessageTooLarge"


@dataclass(frozen=True)
class RecordResult:
    """What became of one blob: `outcome` is PENDING or REJECTED, `message` the one message written for it."""

    outcome: str
    message: dict[str, Any]

    @property
    def error_code(self) -> str | None:
        return self.message.get("ErrorCode")


def _blob_path(blob: BlobClient) -> str:
    return f"{blob.container_name}/{blob.blob_name}"


URL_MAX_LENGTH = 4096
"""The longest blob URL a pending message or a failure notification holds (their schemas' maxLength)."""


def rejection_notification(blob: BlobClient, url: str, sid: str, error: RoutingError) -> dict[str, Any]:
    """The failure notification for a blob routing refused; the URL is left out when it is too long to hold."""
    return failure_notification(
        error_code=error.code,
        details=f"blob {_blob_path(blob)!r} was not recorded: {error.reason}",
        origin=ORIGIN,
        database=error.database,
        table=error.table,
        # A name of 1024 non-ASCII characters makes a URL over 9000 characters: BlobName still names the blob.
        blob_url=url if len(url) <= URL_MAX_LENGTH else "",
        blob_name=blob.blob_name[:1024],
        source_id=sid,
    )


def _reject(services: Services, blob: BlobClient, url: str, sid: str, error: RoutingError) -> RecordResult:
    notification = rejection_notification(blob, url, sid, error)
    services.failures_queue.send_message(schemas.dump(schemas.FAILURE_NOTIFICATION, notification))
    logger.warning(
        "blob rejected %r: %s %s",
        _blob_path(blob),
        error.code,
        error.reason,
        extra={"custom_dimensions": {"blobName": blob.blob_name, "errorCode": error.code, "sourceId": sid}},
    )
    return RecordResult(REJECTED, notification)


def _pending_message(blob: BlobClient, url: str, sid: str, etag: str, size: int, route: Route) -> dict[str, Any]:
    data_format = route.properties["format"]
    raw_size = route.raw_size
    if raw_size is None and reports_raw_size(data_format, route.compression):
        raw_size = size
    return {
        "version": 1,
        "blobUrl": url,
        "container": blob.container_name,
        "blobName": blob.blob_name,
        "etag": etag,
        "size": size,
        "rawSize": raw_size,
        "sourceId": sid,
        "database": route.database,
        "table": route.table,
        "properties": dict(route.properties),
        "recordedAt": utc_now_iso(),
    }


def record_blob(blob: BlobClient, services: Services, *, attempt: int = 0) -> RecordResult:
    """Route one staged blob and write its pending message, or its failure notification when it cannot be routed.

    `attempt` is 0 for a blob that landed, and the attempt number when the app records a blob again on
    purpose (the queue relay, after Kusto refused an identity token), so the submission ledger does not take
    the new attempt for a duplicate of the first.
    """
    url = plain_blob_url(blob.url)
    try:
        # Before any request: a name with '..' or an escape could make the request read some other blob.
        check_blob_name(blob.blob_name)
    except RoutingError as error:
        return _reject(services, blob, url, "", error)
    try:
        properties = blob.get_blob_properties()
    except ResourceNotFoundError as error:
        reason = f"the blob was deleted before it could be read ({error.error_code or 'BlobNotFound'})"
        return _reject(services, blob, url, "", RoutingError(SOURCE_NOT_FOUND, reason))
    etag = properties.etag
    sid = source_id(url, etag)
    try:
        route = router_for(services.settings).route(blob.blob_name, properties.metadata or {})
        if properties.size == 0:
            raise RoutingError(EMPTY_BLOB, "the blob is empty (0 bytes)", database=route.database, table=route.table)
        encoding = (properties.content_settings.content_encoding or "").strip().lower()
        if encoding == "gzip" and route.compression != "gzip":
            raise RoutingError(
                COMPRESSION_MISMATCH,
                "the blob is stored gzip-encoded (Content-Encoding: gzip) but its name does not end in .gz, and Kusto "
                "takes compression from the name; add .gz to the name",
                database=route.database,
                table=route.table,
            )
    except RoutingError as error:
        return _reject(services, blob, url, sid, error)
    message = _pending_message(blob, url, sid, etag, properties.size, route)
    if attempt:
        message["attempt"] = attempt
    text = schemas.dump(schemas.PENDING_BLOB, message)
    if len(text.encode("utf-8")) > QUEUE_TEXT_LIMIT:
        reason = (
            f"its pending message would be {len(text.encode('utf-8'))} bytes, over the queue's {QUEUE_TEXT_LIMIT}; use fewer tags"
        )
        return _reject(
            services, blob, url, sid, RoutingError(MESSAGE_TOO_LARGE, reason, database=route.database, table=route.table)
        )
    services.pending_queue.send_message(text)
    logger.info(
        "blob pending %r -> %s.%s (%s, %s)",
        _blob_path(blob),
        route.database,
        route.table,
        message["properties"]["format"],
        route.source,
        extra={
            "custom_dimensions": {
                "blobName": blob.blob_name,
                "database": route.database,
                "table": route.table,
                "sourceId": sid,
                "size": properties.size,
                "contentType": properties.content_settings.content_type or "",
                "routedBy": route.source,
            }
        },
    )
    return RecordResult(PENDING, message)
