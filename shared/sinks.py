"""The failure queue trigger's body, and the alert sinks after the log record: the webhook, through the digest.

`alert_once` checks the failure's marker (`shared.alert_markers`: a repeat of a failure already alerted is
dropped), writes the structured log record (`shared.alerts`) and then calls `deliver(alert, services)`.
With no webhook configured there is nothing more to do. Otherwise the alert is
sent at once, unless the digest has already alerted for its (database, table, error code) within the
window, in which case it is counted and `flush_digests` (housekeeping timer) sends one digest for the
window once it has closed.

`deliver` raises when the webhook refuses the alert; the queue trigger then retries the failure message,
and after `maxDequeueCount` attempts it lands in the failures poison queue, which `shared.poison` turns into
an ERROR log record and keeps for an operator. The alert is never dropped on the way.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError

from shared.alert_markers import DELIVERED, LOGGED, marker_key
from shared.alerts import build_alert, log_alert
from shared.digest import DigestBook
from shared.webhook import AlertContent, WebhookError, configured_sink

if TYPE_CHECKING:
    from shared.alerts import Alert
    from shared.services import Services

logger = logging.getLogger(__name__)


def alert_once(body: str, services: Services, *, message_id: str, dequeue_count: int) -> Alert | None:
    """Alert on one failure notification unless this very failure was alerted already; None when it was.

    Raises WebhookError (the queue trigger retries the message) when the webhook refuses the alert; the
    retry then delivers without logging the record a second time.
    """
    settings = services.settings
    alert = build_alert(body, queue_name=settings.failures_queue, message_id=message_id, dequeue_count=dequeue_count)
    key = marker_key(alert.notification) if alert.notification is not None else None
    state = _marker_state(services, key) if key else None
    if state == DELIVERED:
        logger.info(
            "failure notification %s repeats an alert already raised (%s for blob %s, source id %s): dropped",
            message_id,
            alert.error_code,
            alert.dimensions["blobName"] or alert.dimensions["blobPath"],
            alert.dimensions["sourceId"],
        )
        return None
    if state != LOGGED:
        log_alert(alert)
        if key and configured_sink(settings) is not None:
            _mark(services, key, LOGGED)
    deliver(alert, services)
    if key:
        _mark(services, key, DELIVERED)
    return alert


def _marker_state(services: Services, key: str) -> str | None:
    """The marker's state; None when storage cannot tell, since an alert twice beats no alert."""
    try:
        return services.alert_markers.state(key)
    except AzureError as error:
        logger.warning(
            "alert marker %s not readable (%s): alerting, though it may repeat an earlier alert", key, type(error).__name__
        )
        return None


def _mark(services: Services, key: str, state: str) -> None:
    try:
        services.alert_markers.mark(key, state)
    except AzureError as error:
        logger.warning("alert marker %s not written (%s): a repeat of this failure will alert again", key, type(error).__name__)


def _digest_book(services: Services) -> DigestBook:
    settings = services.settings
    container = services.blob_service.get_container_client(settings.state_container)
    return DigestBook(container, settings.alert_digest_window_seconds)


def _message_key(alert: Alert) -> str:
    """The queue message id, or (when the caller has none) a digest of the alert, so retries are recognised."""
    message_id = alert.dimensions.get("messageId") or ""
    if message_id:
        return message_id
    return hashlib.sha256(json.dumps(alert.dimensions, sort_keys=True, default=str).encode()).hexdigest()


def deliver(alert: Alert, services: Services) -> bool:
    """Send the alert to the webhook, or count it in an open digest window; True when it was sent now.

    Raises WebhookError (the failure message is retried by the queue trigger) when the webhook refuses it.
    A malformed notification is always sent on its own: it has no key worth folding.
    """
    settings = services.settings
    sink = configured_sink(settings)
    if sink is None:
        return False
    if settings.alert_digest_window_seconds and alert.notification is not None:
        send_now = _digest_book(services).record(alert.dimensions, _message_key(alert), datetime.now(UTC))
        if not send_now:
            return False
    sink.send(AlertContent(alert.dimensions))
    return True


def flush_digests(services: Services) -> int:
    """Housekeeping timer body: send one digest per closed window that counted failures; returns how many were sent.

    A digest the webhook refuses stays in the state container and is sent by a later run.
    """
    settings = services.settings
    sink = configured_sink(settings)
    if sink is None or not settings.alert_digest_window_seconds:
        return 0
    book = _digest_book(services)
    sent = 0
    for due in book.due(datetime.now(UTC)):
        state = due.state
        content = AlertContent(
            state["first"],
            count=due.count,
            samples=tuple(state["samples"]),
            window_start=state["windowStart"],
            window_end=state["windowEnd"],
        )
        try:
            sink.send(content)
        except WebhookError as error:
            logger.error(
                "digest of %d failure(s) %s on %s.%s not sent, kept for the next run: %s",
                due.count,
                state["errorCode"],
                state["database"],
                state["table"],
                error,
            )
            continue
        book.settle(due)
        sent += 1
        logger.info(
            "digest sent: %d more failure(s) %s on %s.%s between %s and %s",
            due.count,
            state["errorCode"],
            state["database"],
            state["table"],
            state["windowStart"],
            state["windowEnd"],
            extra={
                "custom_dimensions": {
                    "errorCode": state["errorCode"],
                    "database": state["database"],
                    "table": state["table"],
                    "count": due.count,
                }
            },
        )
    return sent
