"""Queue mode: turns Kusto's failure notifications about our blobs into the app's failure notifications.

In queue mode Kusto reports a failed blob only on its FailedIngestionsQueue (REPORT_METHOD Queue). This
relay reads that queue and, for each notification about a blob of our staging container, writes a failure
notification (Origin `relay`) to the app's failures queue, where it becomes an alert, then deletes Kusto's
message. A notification about anybody else's blob (the DM service's queues may be shared) is left alone:
it is made visible again at the end of the run, for its owner.

One failure is not the blob's fault: `BadRequest_InvalidKustoIdentityToken` means the token the message
carried had expired or was refused. The relay then drops the cached token and records the blob again
(`shared.recorder.record_blob`) as a new attempt, which the submission ledger does not take for a duplicate
of the refused one, so it is submitted with a fresh token; only when the blob was replaced
or removed meanwhile, or the same blob was refused TOKEN_RETRIES times in this process, does it alert.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

from shared import error_codes
from shared.dm_resources import DmResourceCache
from shared.messages import FailureNotification
from shared.notifications import UNKNOWN, failure_notification, send_failure
from shared.recorder import PENDING, record_blob
from shared.redaction import plain_blob_url, redact
from shared.staging_area import RefusedMessageError, source_id
from shared.storage import decode_message, receive_pages

if TYPE_CHECKING:
    from shared.services import Services

logger = logging.getLogger(__name__)

TOKEN_RETRIES = 3
"""Resubmissions of one blob after token rejections before the rejection alerts (per worker process)."""
LEASE_SECONDS = 60
MAX_PER_RUN = 512
ORIGIN = "relay"
_FAILURE_STATUSES = ("Unknown", "Permanent", "Transient", "Exhausted")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")


@dataclass
class RelayReport:
    """What one relay run did."""

    received: int = 0
    forwarded: int = 0
    resubmitted: int = 0
    foreign: int = 0


def relay_failures(services: Services, resources: DmResourceCache, *, max_messages: int = MAX_PER_RUN) -> RelayReport:
    """Forward Kusto's failure notifications about our blobs to the failures queue; see the module docstring."""
    report = RelayReport()
    # Read raw: each message is decoded on its own, so one odd message cannot block a page.
    queue = services.kusto_queue(resources.resources().failure_queue)
    prefix = services.staging.url_prefix
    foreign: list[QueueMessage] = []
    try:
        for page in receive_pages(queue, limit=max_messages, visibility_timeout=LEASE_SECONDS):
            report.received += len(page)
            for message in page:
                notification = _read(message)
                path = plain_blob_url(str(notification.get("ingestionsourcepath") or "")) if notification else ""
                if notification is None or not path.startswith(prefix):
                    foreign.append(message)
                    continue
                blob_name = unquote(path[len(prefix) :])
                if _resubmitted(services, resources, notification, blob_name):
                    report.resubmitted += 1
                else:
                    send_failure(services.failures_queue, _relayed(notification, path, blob_name))
                    report.forwarded += 1
                queue.delete_message(message)
    finally:
        for message in foreign:
            _release(queue, message)
        report.foreign = len(foreign)
    if report.received:
        logger.info(
            "relay run: %d Kusto failure notifications, %d forwarded, %d resubmitted, %d not ours",
            report.received,
            report.forwarded,
            report.resubmitted,
            report.foreign,
        )
    return report


def _read(message: QueueMessage) -> dict[str, Any] | None:
    """The notification with lower-cased keys, or None when it is not one (it is then nobody's we can tell)."""
    try:
        document = json.loads(decode_message(str(message.content or "")))
    except ValueError as error:
        logger.warning("message %s on Kusto's failure queue is not base64 JSON, left alone: %s", message.id, error)
        return None
    if not isinstance(document, Mapping):
        return None
    return {str(key).lower(): value for key, value in document.items()}


def _release(queue: QueueClient, message: QueueMessage) -> None:
    try:
        queue.update_message(message, visibility_timeout=0)
    except AzureError as error:
        # It reappears by itself once the lease ends.
        logger.warning("message %s on Kusto's failure queue not released (%s)", message.id, type(error).__name__)


def _resubmitted(services: Services, resources: DmResourceCache, notification: Mapping[str, Any], blob_name: str) -> bool:
    """For a refused identity token: new token, blob recorded again; False when the failure must alert instead."""
    if str(notification.get("errorcode")) != error_codes.INVALID_KUSTO_IDENTITY_TOKEN:
        return False
    sid = str(notification.get("ingestionsourceid") or "")
    if resources.record_token_rejection(sid) > TOKEN_RETRIES:
        logger.error("Kusto refused the identity token for source %s %d times; alerting", sid, TOKEN_RETRIES + 1)
        return False
    try:
        blob = services.staging.blob(blob_name)
    except RefusedMessageError as error:
        logger.error("Kusto's failure notification for source %s names a blob the app never records (%s): alerting", sid, error)
        return False
    try:
        etag = blob.get_blob_properties().etag
    except ResourceNotFoundError:
        return False
    if source_id(blob.url, etag) != sid:
        # The blob was replaced: the new version was recorded on its own; this one's failure still alerts.
        return False
    if record_blob(blob, services, attempt=services.ledger.next_attempt(sid)).outcome != PENDING:
        return False  # record_blob wrote its own failure notification
    logger.warning("Kusto refused the identity token for %s; token dropped, blob recorded again", blob_name)
    return True


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _relayed(notification: Mapping[str, Any], path: str, blob_name: str) -> FailureNotification:
    """The app's notification for Kusto's: same fields, the path plain, the status and time made schema-valid."""
    status = notification.get("failurestatus")
    if isinstance(status, int) and 0 <= status < len(_FAILURE_STATUSES):
        status = _FAILURE_STATUSES[status]
    failed_on = _text(notification.get("failedon"))
    time_match = _DATE_TIME.match(failed_on)
    if time_match and time_match.group(2) is None:
        failed_on += "Z"  # Kusto's times are UTC; some writers leave the zone off
    return failure_notification(
        error_code=_text(notification.get("errorcode")) or "Unknown",
        details=redact(_text(notification.get("details"))) or "Kusto reported the failure without details",
        origin=ORIGIN,
        database=_text(notification.get("database"))[:1024],
        table=_text(notification.get("table"))[:1024],
        blob_url=path,
        blob_name=blob_name[:1024],
        source_id=_text(notification.get("ingestionsourceid"))[:256],
        operation_id=_text(notification.get("operationid"))[:256],
        failure_status=status if status in _FAILURE_STATUSES else UNKNOWN,
        root_activity_id=_text(notification.get("rootactivityid"))[:256],
        should_retry=notification.get("shouldretry") is True,
        failed_on=failed_on if time_match else None,
    )
