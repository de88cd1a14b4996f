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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobProperties

from shared import schemas
from shared.error_codes import (
    DOWNLOAD_SOURCE_NOT_FOUND,
    ROUTING_COMPRESSION_MISMATCH,
    ROUTING_EMPTY_BLOB,
    ROUTING_MESSAGE_TOO_LARGE,
)
from shared.formats import reports_raw_size
from shared.messages import FailureNotification, PendingMessage
from shared.notifications import failure_notification, send_failure
from shared.redaction import plain_blob_url
from shared.routing import Route, RoutingError, check_blob_name
from shared.staging_area import source_id
from shared.storage import QUEUE_TEXT_LIMIT
from shared.times import utc_now_iso

if TYPE_CHECKING:
    from shared.services import Services

logger = logging.getLogger(__name__)

PENDING = "pending"
REJECTED = "rejected"
ORIGIN = "routing"


@dataclass(frozen=True)
class RecordResult:
    """What became of one blob: `outcome` is PENDING or REJECTED, `message` the one message written for it."""

    outcome: str
    message: Mapping[str, Any]
    """The pending message (PENDING) or the failure notification (REJECTED)."""

    @property
    def error_code(self) -> str | None:
        return self.message.get("ErrorCode")


def _blob_path(blob: BlobClient) -> str:
    return f"{blob.container_name}/{blob.blob_name}"


URL_MAX_LENGTH = 4096
"""The longest blob URL a pending message or a failure notification holds (their schemas' maxLength)."""


def rejection_notification(blob: BlobClient, url: str, sid: str, error: RoutingError) -> FailureNotification:
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
    send_failure(services.failures_queue, notification)
    logger.warning(
        "blob rejected %r: %s %s",
        _blob_path(blob),
        error.code,
        error.reason,
        extra={"custom_dimensions": {"blobName": blob.blob_name, "errorCode": error.code, "sourceId": sid}},
    )
    return RecordResult(REJECTED, notification)


def _pending_message(blob: BlobClient, url: str, sid: str, etag: str, size: int, route: Route) -> PendingMessage:
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


def route_version(services: Services, blob_name: str, properties: BlobProperties) -> Route:
    """Where one blob version goes, from its name and its properties (a listing's, with metadata, serves as well);
    raises RoutingError when it cannot be loaded. `backfill --dry-run` asks this without recording anything."""
    route = services.router.route(blob_name, properties.metadata or {})
    if properties.size == 0:
        raise RoutingError(ROUTING_EMPTY_BLOB, "the blob is empty (0 bytes)", database=route.database, table=route.table)
    encoding = (properties.content_settings.content_encoding or "").strip().lower()
    if encoding == "gzip" and route.compression != "gzip":
        raise RoutingError(
            ROUTING_COMPRESSION_MISMATCH,
            "the blob is stored gzip-encoded (Content-Encoding: gzip) but its name does not end in .gz, and Kusto "
            "takes compression from the name; add .gz to the name",
            database=route.database,
            table=route.table,
        )
    return route


def record_blob(blob: BlobClient, services: Services, *, attempt: int = 0, listed_source_id: str = "") -> RecordResult:
    """Route one staged blob and write its pending message, or its failure notification when it cannot be routed.

    `attempt` is 0 for a blob that landed, and the attempt number when the app records a blob again on
    purpose (the queue relay, after Kusto refused an identity token), so the submission ledger does not take
    the new attempt for a duplicate of the first. `listed_source_id` is the version's id when a listing gave
    its ETag (`shared.reconcile`): a name refused before any request is then rejected under that id.
    """
    url = plain_blob_url(blob.url)
    try:
        # Before any request: a name with '..' or an escape could make the request read some other blob.
        check_blob_name(blob.blob_name)
    except RoutingError as error:
        return _reject(services, blob, url, listed_source_id, error)
    try:
        properties = blob.get_blob_properties()
    except ResourceNotFoundError as error:
        reason = f"the blob was deleted before it could be read ({getattr(error, 'error_code', None) or 'BlobNotFound'})"
        return _reject(services, blob, url, "", RoutingError(DOWNLOAD_SOURCE_NOT_FOUND, reason))
    etag = properties.etag
    sid = source_id(url, etag)
    try:
        route = route_version(services, blob.blob_name, properties)
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
            services, blob, url, sid, RoutingError(ROUTING_MESSAGE_TOO_LARGE, reason, database=route.database, table=route.table)
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
