"""The failure queue trigger's body, and the alert sinks after the log record: the webhook, through the digest.

`alert_once` first claims the failure's marker (`shared.alert_markers`), atomically, so that of several
identical notifications handled at once only one alerts: a repeat of a failure already alerted is dropped,
one that another worker is alerting right now is held back (a copy goes back on the failures queue,
invisible until that worker's claim lease ends, and is judged again then). The claim's winner writes the
structured log record (`shared.alerts`), calls `deliver(alert, services)` and marks the alert delivered.
With no webhook configured there is nothing more to do. Otherwise the alert is sent at once, unless the
digest has already alerted for its (database, table, error code) within the window, in which case it is
counted and `flush_digests` (housekeeping timer) sends one digest for the window once it has closed.

`deliver` raises when the webhook refuses the alert; `alert_once` marks the alert logged and lets the error
through, so the queue trigger retries the failure message, which then only delivers, and after
`maxDequeueCount` attempts it lands in the failures poison queue, which `shared.poison` turns into an ERROR
log record and keeps for an operator. The alert is never dropped on the way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from azure.core.exceptions import AzureError

from shared.alert_markers import CLAIMED, DELIVERED, HELD, LOGGED, WON, Claim, marker_facts, marker_key
from shared.alerts import build_alert, log_alert
from shared.webhook import AlertContent, WebhookError

if TYPE_CHECKING:
    from shared.alerts import Alert
    from shared.services import Services

logger = logging.getLogger(__name__)


def alert_once(body: str, services: Services, *, message_id: str, dequeue_count: int) -> Alert | None:
    """Alert on one failure notification unless this very failure was alerted already; None when it was not alerted.

    None also when another worker is alerting the same failure right now: the notification is then held
    back (a copy, invisible until that worker's claim lease ends, goes back on the failures queue).
    Raises WebhookError (the queue trigger retries the message) when the webhook refuses the alert; the
    retry then delivers without logging the record a second time. Raises AzureError when a held-back copy
    cannot be queued (the message is retried: it is not dropped).
    """
    settings = services.settings
    alert = build_alert(body, queue_name=settings.failures_queue, message_id=message_id, dequeue_count=dequeue_count)
    key = marker_key(alert.notification) if alert.notification is not None else None
    facts = marker_facts(alert.notification) if alert.notification is not None else {}
    claim = _claim(services, key, facts) if key else None
    outcome = WON if claim is None else claim.outcome
    if outcome == DELIVERED:
        logger.info(
            "failure notification %s repeats an alert already raised (%s for blob %s, source id %s): dropped",
            message_id,
            alert.error_code,
            _blob(alert),
            alert.dimensions["sourceId"],
        )
        return None
    if claim is not None and outcome == HELD:
        _hold_back(body, services, alert, message_id, claim.wait)
        return None
    if claim is not None and claim.taken_over == CLAIMED:
        logger.warning(
            "alert marker %s was claimed %d s ago by a worker that did not finish: taken over, "
            "alerting, though it may repeat an earlier alert",
            key,
            claim.age,
        )
    if outcome == WON:
        log_alert(alert)
    try:
        deliver(alert, services)
    except Exception:
        if key and outcome == WON:
            # The record is written: the queue trigger's retry of this message only delivers.
            _mark(services, key, LOGGED, facts)
        raise
    if key:
        _mark(services, key, DELIVERED, facts)
    return alert


def _blob(alert: Alert) -> str:
    return alert.dimensions["blobName"] or alert.dimensions["blobPath"]


def _claim(services: Services, key: str, facts: Mapping[str, str]) -> Claim | None:
    """The marker's claim; None when storage cannot tell, since an alert twice beats no alert."""
    try:
        return services.alert_markers.claim(key, facts)
    except AzureError as error:
        logger.warning(
            "alert marker %s not readable or not claimed (%s): alerting, though it may repeat an earlier alert",
            key,
            type(error).__name__,
        )
        return None


def _hold_back(body: str, services: Services, alert: Alert, message_id: str, wait: float) -> None:
    """Another worker claimed this failure and may be alerting now: look again once its claim lease has passed.

    The copy is the same notification text, a new message (its dequeue count starts again).
    """
    seconds = max(1, math.ceil(wait))
    services.failures_queue.send_message(body, visibility_timeout=seconds)
    logger.info(
        "failure notification %s repeats an alert another worker is raising now (%s for blob %s, source id %s): "
        "held back for %d s",
        message_id,
        alert.error_code,
        _blob(alert),
        alert.dimensions["sourceId"],
        seconds,
    )


def _mark(services: Services, key: str, state: str, facts: Mapping[str, str]) -> None:
    try:
        services.alert_markers.mark(key, state, facts)
    except AzureError as error:
        logger.warning("alert marker %s not written (%s): a repeat of this failure will alert again", key, type(error).__name__)


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
    sink = services.webhook
    if sink is None:
        return False
    if settings.alert_digest_window_seconds and alert.notification is not None:
        send_now = services.digests.record(alert.dimensions, _message_key(alert), datetime.now(UTC))
        if not send_now:
            return False
    sink.send(AlertContent(alert.dimensions))
    return True


def flush_digests(services: Services) -> int:
    """Housekeeping timer body: send one digest per closed window that counted failures; returns how many were sent.

    A digest the webhook refuses stays in the state container and is sent by a later run.
    """
    settings = services.settings
    sink = services.webhook
    if sink is None or not settings.alert_digest_window_seconds:
        return 0
    book = services.digests
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
