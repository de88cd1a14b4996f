"""Poison queue watcher (housekeeping timer): every message in a poison queue becomes an alert.

A message lands in a poison queue when the host (queue trigger, blob trigger) or the submission timer gave up
on it. Sitting there, it would be forgotten, so the watcher turns each one into an alert naming the queue
and carrying the original payload (redacted). First the message is kept in `<poison queue>-alerted` (it never
expires; nothing in the app reads it), so that once the cause is fixed an operator can send it back where it
came from with `python -m shared.ops replay poison`; then it is alerted; only then is it deleted:

* `<pending>-poison`, `<tracking>-poison`, `webjobs-blobtrigger-poison`: one failure notification per blob
  the payload names (`Poison_PendingQueue`, `Poison_TrackingQueue`, `Poison_BlobTrigger`; origin `poison`,
  FailureStatus Exhausted) is written to the failures queue. The alert then follows the normal path (log
  record, webhook, digest).
* `<failures>-poison`: the failure queue trigger itself gave up (a sink was down for all its attempts).
  Writing to the failures queue again could loop forever, so instead one `Poison_FailuresQueue` alert record
  is logged at ERROR through `shared.alerts` and the webhook is tried once. Nothing loops.

A message too large to be written to a queue again (foreign text that is not base64, over QUEUE_TEXT_LIMIT) is
alerted and not kept. A crash between the writes and the delete repeats an alert and keeps the message twice
(the replay sends a repeat back once); it never loses one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

from shared import alerts, error_codes, schemas
from shared.messages import FailureNotification, PendingMessage, TrackingRecord, is_valid
from shared.notifications import (
    EXHAUSTED,
    BlobFields,
    failure_notification,
    pending_blob_fields,
    send_failure,
    tracked_blob_fields,
)
from shared.redaction import plain_blob_url, redact
from shared.storage import QUEUE_TEXT_LIMIT, readable_text, receive_pages
from shared.webhook import AlertContent, WebhookError

if TYPE_CHECKING:
    from shared.services import Services

logger = logging.getLogger(__name__)

BLOB_TRIGGER_POISON_QUEUE = "webjobs-blobtrigger-poison"
ALERTED_SUFFIX = "-alerted"
MAX_PER_QUEUE_PER_RUN = 320
LEASE_SECONDS = 120
"""How long a received poison message stays hidden; one the run could not alert reappears after it."""
PAYLOAD_EXCERPT = 4000


def watched_queues(services: Services) -> dict[str, str]:
    """Poison queue name -> error code of its alerts."""
    settings = services.settings
    return {
        settings.pending_poison_queue: error_codes.POISON_PENDING_QUEUE,
        settings.tracking_poison_queue: error_codes.POISON_TRACKING_QUEUE,
        BLOB_TRIGGER_POISON_QUEUE: error_codes.POISON_BLOB_TRIGGER,
        settings.failures_poison_queue: error_codes.POISON_FAILURES_QUEUE,
    }


def kept_queue(poison_queue: str) -> str:
    """The queue that keeps a poison queue's messages once they are alerted (`replay poison` reads it)."""
    return poison_queue + ALERTED_SUFFIX


def watch_poison_queues(services: Services) -> int:
    """Housekeeping timer body: keep, alert and remove every poison message; returns how many were alerted."""
    alerted = 0
    for name, error_code in watched_queues(services).items():
        queue = services.raw_queue(name)
        for message in _drain(queue):
            try:
                text = readable_text(message.content)  # decoded first: a SAS inside base64 text escapes redaction
                kept_in = _keep(services, name, text)
                if name == services.settings.failures_poison_queue:
                    _alert_failures_poison(services, queue, message, text, kept_in)
                else:
                    _alert_poison(services, name, error_code, message, text, kept_in)
            except Exception as error:
                # Left in the poison queue: it reappears after the lease and the next run tries again.
                logger.error(
                    "poison message %s in %s not alerted yet, retried next run: %s", message.id, name, redact(str(error))
                )
                continue
            queue.delete_message(message, pop_receipt=message.pop_receipt)
            alerted += 1
    if alerted:
        logger.warning("poison watcher alerted %d message(s)", alerted)
    return alerted


def _drain(queue: QueueClient) -> Iterator[QueueMessage]:
    """Up to MAX_PER_QUEUE_PER_RUN messages, page by page; a queue nobody created yet is simply empty."""
    try:
        for page in receive_pages(queue, limit=MAX_PER_QUEUE_PER_RUN, visibility_timeout=LEASE_SECONDS):
            yield from page
    except ResourceNotFoundError:
        return


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _blob_fields(services: Services, queue_name: str, payload: Any) -> list[BlobFields]:
    """The blobs a poison payload names, as notification fields ([{}] when it names none we can read)."""
    settings = services.settings
    if not isinstance(payload, Mapping):
        return [{}]
    if queue_name == settings.pending_poison_queue and is_valid(schemas.PENDING_BLOB, payload):
        return [pending_blob_fields(cast(PendingMessage, payload))]
    if queue_name == settings.tracking_poison_queue and is_valid(schemas.TRACKING_RECORD, payload):
        record = cast(TrackingRecord, payload)
        return [tracked_blob_fields(record, blob) for blob in record["blobs"]]
    container, name = payload.get("ContainerName"), payload.get("BlobName")
    if queue_name == BLOB_TRIGGER_POISON_QUEUE and isinstance(container, str) and isinstance(name, str) and container and name:
        url = plain_blob_url(services.blob_service.get_blob_client(container, name).url)
        return [{"blob_url": url, "blob_name": name}]
    return [{}]


def _keep(services: Services, queue_name: str, text: str) -> str:
    """Keep the message's text in its poison queue's kept queue (created on first use); returns that queue's
    name, or "" when the text is too large to be written to a queue again."""
    if len(text.encode("utf-8")) > QUEUE_TEXT_LIMIT:
        return ""
    kept_in = kept_queue(queue_name)
    keeper = services.raw_queue(kept_in)
    try:
        keeper.send_message(text, time_to_live=-1)
    except ResourceNotFoundError:
        keeper.create_queue()
        keeper.send_message(text, time_to_live=-1)
    return kept_in


def _where_kept(kept_in: str) -> str:
    if not kept_in:
        return "it was too large to keep and was removed after this alert"
    return f"it was moved to queue {kept_in}; once the cause is fixed, 'python -m shared.ops replay poison' sends it back"


def _details(queue_name: str, message: QueueMessage, text: str, kept_in: str) -> str:
    return (
        f"message {message.id} was given up on after {message.dequeue_count} read(s) and sat in poison queue {queue_name}; "
        f"{_where_kept(kept_in)}. Payload: {redact(text)[:PAYLOAD_EXCERPT]}"
    )


def _alert_poison(services: Services, queue_name: str, error_code: str, message: QueueMessage, text: str, kept_in: str) -> None:
    for fields in _blob_fields(services, queue_name, _json(text)):
        send_failure(
            services.failures_queue,
            failure_notification(
                error_code=error_code,
                details=_details(queue_name, message, text, kept_in),
                origin="poison",
                failure_status=EXHAUSTED,
                **fields,
            ),
        )
    logger.error("poison message %s in %s alerted as %s", message.id, queue_name, error_code)


def _alert_failures_poison(services: Services, queue: QueueClient, message: QueueMessage, text: str, kept_in: str) -> None:
    """Log the alert record of a message the failure queue trigger gave up on, try the webhook once."""
    settings = services.settings
    original = _json(text)
    fields: BlobFields = {}
    if isinstance(original, Mapping) and is_valid(schemas.FAILURE_NOTIFICATION, original):
        original = cast(FailureNotification, original)
        fields = {
            "database": original["Database"],
            "table": original["Table"],
            "blob_url": original["IngestionSourcePath"],
            "blob_name": original.get("BlobName", ""),
            "source_id": original["IngestionSourceId"],
            "operation_id": original["OperationId"],
        }
    notification = failure_notification(
        error_code=error_codes.POISON_FAILURES_QUEUE,
        details=(
            f"the failure queue trigger gave up on message {message.id} after {message.dequeue_count} read(s): an alert sink "
            f"(webhook, digest state) kept failing; {_where_kept(kept_in)} (to {settings.failures_queue}). "
            f"Payload: {redact(text)[:PAYLOAD_EXCERPT]}"
        ),
        origin="poison",
        failure_status=EXHAUSTED,
        **fields,
    )
    alert = alerts.raise_alert(
        schemas.dump(schemas.FAILURE_NOTIFICATION, notification),
        queue_name=queue.queue_name,
        message_id=message.id,
        dequeue_count=message.dequeue_count or 0,
    )
    sink = services.webhook
    if sink is not None:
        try:
            sink.send(AlertContent(alert.dimensions))
        except WebhookError as error:
            logger.error(
                "webhook still failing for poisoned failure message %s (the log record above is the alert): %s", message.id, error
            )
