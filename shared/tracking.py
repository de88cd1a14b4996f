"""Outcome tracker (timer body): polls the status of every accepted operation until its blobs are settled.

Each operation Kusto accepted is one message on the tracking queue. The queue itself is the scheduler: a
run receives a page, polls each operation once, and either settles it (outcomes written, message deleted)
or hides the message again with `update_message` for the next back-off delay, counting the poll in the
message. So polling costs one status call per operation per delay whatever the load, nothing is kept in
memory between runs, and a restart loses nothing: a message a crashed run held reappears after its lease.

Rules, in the order they apply to one message:
* a message that is not a valid tracking record alerts as `Tracking_MalformedRecord` and is deleted;
* a record naming a blob outside the staging container, another account, a target ALLOWED_TARGETS does not
  allow, or a kept pending message that is not that blob's (`shared.staging_area`) alerts as
  `Tracking_Refused` and is deleted: nothing is polled, deleted, moved or resubmitted for it;
* a queue-mode operation (`queue;<uuid>`) has no status to poll: Kusto reports its failures on its failure
  queue, which `shared.queue_relay` forwards, so its record is deleted with a log line;
* 429 from the status endpoint hides this message, and every one not yet polled in the run, for Retry-After;
* 404 within `NOT_FOUND_GRACE_SECONDS` of submission is a status not written yet: ask again later;
* other transient errors (5xx, timeouts, 401) ask again later; a permanent one alerts per blob
  (`Tracking_StatusFailed`, Unknown), since asking again cannot help;
* all blobs finished: each outcome is settled (`shared.outcomes`), one log record sums the operation up;
* past `TRACKING_HORIZON_SECONDS`: finished blobs are settled, each blob still pending alerts as
  `Tracking_TimedOut` (Unknown).
Writes come first and the delete last: a crash in between repeats alerts, it never loses one.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from azure.storage.queue import QueueClient, QueueMessage

from shared import error_codes, schemas
from shared.kusto_errors import KustoError, PermanentKustoError, TransientKustoError
from shared.kusto_rest import BlobOutcome, OperationStatus
from shared.messages import FailureNotification, TrackedBlob, TrackingRecord, read_tracking_record
from shared.notifications import UNKNOWN, failure_notification, send_failure, tracked_blob_fields
from shared.outcomes import RESUBMITTED, IngestionFailure, settle_failure, settle_success
from shared.queue_relay import relay_failures
from shared.redaction import redact
from shared.staging_area import RefusedMessageError
from shared.storage import decode_message, readable_text, receive_pages
from shared.tally import Tally
from shared.times import parse_time

if TYPE_CHECKING:
    from shared.services import Services

logger = logging.getLogger(__name__)

NOT_FOUND_GRACE_SECONDS = 600
"""A status asked for this soon after submission may not exist yet (404): that is not a failure."""
LEASE_SECONDS = 120
"""How long a received page stays hidden while it is polled; a crashed run's messages come back after it."""
QUEUE_OPERATION_PREFIX = "queue;"
_PAYLOAD_EXCERPT = 2000


class BlobEnd(StrEnum):
    """How a tracked blob's tracking ended: the keys of `TrackingReport.blobs`."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RESUBMITTED = "resubmitted"
    TIMED_OUT = "timedOut"
    RELAYED = "relayed"


@dataclass
class TrackingReport(Tally):
    """What one tracker run did (also the run's summary log line); each message's part is added to the run's."""

    received: int = 0
    finished: int = 0
    rescheduled: int = 0
    throttled: int = 0
    timed_out: int = 0
    malformed: int = 0
    refused: int = 0
    relayed: int = 0
    errors: int = 0
    blobs: Counter[BlobEnd] = field(default_factory=Counter)


class _Throttle:
    """Shared by the polls of one run: once Kusto says 429, nobody polls again until Retry-After has passed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: float | None = None

    def hit(self, seconds: float) -> None:
        with self._lock:
            self.seconds = max(self.seconds or 0.0, seconds)


def track_outcomes(services: Services) -> TrackingReport:
    """Tracker timer body: poll accepted REST operations; in queue mode also relay Kusto's failure queue.

    Queue mode has no status endpoint to poll: its failures arrive on the Data Management service's
    failure queue, which `shared.queue_relay` forwards into the app's failures queue on the same schedule.
    """
    report = poll_operations(services)
    if services.dm_resources is not None:
        relay_failures(services, services.dm_resources)
    return report


def poll_operations(services: Services) -> TrackingReport:
    """Timer body: poll up to TRACKING_MAX_PER_RUN due operations once each; see the module docstring."""
    settings = services.settings
    queue = services.tracking_reader
    report = TrackingReport()
    throttle = _Throttle()
    with ThreadPoolExecutor(max_workers=settings.submit_concurrency, thread_name_prefix="track") as pool:
        for page in receive_pages(queue, limit=settings.tracking_max_per_run, visibility_timeout=LEASE_SECONDS):
            report.received += len(page)
            for result in pool.map(lambda message: _track_safely(services, queue, message, throttle), page):
                report.add(result)
            if throttle.seconds is not None:
                break  # Kusto said 429: the rest waits for the next run
    if report.received:
        logger.info(
            "tracker run: %d received, %d finished, %d rescheduled, %d throttled, %d timed out, %d malformed, %d refused, "
            "%d errors; %s",
            report.received,
            report.finished,
            report.rescheduled,
            report.throttled,
            report.timed_out,
            report.malformed,
            report.refused,
            report.errors,
            {end.value: count for end, count in report.blobs.items()},
        )
    return report


def _track_safely(services: Services, queue: QueueClient, message: QueueMessage, throttle: _Throttle) -> TrackingReport:
    try:
        return _track(services, queue, message, throttle)
    except Exception as error:
        # Storage or Kusto failed mid-way: the message reappears after its lease and the next run redoes it.
        logger.error("tracking message %s not settled, retried after %d s: %s", message.id, LEASE_SECONDS, redact(str(error)))
        return TrackingReport(errors=1)


def _track(services: Services, queue: QueueClient, message: QueueMessage, throttle: _Throttle) -> TrackingReport:
    settings = services.settings
    try:
        record = read_tracking_record(decode_message(message.content))
    except ValueError as error:
        return _malformed(services, queue, message, str(error))
    try:
        services.staging.check_tracking_record(record)
    except RefusedMessageError as error:
        return _refused(services, queue, message, error)
    if _queue_mode(record):
        return _hand_to_relay(queue, message, record)
    if throttle.seconds is not None:
        _reschedule(queue, message, record, throttle.seconds, record.get("lastError", ""))
        return TrackingReport(throttled=1)
    age = (datetime.now(UTC) - parse_time(record["submittedAt"])).total_seconds()
    try:
        status = services.kusto.get_status(
            record["database"],
            record["table"],
            record["operationId"],
            details=True,
            timeout=settings.kusto_request_timeout_seconds,
        )
    except TransientKustoError as error:
        if error.status_code == 429:
            delay = error.retry_after or settings.tracking_poll_initial_seconds
            throttle.hit(delay)
            _reschedule(queue, message, record, delay, str(error))
            logger.warning("status endpoint throttled; tracking paused for %.0f s", delay)
            return TrackingReport(throttled=1)
        logger.warning("status of operation %s not read, asking again later: %s", record["operationId"], error)
        return _later(services, queue, message, record, age, str(error))
    except PermanentKustoError as error:
        if error.status_code == 404 and age < NOT_FOUND_GRACE_SECONDS:
            return _later(services, queue, message, record, age, str(error))
        return _status_failed(services, queue, message, record, error)
    outcomes = _outcomes_by_source(record, status)
    if all(outcome is not None and outcome.finished for outcome in outcomes.values()):
        return _finish(services, queue, message, record, outcomes, age)
    return _later(services, queue, message, record, age, "", outcomes)


def _queue_mode(record: TrackingRecord) -> bool:
    """Records of queue mode carry a synthetic `queue;<uuid>` operation id that no status endpoint knows."""
    return record.get("mode") == "queue" or record["operationId"].startswith(QUEUE_OPERATION_PREFIX)


def _hand_to_relay(queue: QueueClient, message: QueueMessage, record: TrackingRecord) -> TrackingReport:
    """Queue mode: Kusto reports failures on its own failure queue, which `shared.queue_relay` forwards; nothing to poll."""
    logger.info(
        "operation %s on %s.%s was submitted through queues: its failures arrive through the relay, not the status endpoint",
        record["operationId"],
        record["database"],
        record["table"],
    )
    queue.delete_message(message, pop_receipt=message.pop_receipt)
    return TrackingReport(relayed=1, blobs=Counter({BlobEnd.RELAYED: len(record["blobs"])}))


def _outcomes_by_source(record: TrackingRecord, status: OperationStatus) -> dict[str, BlobOutcome | None]:
    """Each recorded blob's outcome; when Kusto gives counts but no details, all-succeeded is still recognised."""
    by_id = {outcome.source_id.lower(): outcome for outcome in status.blobs}
    blobs = record["blobs"]
    if not by_id and status.in_progress == 0 and status.succeeded >= len(blobs) and not status.failed and not status.canceled:
        return {blob["sourceId"]: BlobOutcome(source_id=blob["sourceId"], status="Succeeded") for blob in blobs}
    return {blob["sourceId"]: by_id.get(blob["sourceId"].lower()) for blob in blobs}


def _next_delay(services: Services, record: TrackingRecord, age: float) -> float:
    """Exponential back-off from the number of polls, never past the horizon (so a time-out is seen on time)."""
    settings = services.settings
    delay = min(settings.tracking_poll_max_seconds, settings.tracking_poll_initial_seconds * 2 ** min(record.get("polls", 0), 20))
    return max(1.0, min(delay, settings.tracking_horizon_seconds - age))


def _reschedule(queue: QueueClient, message: QueueMessage, record: TrackingRecord, delay: float, last_error: str) -> None:
    updated = {**record, "polls": record.get("polls", 0) + 1}
    if last_error:
        updated["lastError"] = redact(last_error)[:1024]
    queue.update_message(
        message,
        pop_receipt=message.pop_receipt,
        content=schemas.dump(schemas.TRACKING_RECORD, updated),
        visibility_timeout=int(delay + 0.999),
    )


def _later(
    services: Services,
    queue: QueueClient,
    message: QueueMessage,
    record: TrackingRecord,
    age: float,
    last_error: str,
    outcomes: Mapping[str, BlobOutcome | None] | None = None,
) -> TrackingReport:
    """Not settled yet: hide the message for the next back-off delay, or, past the horizon, settle what is known."""
    if age >= services.settings.tracking_horizon_seconds:
        return _finish(services, queue, message, record, outcomes or {}, age)
    _reschedule(queue, message, record, _next_delay(services, record, age), last_error)
    return TrackingReport(rescheduled=1)


def _finish(
    services: Services,
    queue: QueueClient,
    message: QueueMessage,
    record: TrackingRecord,
    outcomes: Mapping[str, BlobOutcome | None],
    age: float,
) -> TrackingReport:
    """Settle every blob (success, failure, or time-out), log the operation's summary, then delete the message."""
    counts: Counter[BlobEnd] = Counter()
    for blob in record["blobs"]:
        outcome = outcomes.get(blob["sourceId"])
        if outcome is not None and outcome.status == "Succeeded":
            settle_success(services, blob)
            counts[BlobEnd.SUCCEEDED] += 1
        elif outcome is not None and outcome.finished:
            failure = IngestionFailure(
                error_code=outcome.error_code or "Unknown",
                failure_status=outcome.failure_status or UNKNOWN,
                details=outcome.details or f"Kusto reported the blob as {outcome.status} without details",
            )
            action = settle_failure(services, record, blob, failure)
            counts[BlobEnd.RESUBMITTED if action == RESUBMITTED else BlobEnd.FAILED] += 1
        else:
            send_failure(services.failures_queue, _timed_out_notification(services, record, blob, outcome))
            counts[BlobEnd.TIMED_OUT] += 1
    operation = record["operationId"]
    logger.info(
        "operation %s on %s.%s finished after %.0f s: %d succeeded, %d failed, %d resubmitted, %d timed out",
        operation,
        record["database"],
        record["table"],
        age,
        counts[BlobEnd.SUCCEEDED],
        counts[BlobEnd.FAILED],
        counts[BlobEnd.RESUBMITTED],
        counts[BlobEnd.TIMED_OUT],
        extra={
            "custom_dimensions": {
                "database": record["database"],
                "table": record["table"],
                "operationId": operation,
                "blobsSucceeded": counts[BlobEnd.SUCCEEDED],
                "blobsFailed": counts[BlobEnd.FAILED] + counts[BlobEnd.TIMED_OUT],
                "blobsResubmitted": counts[BlobEnd.RESUBMITTED],
                "durationSeconds": round(age, 1),
                "polls": record.get("polls", 0) + 1,
            }
        },
    )
    queue.delete_message(message, pop_receipt=message.pop_receipt)
    if counts[BlobEnd.TIMED_OUT]:
        return TrackingReport(timed_out=1, blobs=counts)
    return TrackingReport(finished=1, blobs=counts)


def _timed_out_notification(
    services: Services, record: TrackingRecord, blob: TrackedBlob, outcome: BlobOutcome | None
) -> FailureNotification:
    hours = services.settings.tracking_horizon_seconds / 3600
    state = outcome.status if outcome is not None else "not listed by Kusto"
    details = (
        f"no final status after {hours:g} h of tracking (TRACKING_HORIZON_SECONDS); last state: {state}. "
        "The blob may still be ingested: check the table before resubmitting it."
    )
    if record.get("lastError"):
        details += f" Last status error: {record['lastError']}"
    return failure_notification(
        error_code=error_codes.TRACKING_TIMED_OUT,
        details=details,
        origin="tracking",
        **tracked_blob_fields(record, blob),
        failure_status=UNKNOWN,
    )


def _status_failed(
    services: Services, queue: QueueClient, message: QueueMessage, record: TrackingRecord, error: KustoError
) -> TrackingReport:
    """Kusto refuses to give this operation's status for good: every blob's outcome is unknown, say so."""
    for blob in record["blobs"]:
        send_failure(
            services.failures_queue,
            failure_notification(
                error_code=error_codes.TRACKING_STATUS_FAILED,
                details=f"the status of the operation cannot be read ({error}); the blob's outcome is unknown",
                origin="tracking",
                **tracked_blob_fields(record, blob),
                failure_status=UNKNOWN,
                root_activity_id=error.activity_id,
            ),
        )
    queue.delete_message(message, pop_receipt=message.pop_receipt)
    return TrackingReport(finished=1, blobs=Counter({BlobEnd.FAILED: len(record["blobs"])}))


def _refused(services: Services, queue: QueueClient, message: QueueMessage, error: RefusedMessageError) -> TrackingReport:
    """A well-formed record naming a blob outside staging or a target the app may not write: alert, act on nothing."""
    send_failure(
        services.failures_queue,
        failure_notification(
            error_code=error_codes.TRACKING_REFUSED,
            details=f"message {message.id} on {services.settings.tracking_queue} was refused and removed, nothing was "
            f"polled, deleted or moved for it: {error}. Only the app writes this queue; whoever wrote this message can "
            "write to the storage account's queues: check who holds Storage Queue Data Contributor on it.",
            origin="tracking",
            failure_status=UNKNOWN,
        ),
    )
    queue.delete_message(message, pop_receipt=message.pop_receipt)
    logger.error("tracking message %s refused: %s", message.id, error)
    return TrackingReport(refused=1)


def _malformed(services: Services, queue: QueueClient, message: QueueMessage, problem: str) -> TrackingReport:
    """A message that is not a tracking record: alert with what can be read of it, then delete it."""
    text = readable_text(message.content)
    send_failure(
        services.failures_queue,
        failure_notification(
            error_code=error_codes.TRACKING_MALFORMED_RECORD,
            details=f"message {message.id} on {services.settings.tracking_queue} is not a tracking record: {problem}. "
            f"Payload: {text[:_PAYLOAD_EXCERPT]}",
            origin="tracking",
            failure_status=UNKNOWN,
        ),
    )
    queue.delete_message(message, pop_receipt=message.pop_receipt)
    logger.error("tracking message %s is malformed and was replaced by a failure notification: %s", message.id, redact(problem))
    return TrackingReport(malformed=1)
