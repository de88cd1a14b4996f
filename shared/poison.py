"""Poison queue watcher (housekeeping timer): every message in a poison queue becomes an alert.

A message lands in a poison queue when the host (queue trigger, blob trigger) or the submission timer gave up
on it. Sitting there, it would be forgotten, so the watcher turns each one into an alert naming the queue
and carrying the original payload (redacted), and removes it only after the alert is durably raised:

* `<pending>-poison`, `<tracking>-poison`, `webjobs-blobtrigger-poison`: one failure notification per blob
  the payload names (`Poison_PendingQueue`, `Poison_TrackingQueue`, `Poison_BlobTrigger`; origin `poison`,
  FailureStatus Exhausted) is written to the failures queue, then the message is deleted. The alert then
  follows the normal path (log record, webhook, digest).
* `<failures>-poison`: the failure queue trigger itself gave up (a sink was down for all its attempts).
  Writing to the failures queue again could loop forever, so instead the message is copied to
  `<failures>-poison-alerted` (never expires; nothing reads it automatically), one `Poison_FailuresQueue`
  alert record is logged at ERROR through `shared.alerts`, the webhook is tried once, and only then is
  the message deleted. Nothing loops, and the payload is kept for an operator to requeue once the sink works.

A crash between the write and the delete repeats an alert; it never loses one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

from shared import alerts, schemas
from shared.notifications import EXHAUSTED, failure_notification, pending_blob_fields
from shared.outcomes import send_failure
from shared.redaction import plain_blob_url, redact
from shared.sibling_queues import sibling_queue
from shared.storage import readable_text
from shared.webhook import AlertContent, WebhookError, configured_sink

if TYPE_CHECKING:
    from shared.services import Services

logger = logging.getLogger(__name__)

BLOB_TRIGGER_POISON_QUEUE = "webjobs-blobtrigger-poison"
ALERTED_SUFFIX = "-alerted"
MAX_PER_QUEUE_PER_RUN = 320
PAYLOAD_EXCERPT = 4000
_PAGE = 32


def _queue(services: Services, name: str) -> QueueClient:
    return sibling_queue(services.failures_queue, name)


def watched_queues(services: Services) -> dict[str, str]:
    """Poison queue name -> error code of its alerts."""
    settings = services.settings
    return {
        settings.pending_poison_queue: "Poison_PendingQueue",
        settings.tracking_poison_queue: "Poison_TrackingQueue",
        BLOB_TRIGGER_POISON_QUEUE: "Poison_BlobTrigger",
        settings.failures_poison_queue: "Poison_FailuresQueue",
    }


def watch_poison_queues(services: Services) -> int:
    """Housekeeping timer body: alert every poison message and remove it; returns how many were alerted."""
    alerted = 0
    for name, error_code in watched_queues(services).items():
        queue = _queue(services, name)
        for message in _drain(queue):
            try:
                if name == services.settings.failures_poison_queue:
                    _alert_failures_poison(services, queue, message)
                else:
                    _alert_poison(services, name, error_code, message)
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
    taken = 0
    while taken < MAX_PER_QUEUE_PER_RUN:
        try:
            page = list(queue.receive_messages(messages_per_page=_PAGE, max_messages=_PAGE, visibility_timeout=120))
        except ResourceNotFoundError:
            return
        if not page:
            return
        taken += len(page)
        yield from page


def _text(message: QueueMessage) -> str:
    """The message as text: decoded when base64, as the host and the app write it, else the raw content as it is.

    Decoded before anything is redacted or alerted: a SAS inside base64 text is invisible to redaction.
    """
    return readable_text(message.content)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _blob_fields(services: Services, queue_name: str, payload: Any) -> list[dict[str, str]]:
    """The blobs a poison payload names, as notification fields ([{}] when it names none we can read)."""
    settings = services.settings
    if not isinstance(payload, Mapping):
        return [{}]
    if queue_name == settings.pending_poison_queue and _valid(schemas.PENDING_BLOB, payload):
        return [pending_blob_fields(payload)]
    if queue_name == settings.tracking_poison_queue and _valid(schemas.TRACKING_RECORD, payload):
        return [
            {
                "database": payload["database"],
                "table": payload["table"],
                "operation_id": payload["operationId"],
                "blob_url": blob["blobUrl"],
                "blob_name": blob["blobName"],
                "source_id": blob["sourceId"],
            }
            for blob in payload["blobs"]
        ]
    container, name = payload.get("ContainerName"), payload.get("BlobName")
    if queue_name == BLOB_TRIGGER_POISON_QUEUE and isinstance(container, str) and isinstance(name, str) and container and name:
        url = plain_blob_url(services.blob_service.get_blob_client(container, name).url)
        return [{"blob_url": url, "blob_name": name}]
    return [{}]


def _valid(schema: str, payload: Any) -> bool:
    try:
        schemas.validate(schema, payload)
    except schemas.MessageError:
        return False
    return True


def _details(queue_name: str, message: QueueMessage, text: str) -> str:
    return (
        f"message {message.id} was given up on after {message.dequeue_count} read(s) and sat in poison queue {queue_name}; "
        f"it was removed from there after this alert. Payload: {redact(text)[:PAYLOAD_EXCERPT]}"
    )


def _alert_poison(services: Services, queue_name: str, error_code: str, message: QueueMessage) -> None:
    text = _text(message)
    for fields in _blob_fields(services, queue_name, _json(text)):
        send_failure(
            services,
            failure_notification(
                error_code=error_code,
                details=_details(queue_name, message, text),
                origin="poison",
                failure_status=EXHAUSTED,
                **fields,
            ),
        )
    logger.error("poison message %s in %s alerted as %s", message.id, queue_name, error_code)


def _alert_failures_poison(services: Services, queue: QueueClient, message: QueueMessage) -> None:
    """Keep the payload in `<failures>-poison-alerted`, log the alert record, try the webhook once."""
    settings = services.settings
    text = _text(message)
    kept_in = settings.failures_poison_queue + ALERTED_SUFFIX
    keeper = _queue(services, kept_in)
    try:
        keeper.send_message(text, time_to_live=-1)
    except ResourceNotFoundError:
        keeper.create_queue()
        keeper.send_message(text, time_to_live=-1)
    original = _json(text)
    fields = {}
    if isinstance(original, Mapping) and _valid(schemas.FAILURE_NOTIFICATION, original):
        fields = {
            "database": original["Database"],
            "table": original["Table"],
            "blob_url": original["IngestionSourcePath"],
            "blob_name": original.get("BlobName", ""),
            "source_id": original["IngestionSourceId"],
            "operation_id": original["OperationId"],
        }
    notification = failure_notification(
        error_code="Poison_FailuresQueue",
        details=(
            f"the failure queue trigger gave up on message {message.id} after {message.dequeue_count} read(s): an alert sink "
            f"(webhook, digest state) kept failing. The message was kept in queue {kept_in}; move it back to "
            f"{settings.failures_queue} once the sink works. Payload: {redact(text)[:PAYLOAD_EXCERPT]}"
        ),
        origin="poison",
        failure_status=EXHAUSTED,
        **fields,
    )
    alert = alerts.raise_alert(
        schemas.dump(schemas.FAILURE_NOTIFICATION, notification),
        services,
        queue_name=queue.queue_name,
        message_id=message.id,
        dequeue_count=message.dequeue_count or 0,
    )
    sink = configured_sink(settings)
    if sink is not None:
        try:
            sink.send(AlertContent(alert.dimensions))
        except WebhookError as error:
            logger.error(
                "webhook still failing for poisoned failure message %s (the log record above is the alert): %s", message.id, error
            )
