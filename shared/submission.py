"""Submission timer body: drain the pending queue into queued-ingestion requests, within a time budget.

One run receives pending messages in pages of 32 (the most one request returns), groups and chunks them
(`shared.batching`), and POSTs the chunks on a small thread pool (SUBMIT_CONCURRENCY), so one slow answer
holds one worker, not the drain; a settled chunk's messages are deleted on a second pool of the same width, so
its worker takes the next chunk meanwhile. Receiving stops when the queue is empty or DRAIN_TIME_BUDGET_SECONDS is
spent; each request is capped by what is left of the budget.

Every message ends in exactly one way, and always "new state first, then delete the old":

* accepted: ONE tracking record for the operation (holding each blob's pending message, so the tracker
  can resubmit a blob that fails transiently), then the pending messages are deleted;
* transient failure (429, 5xx, timeout, connection, 401) after the pipeline's retries: each message is put
  back as a fresh copy that becomes visible after Retry-After (or DEFER_SECONDS), then the original is
  deleted, and that target gets no more requests this run; a 401 is logged as an error, since only an
  operator can fix it. Fresh copies start again at dequeue count 0: a deferral is an outcome the run
  handled, so throttling never pushes a good blob towards the poison queue;
* a server error (500, 502, 504) may be one blob's doing, which would hold its whole target until every
  blob timed out: the copies of a failed request of several blobs say `submitAlone`, so the next run sends
  each in a request of its own; the good ones land, and a blob sent alone that fails again is deferred
  without holding back its target (up to ALONE_FAILURES_BEFORE_BLOCK such failures a run), until it lands
  or times out (`Submission_TimedOut`) on its own;
* still deferred PENDING_MAX_AGE_SECONDS after it was recorded (Kusto down or refusing the app for hours):
  a `Submission_TimedOut` notification (Exhausted), then the delete, so a long outage is never silent;
* permanent rejection (400/403/404, `@permanent`): one failure notification per blob, then the delete;
* read more than PENDING_MAX_DEQUEUE_COUNT times (runs that died before settling it): the raw message goes
  to `<pending>-poison`, then the delete; the poison watcher (`shared.poison`) raises its one alert;
* malformed (not base64 text, not JSON, not a pending-blob message): a `Pending_Malformed` notification
  carrying the redacted raw text, then the delete;
* refused (a well-formed message naming a blob outside the staging container, another account, a target
  ALLOWED_TARGETS does not allow, or a source id that is not its blob version's: see `shared.staging_area`):
  a `Pending_Refused` notification, then the delete; nothing is signed, sent or deleted for it. The URL
  handed to Kusto is always built from the configured staging container and the blob name.

A crash between the two writes therefore duplicates a message and never loses one. Duplicates are kept from
Kusto by the submission ledger (`shared.submission_ledger`): a chunk's blob versions are marked "sending"
before each try of its request goes out, "not accepted" when Kusto refuses a try, and "accepted" once the
tracking record is written (so a dropped repeat is always tracked). A message whose blob version is
accepted (a second pending message from a trigger that fired twice, or a message whose run died after its
chunk was tracked) is settled as a duplicate: deleted, counted, never sent. A message whose blob version is
still "sending" waits until the sender's lease has passed (`Settings.sending_lease_seconds`: the drain
budget plus a margin), as the sender may be alive. After that the sender died, or lost Kusto's answer, with
the request possibly in Kusto's hands. Kusto's API cannot say whether it was (there is no idempotency key,
and `ingest-by:` tags seal every tagged request as its own batch), so the blob is submitted again and
announced first: a `Submission_InDoubt` notification (FailureStatus Unknown) names it, its source id and
what to check, so a duplicate is never silent.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.queue import QueueMessage

from shared import error_codes, schemas
from shared.batching import Chunk, make_chunks
from shared.kusto_errors import KustoAuthError, KustoError, PermanentKustoError, TransientKustoError, UncertainKustoError
from shared.kusto_rest import BlobSource
from shared.messages import PendingMessage, TrackingRecord, read_pending
from shared.notifications import EXHAUSTED, PERMANENT, UNKNOWN, failure_notification, pending_blob_fields, send_failure
from shared.redaction import plain_blob_url, redact
from shared.services import Services
from shared.staging_area import RefusedMessageError
from shared.storage import PAGE_SIZE, QUEUE_TEXT_LIMIT, decode_message, readable_text, receive_pages
from shared.submission_ledger import ACCEPTED, NOT_ACCEPTED, SENDING, ledger_key
from shared.tally import Tally
from shared.times import parse_time, utc_now_iso

logger = logging.getLogger(__name__)

_STATE_NAMES = {SENDING: "sending", ACCEPTED: "accepted", NOT_ACCEPTED: "not accepted"}

ORIGIN = "submission"
DEFER_SECONDS = 30
"""How long a deferred message waits when Kusto gave no Retry-After (a 500, a timeout)."""
ALONE_FAILURES_BEFORE_BLOCK = 3
"""Blobs sent alone that may fail with a server error in one run before their target waits for the next run.

One or two are blobs Kusto cannot take; more at once is the service failing, not the blobs."""


@dataclass
class DrainReport(Tally):
    """What one run did; logged at the end and returned to the caller (tests, the local host)."""

    received: int = 0
    submitted: int = 0
    operations: int = 0
    duplicates: int = 0
    deferred: int = 0
    rejected: int = 0
    malformed: int = 0
    refused: int = 0
    poisoned: int = 0
    timed_out: int = 0
    in_doubt: int = 0
    out_of_time: bool = False
    blocked_targets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PendingItem:
    """A received pending message with its parsed body."""

    message: QueueMessage
    pending: PendingMessage
    text: str
    in_doubt: bool = False
    """A run that died (or lost Kusto's answer) was sending this blob version: Kusto may already have it."""

    @property
    def size(self) -> int:
        """Bytes this blob adds to a tracking record: its pending message plus the fields repeated beside it."""
        return len(self.text.encode("utf-8")) + len(self.pending["blobUrl"]) + len(self.pending["blobName"]) + 128


def _content_may_be_the_cause(error: TransientKustoError) -> bool:
    """A server error (500, 502, 504...) may be caused by one blob of the request; throttling, 503, a lost
    answer or a refused identity never are."""
    if type(error) is not TransientKustoError or error.status_code is None:
        return False
    return error.status_code >= 500 and error.status_code != 503


def _sent_alone(chunk: Chunk[PendingItem]) -> bool:
    return len(chunk.items) == 1 and bool(chunk.items[0].pending.get("submitAlone"))


def submit_pending_blobs(services: Services, *, clock: Callable[[], float] = time.monotonic) -> DrainReport:
    """Drain the pending queue into Kusto within the time budget; see the module docstring for each outcome."""
    report = _Drain(services, clock).run()
    if not report.received:
        return report  # an idle tick (every SUBMIT_SCHEDULE): a line for each would be most of the app's traces
    logger.info(
        "drain finished: received %d, submitted %d blobs in %d operations, %d duplicates, %d deferred, %d rejected, "
        "%d malformed, %d refused, %d poisoned, %d timed out, %d in doubt%s",
        report.received,
        report.submitted,
        report.operations,
        report.duplicates,
        report.deferred,
        report.rejected,
        report.malformed,
        report.refused,
        report.poisoned,
        report.timed_out,
        report.in_doubt,
        " (time budget spent)" if report.out_of_time else "",
    )
    return report


class _ChunkMarks:
    """The ledger marks of one chunk, written as each try goes out and is answered (a `TryObserver`).

    Marking each try rather than the whole call keeps "sending" to the moments a request may really be in
    Kusto's hands: while the pipeline waits out a Retry-After, the ledger says "not accepted".
    """

    def __init__(self, drain: _Drain, chunk: Chunk[PendingItem]) -> None:
        self._drain = drain
        self._chunk = chunk
        self.refused = False
        """Whether the last mark written says "not accepted" (so the drain need not write it again)."""

    def sending(self) -> None:
        self._drain.mark(SENDING, self._chunk)
        self.refused = False

    def answered(self, status: int) -> None:
        if not 200 <= status < 300:
            self._drain.mark(NOT_ACCEPTED, self._chunk)
            self.refused = True


class _Drain:
    """The state of one run: the deadline, the targets that said "later", the counts."""

    def __init__(self, services: Services, clock: Callable[[], float]) -> None:
        self._services = services
        self._settings = services.settings
        self._clock = clock
        self._deadline = clock() + self._settings.drain_time_budget_seconds
        self._lock = threading.Lock()
        self._blocked: dict[tuple[str, str], float | None] = {}
        self._alone_failures: dict[tuple[str, str], int] = {}
        self.report = DrainReport()

    def run(self) -> DrainReport:
        batch_size = self._services.submitter.effective_batch_size()
        concurrency = self._settings.submit_concurrency
        round_limit = max(PAGE_SIZE, batch_size * concurrency)
        slots = threading.Semaphore(concurrency)
        self._delete_slots = threading.Semaphore(concurrency)
        ledger_read = False
        # Closed in reverse order: the submit threads finish (handing over their last deletes), then the deleters.
        with (
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="delete") as self._deleters,
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="submit") as pool,
        ):
            while True:
                if self._clock() >= self._deadline:
                    self.report.out_of_time = True
                    break
                messages = self._receive(round_limit)
                self.report.received += len(messages)
                if messages and not ledger_read:
                    self._refresh_ledger()  # not before: a run that finds the queue empty needs no ledger
                    ledger_read = True
                items = [item for item in map(self._triage, messages) if item is not None]
                for chunk in make_chunks(items, batch_size):
                    slots.acquire()
                    pool.submit(self._settle, chunk).add_done_callback(lambda _: slots.release())
                if len(messages) < round_limit:
                    break
        self.report.blocked_targets = sorted(f"{database}.{table}" for database, table in self._blocked)
        return self.report

    def _receive(self, limit: int) -> list[QueueMessage]:
        pages = receive_pages(
            self._services.pending_queue, limit=limit, visibility_timeout=self._settings.pending_visibility_timeout_seconds
        )
        return [message for page in pages for message in page]

    def _refresh_ledger(self) -> None:
        try:
            self._services.ledger.refresh()
        except AzureError as error:
            logger.warning(
                "submission ledger not readable this run (storage error: %s): a blob recorded twice may be submitted twice",
                redact(str(error)),
            )

    # -- one message ---------------------------------------------------------------------------------------

    def _triage(self, message: QueueMessage) -> PendingItem | None:
        """Parse one message; poisoned, malformed and already submitted ones are settled here and give None."""
        try:
            if (message.dequeue_count or 0) > self._settings.pending_max_dequeue_count:
                self._poison(message)
                return None
            try:
                text = decode_message(message.content)
                pending = read_pending(text)
            except ValueError as error:
                self._malformed(message, error)
                return None
            try:
                self._services.staging.check_pending(pending)
            except RefusedMessageError as error:
                self._refuse(message, error)
                return None
            ledger = self._services.ledger
            entry = ledger.lookup(ledger_key(pending))
            if entry is not None and entry.state == ACCEPTED:
                self._drop_duplicate(message, pending)
                return None
            if entry is not None and entry.state == SENDING:
                wait = self._settings.sending_lease_seconds - ledger.age(entry)
                if wait > 0:
                    self._hold(message, text, wait)
                    return None
                return PendingItem(message, pending, text, in_doubt=True)
            return PendingItem(message, pending, text)
        except AzureError as error:
            # The message stays in the queue and comes back; the next run tries again.
            logger.error(
                "pending message %s left in the queue: storage error while settling it: %s", message.id, redact(str(error))
            )
            self._count(DrainReport(deferred=1))
            return None

    def _refuse(self, message: QueueMessage, error: RefusedMessageError) -> None:
        """A well-formed message naming a blob outside staging or a target the app may not write: alerted, never acted on."""
        notification = failure_notification(
            error_code=error_codes.PENDING_REFUSED,
            details=(
                f"pending message {message.id} in queue {self._settings.pending_queue} was refused and removed, nothing was "
                f"submitted: {error}. Only the app writes this queue; whoever wrote this message can write to the storage "
                "account's queues: check who holds Storage Queue Data Contributor on it."
            ),
            origin=ORIGIN,
        )
        send_failure(self._services.failures_queue, notification)
        self._delete(message)
        self._count(DrainReport(refused=1))
        logger.error("pending message %s refused: %s", message.id, error)

    def _poison(self, message: QueueMessage) -> None:
        try:
            text = decode_message(message.content)
        except ValueError:
            text = message.content
        queue = self._settings.pending_poison_queue
        self._services.pending_poison_queue.send_message(text)
        self._delete(message)
        self._count(DrainReport(poisoned=1))
        logger.error("pending message %s poisoned after %d reads, moved to %s", message.id, message.dequeue_count, queue)

    def _drop_duplicate(self, message: QueueMessage, pending: PendingMessage) -> None:
        """The ledger holds this blob version's submission: the message is a repeat, removed and never sent."""
        self._delete(message)
        self._count(DrainReport(duplicates=1))
        logger.info(
            "pending message %s repeats blob %s/%s (source id %s), already accepted by Kusto: removed, not sent again",
            message.id,
            pending["container"],
            pending["blobName"],
            pending["sourceId"],
        )

    def _hold(self, message: QueueMessage, text: str, wait: float) -> None:
        """Another run is sending this blob version and may be alive: look again once its lease has passed."""
        self._put_back(message, text, math.ceil(wait))
        logger.info("pending message %s is being sent by another run: held back for %d s", message.id, math.ceil(wait))

    def _malformed(self, message: QueueMessage, error: ValueError) -> None:
        raw = readable_text(message.content)  # decoded: a SAS inside base64 text is invisible to redaction
        notification = failure_notification(
            error_code=error_codes.PENDING_MALFORMED,
            details=(
                f"pending message {message.id} in queue {self._settings.pending_queue} cannot be submitted and was "
                f"removed: {error}. Raw message: {raw[:8000]}"
            ),
            origin=ORIGIN,
        )
        send_failure(self._services.failures_queue, notification)
        self._delete(message)
        self._count(DrainReport(malformed=1))
        logger.error("pending message %s is malformed and was reported: %s", message.id, redact(str(error)))

    # -- one chunk (runs on the pool) ----------------------------------------------------------------------

    def _settle(self, chunk: Chunk[PendingItem]) -> None:
        try:
            self._submit(chunk)
        except Exception:
            # A storage failure while settling: whatever was not deleted reappears and is handled again.
            logger.exception("chunk for %s.%s left in the queue after an unexpected error", chunk.database, chunk.table)
            self._count(DrainReport(deferred=len(chunk.items) + len(chunk.duplicates)))

    def _submit(self, chunk: Chunk[PendingItem]) -> None:
        with self._lock:
            blocked = chunk.target in self._blocked
            retry_after = self._blocked.get(chunk.target)
        remaining = self._deadline - self._clock()
        if blocked or remaining < 1:
            self._defer(chunk, retry_after if blocked else 0)
            return
        self._announce_in_doubt(chunk)
        marks = _ChunkMarks(self, chunk)
        try:
            blobs = [
                BlobSource(
                    url=self._services.blob_access.url_for(item.pending["blobName"]),
                    source_id=item.pending["sourceId"],
                    raw_size=item.pending.get("rawSize"),
                )
                for item in chunk.items
            ]
            operation_id = self._services.submitter.submit(
                chunk.database, chunk.table, blobs, chunk.properties, timeout=remaining, observer=marks
            )
        except TransientKustoError as error:
            if not isinstance(error, UncertainKustoError) and not marks.refused:
                self.mark(NOT_ACCEPTED, chunk)  # uncertain: "sending" stays, so the blobs come back in doubt
            suspect = _content_may_be_the_cause(error)
            if suspect and _sent_alone(chunk) and self._alone_failure(chunk.target) < ALONE_FAILURES_BEFORE_BLOCK:
                logger.warning(
                    "blob %s/%s, sent alone, failed again (%s): deferred, while the other blobs of %s.%s go on",
                    chunk.items[0].pending["container"],
                    chunk.items[0].pending["blobName"],
                    error,
                    chunk.database,
                    chunk.table,
                )
                self._defer(chunk, error.retry_after)
                return
            with self._lock:
                self._blocked[chunk.target] = error.retry_after
            log = logger.error if isinstance(error, KustoAuthError) else logger.warning
            log("submission to %s.%s deferred for this run (%d blobs): %s", chunk.database, chunk.table, len(chunk.items), error)
            self._defer(chunk, error.retry_after, alone=suspect and len(chunk.items) > 1)
            return
        except PermanentKustoError as error:
            if not marks.refused:
                self.mark(NOT_ACCEPTED, chunk)
            self._reject(chunk, error)
            return
        except AzureError as error:
            # Signing blob URLs needs a user delegation key from storage: nothing was sent, try next run.
            logger.error("cannot prepare blob access for %s.%s: %s", chunk.database, chunk.table, redact(str(error)))
            self._defer(chunk, None)
            return
        self._track(chunk, operation_id)

    def mark(self, state: str, chunk: Chunk[PendingItem], operation_id: str = "") -> None:
        """Write the chunk's blob versions to the submission ledger as `state`; a storage error never holds them back."""
        try:
            self._services.ledger.record(state, (ledger_key(item.pending) for item in chunk.items), operation_id)
        except AzureError as error:
            logger.warning(
                "submission ledger not written (%s for %d blobs of %s.%s; storage error: %s): if this run dies now, or a "
                "second pending message for one of them comes, that blob may be submitted again without notice",
                _STATE_NAMES[state],
                len(chunk.items),
                chunk.database,
                chunk.table,
                redact(str(error)),
            )

    def _announce_in_doubt(self, chunk: Chunk[PendingItem]) -> None:
        """Before a blob whose earlier submission has no known outcome is sent again: one notification each."""
        for item in chunk.items:
            if not item.in_doubt:
                continue
            notification = failure_notification(
                error_code=error_codes.SUBMISSION_IN_DOUBT,
                details=(
                    "a run that was submitting this blob died, or lost Kusto's answer, after its request may have reached "
                    "Kusto, and Kusto's API cannot say whether it did; the blob is submitted again now. If the first "
                    "request was accepted, the blob's rows are in the table twice: check the rows of this blob, or the "
                    "operations that list this IngestionSourceId."
                ),
                origin=ORIGIN,
                failure_status=UNKNOWN,
                **pending_blob_fields(item.pending),
            )
            send_failure(self._services.failures_queue, notification)
            self._count(DrainReport(in_doubt=1))
            logger.warning(
                "blob %s/%s (source id %s) submitted again with its earlier submission's outcome unknown",
                item.pending["container"],
                item.pending["blobName"],
                item.pending["sourceId"],
            )

    def _track(self, chunk: Chunk[PendingItem], operation_id: str) -> None:
        """Tracking record first, then "accepted" in the ledger, then the deletes.

        In that order "accepted" always means "tracked": a repeat the ledger drops can never be the last copy
        of a blob whose outcome nobody follows. Dying before the mark leaves "sending", so the blobs come
        back in doubt (announced) rather than untracked.
        """
        record: TrackingRecord = {
            "version": 1,
            "database": chunk.database,
            "table": chunk.table,
            "operationId": operation_id,
            "mode": self._settings.submission_mode,
            "submittedAt": utc_now_iso(),
            "polls": 0,
            "blobs": [
                {
                    "sourceId": item.pending["sourceId"],
                    "blobUrl": plain_blob_url(item.pending["blobUrl"]),
                    "container": item.pending["container"],
                    "blobName": item.pending["blobName"],
                    "pending": item.pending,
                }
                for item in chunk.items
            ],
        }
        text = schemas.dump(schemas.TRACKING_RECORD, record)
        if len(text.encode("utf-8")) > QUEUE_TEXT_LIMIT:
            # Batching keeps records under the limit; an oversized pending message (many tags) can still break it.
            logger.warning(
                "tracking record of operation %s too large for a queue message: kept without pending copies", operation_id
            )
            for blob in record["blobs"]:
                del blob["pending"]
            text = schemas.dump(schemas.TRACKING_RECORD, record)
        self._services.tracking_queue.send_message(text)
        self.mark(ACCEPTED, chunk, operation_id)
        self._delete_all(chunk, lambda: self._tracked(chunk, operation_id))

    def _tracked(self, chunk: Chunk[PendingItem], operation_id: str) -> None:
        """A tracked chunk's messages are deleted: count it."""
        self._count(DrainReport(operations=1, submitted=len(chunk.items), duplicates=len(chunk.duplicates)))
        logger.info("submitted %d blobs to %s.%s as operation %s", len(chunk.items), chunk.database, chunk.table, operation_id)

    def _reject(self, chunk: Chunk[PendingItem], error: KustoError) -> None:
        for item in chunk.items:
            notification = failure_notification(
                error_code=error.code or error_codes.SUBMISSION_REJECTED,
                details=f"Kusto rejected the ingestion request: {error}",
                origin=ORIGIN,
                failure_status=PERMANENT,
                root_activity_id=error.activity_id,
                **pending_blob_fields(item.pending),
            )
            send_failure(self._services.failures_queue, notification)
        self._delete_all(chunk, lambda: self._rejected(chunk, error))

    def _rejected(self, chunk: Chunk[PendingItem], error: KustoError) -> None:
        """A rejected chunk's messages are deleted: count it."""
        self._count(DrainReport(rejected=len(chunk.items), duplicates=len(chunk.duplicates)))
        logger.error("Kusto rejected %d blobs for %s.%s: %s", len(chunk.items), chunk.database, chunk.table, error)

    def _defer(self, chunk: Chunk[PendingItem], delay: float | None, *, alone: bool = False) -> None:
        """Put the messages back for a later run: fresh copies, visible after `delay` (DEFER_SECONDS when unknown).

        With `alone`, each submitted blob's copy says `submitAlone`, so the next run sends it in a request of its
        own (its duplicates ride along with it, as they did here).
        """
        visibility = DEFER_SECONDS if delay is None else max(1, math.ceil(delay))
        copies = [(item, alone) for item in chunk.items] + [(item, False) for item in chunk.duplicates]
        for item, send_alone in copies:
            if self._too_old(item):
                self._time_out(item)
                continue
            text = schemas.dump(schemas.PENDING_BLOB, {**item.pending, "submitAlone": True}) if send_alone else item.text
            self._put_back(item.message, text, visibility)

    def _alone_failure(self, target: tuple[str, str]) -> int:
        """Count a failed request of one blob sent alone to `target` this run; returns how many failed before it."""
        with self._lock:
            before = self._alone_failures.get(target, 0)
            self._alone_failures[target] = before + 1
            return before

    def _put_back(self, message: QueueMessage, text: str, visibility: int) -> None:
        """A fresh copy, visible after `visibility` seconds, then the delete: a deferral starts again at dequeue count 0."""
        self._services.pending_queue.send_message(text, visibility_timeout=visibility)
        self._delete(message)
        self._count(DrainReport(deferred=1))

    def _too_old(self, item: PendingItem) -> bool:
        recorded = parse_time(item.pending["recordedAt"])
        return (datetime.now(UTC) - recorded).total_seconds() > self._settings.pending_max_age_seconds

    def _time_out(self, item: PendingItem) -> None:
        notification = failure_notification(
            error_code=error_codes.SUBMISSION_TIMED_OUT,
            details=(
                f"blob could not be submitted within PENDING_MAX_AGE_SECONDS={self._settings.pending_max_age_seconds} of "
                "being recorded: Kusto kept answering 'try later' (see the warnings of the submission timer). "
                "The blob is still in the staging container; re-upload it (or copy it over itself) to submit it again."
            ),
            origin=ORIGIN,
            failure_status=EXHAUSTED,
            **pending_blob_fields(item.pending),
        )
        send_failure(self._services.failures_queue, notification)
        self._delete(item.message)
        self._count(DrainReport(timed_out=1))

    def _delete_all(self, chunk: Chunk[PendingItem], settled: Callable[[], None]) -> None:
        """Hand a settled chunk's messages to a delete thread, which deletes them one after another, then calls
        `settled` (the chunk's counts); the chunk's own thread goes on to the next chunk meanwhile.

        The new state is written before (tracking record and ledger mark, or the failure notifications), so a
        crash before or part-way through the deletes leaves the rest to come back, and the ledger keeps the
        accepted ones from Kusto: repeats are dropped unsent. On the chunk's thread, the 20 deletes held its
        submit slot one request after another (160 ms at Azure's 8 ms a request, as long as the rest of the
        chunk's storage requests and the POST's wait together); handed over, they overlap the next chunk's
        POST. As many delete threads as submit threads, and a chunk's thread waits for a free one, so deletes
        never pile up. One hand-off per chunk, not per message: deleting each message on a pool cost a future
        and a thread wake-up per message.
        """
        messages = [item.message for item in (*chunk.items, *chunk.duplicates)]
        self._delete_slots.acquire()
        try:
            handed = self._deleters.submit(self._delete_in_turn, chunk, messages, settled)
        except BaseException:
            self._delete_slots.release()
            raise
        handed.add_done_callback(lambda _: self._delete_slots.release())

    def _delete_in_turn(self, chunk: Chunk[PendingItem], messages: list[QueueMessage], settled: Callable[[], None]) -> None:
        """On a delete thread: the chunk's deletes one after another, then its counts."""
        try:
            for message in messages:
                self._delete(message)
            settled()
        except Exception:
            # As `_settle`: whatever was not deleted reappears, and the ledger drops what Kusto already has.
            logger.exception("chunk for %s.%s left in the queue after an unexpected error", chunk.database, chunk.table)
            self._count(DrainReport(deferred=len(messages)))

    def _delete(self, message: QueueMessage) -> None:
        try:
            self._services.pending_queue.delete_message(message)
        except ResourceNotFoundError:
            # Its visibility ran out and another run holds it now: that run settles it again (a duplicate, not a loss).
            logger.warning("pending message %s could not be deleted: already taken by another run", message.id)

    def _count(self, counts: DrainReport) -> None:
        with self._lock:
            self.report.add(counts)
