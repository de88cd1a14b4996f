"""Event Grid dead letters (housekeeping timer): every BlobCreated event Event Grid gave up on ends recorded or alerted.

Event Grid retries a delivery to the blob trigger's webhook for 30 attempts or 24 hours (the subscription's
`retryPolicy`), then drops the event, and the blob would never be ingested, without a word. With a dead-letter
destination (DEAD_LETTER_CONTAINER, in the staging account) it writes the event there instead: one blob per
batch, `<SUBSCRIPTION NAME>/<year>/<month>/<day>/<hour>/<guid>.json` (the date not zero-padded), holding a JSON
array of events in the Event Grid schema plus `deadLetterReason`, `deliveryAttempts`, `lastDeliveryOutcome`,
`publishTime` and `lastDeliveryAttemptTime` (learn.microsoft.com/azure/event-grid/delivery-and-retry,
"Dead-letter events"; manage-event-delivery for the blob names).

Whoever can write to that container can write anything there, so each event is checked before anything acts on
it, and only the blob name is taken from it, from `subject`
(`/blobServices/default/containers/<container>/blobs/<name>`); `data.url` is never used. For each event:

* a `Microsoft.Storage.BlobCreated` event of this staging account (`topic`) whose subject names a blob of the
  staging container, and whose version (`data.eTag`) is still the blob there: the blob is recorded exactly as the
  blob trigger records it (`shared.recorder.record_blob`, reached through `services.staging`), and a WARNING
  `DeadLetter_Recovered` names the blob and why Event Grid gave up;
* the same, but the blob is gone or was overwritten since (the version the event names no longer exists, so it
  was never ingested): one failure notification `DeadLetter_BlobGone`;
* anything else (another container, account or event type, a name the trigger refuses, no eTag, not an
  object): one failure notification `DeadLetter_Foreign` carrying the event (redacted); nothing is acted on.

A blob of the container that is not a JSON array at all alerts once as `DeadLetter_Unreadable`. Then the dead
letter is deleted (only the version that was read). The new state is always written first: a crash before the
delete repeats the work, never loses it (the submission ledger drops a second pending message of a recorded
blob version, the alert markers a repeated alert: each notification carries a deterministic source id). A dead
letter larger than MAX_BLOB_BYTES is alerted and left in place for an operator. One run reads at most
MAX_BLOBS_PER_RUN dead letters and settles at most MAX_EVENTS_PER_RUN events; a dead letter holding more is
split: the events not settled yet are written to a new dead letter before the old one is deleted.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobProperties, ContainerClient, ContentSettings

from shared import error_codes
from shared.notifications import EXHAUSTED, PERMANENT, failure_notification, send_failure
from shared.recorder import record_blob
from shared.redaction import clean, plain_blob_url, redact
from shared.staging_area import RefusedMessageError, source_id

if TYPE_CHECKING:
    from shared.services import Services

logger = logging.getLogger(__name__)

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
ORIGIN = "poison"
"""The failure-notification schema's stage for what a retrying system gave up on (here, Event Grid)."""

MAX_BLOBS_PER_RUN = 64
MAX_EVENTS_PER_RUN = 256
MAX_BLOB_BYTES = 4 * 1024 * 1024
"""A dead letter of BlobCreated events (about 1 KiB each) this large holds thousands; a larger one is not read."""
PAYLOAD_EXCERPT = 4000
_FIELD = 128
"""Longest text kept of a value the event supplies (reason, outcome, attempts) in a log line or an alert."""
_SPLIT_SUFFIX = ".rest-"


@dataclass
class DeadLetterReport:
    """What one run did: dead letters read and deleted, events recovered (recorded) and alerted."""

    blobs: int = 0
    deleted: int = 0
    recovered: int = 0
    alerted: int = 0


class _UnreadableError(ValueError):
    """The dead letter is not a JSON array of events; the text says why."""


def recover_dead_letters(services: Services, prefix: str = "") -> DeadLetterReport:
    """Housekeeping body: settle the dead letters of DEAD_LETTER_CONTAINER, within this run's bounds.

    Storage errors end the run with a warning (the next run tries again); nothing is deleted that was not settled.
    `prefix` limits the run to dead letters whose names start with it (`replay dead-letter --prefix`).
    """
    report = DeadLetterReport()
    container = services.blob_service.get_container_client(services.settings.dead_letter_container)
    budget = MAX_EVENTS_PER_RUN
    try:
        listing = container.list_blobs(name_starts_with=prefix or None, results_per_page=MAX_BLOBS_PER_RUN)
        for item in itertools.islice(listing, MAX_BLOBS_PER_RUN):
            if budget <= 0:
                break
            report.blobs += 1
            try:
                budget -= _settle_blob(services, container, item, budget, report)
            except (ResourceModifiedError, ResourceNotFoundError) as error:
                # Rewritten or deleted since it was listed (or a queue is missing): it stays, the next run sees it again.
                budget -= 1
                logger.warning(
                    "dead letter %s not settled this time (%s); the next run tries again", item.name, type(error).__name__
                )
            except AzureError:
                raise
            except Exception as error:
                # Left in place: the next run tries again (what this one settled is dropped then as a repeat).
                budget -= 1
                logger.error("dead letter %s not settled, retried next run: %s", item.name, redact(str(error)))
    except ResourceNotFoundError:
        pass  # no container yet: Event Grid has dead-lettered nothing
    except AzureError as error:
        logger.warning(
            "dead letters of %s not all settled this time (storage error %s); the next run tries again",
            container.container_name,
            type(error).__name__,
        )
    if report.blobs:
        logger.info(
            "dead letters: %d read, %d deleted, %d event(s) recovered, %d alerted",
            report.blobs,
            report.deleted,
            report.recovered,
            report.alerted,
        )
    return report


def _settle_blob(
    services: Services, container: ContainerClient, item: BlobProperties, budget: int, report: DeadLetterReport
) -> int:
    """Settle one dead letter (at most `budget` of its events); returns how much of the budget it used."""
    dead_letter = container.get_blob_client(item.name)
    url = plain_blob_url(dead_letter.url)
    where = f"dead letter {container.container_name}/{item.name}"
    if (item.size or 0) > MAX_BLOB_BYTES:
        _alert(
            services,
            error_codes.DEAD_LETTER_UNREADABLE,
            f"{where} is {item.size} bytes, over the {MAX_BLOB_BYTES} this app reads; it was left in place. Read it, "
            "re-upload the staging blobs its events name, then delete it",
            sid=source_id(url, item.etag),
            dead_letter_url=url,
            report=report,
        )
        return 1
    data = dead_letter.download_blob(etag=item.etag, match_condition=MatchConditions.IfNotModified).readall()
    try:
        events = _events(data)
    except _UnreadableError as error:
        excerpt = redact(data[:PAYLOAD_EXCERPT].decode("utf-8", errors="replace"))
        _alert(
            services,
            error_codes.DEAD_LETTER_UNREADABLE,
            f"{where} is not a JSON array of Event Grid events ({error}); it was deleted after this alert. Content: {excerpt}",
            sid=source_id(url, item.etag),
            dead_letter_url=url,
            report=report,
        )
        _delete(dead_letter, item, report)
        return 1
    taken, rest = events[:budget], events[budget:]
    for index, event in enumerate(taken):
        _settle_event(services, event, f"{where} event {index}", source_id(url, f"{item.etag}#{index}"), report)
    if rest:
        # New state first: the events not settled yet go to a dead letter of their own, then this one is deleted.
        stem = item.name.split(_SPLIT_SUFFIX, 1)[0].removesuffix(".json")
        container.upload_blob(
            f"{stem}{_SPLIT_SUFFIX}{uuid.uuid4().hex[:12]}.json",
            json.dumps(rest),
            content_settings=ContentSettings(content_type="application/json"),
        )
    _delete(dead_letter, item, report)
    return max(1, len(taken))


def _events(data: bytes) -> list[Any]:
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise _UnreadableError("not UTF-8 text") from None
    except RecursionError:
        raise _UnreadableError("nested too deeply") from None
    except ValueError as error:
        raise _UnreadableError(f"not JSON: {error}") from None
    if not isinstance(document, list):
        raise _UnreadableError(f"a JSON {type(document).__name__}, not an array")
    return document


def _delete(dead_letter: Any, item: BlobProperties, report: DeadLetterReport) -> None:
    """Delete the version that was read; a dead letter rewritten meanwhile stays for the next run."""
    try:
        dead_letter.delete_blob(etag=item.etag, match_condition=MatchConditions.IfNotModified)
    except ResourceModifiedError:
        logger.warning("dead letter %s changed while it was read: kept for the next run", item.name)
        return
    except ResourceNotFoundError:
        pass  # another worker's run deleted it first
    report.deleted += 1


def _text(value: Any) -> str:
    """A value of the event, fit for one log line or alert field."""
    return clean(value if isinstance(value, str) else json.dumps(value))[:_FIELD]


def _staging_blob_name(services: Services, event: Mapping[str, Any]) -> str:
    """The staging blob a BlobCreated event of this account names; RefusedMessageError saying why it names none."""
    if event.get("eventType") != BLOB_CREATED:
        raise RefusedMessageError(f"its eventType {_text(event.get('eventType'))} is not {BLOB_CREATED}")
    account = services.blob_service.account_name or ""
    topic = event.get("topic")
    if not isinstance(topic, str) or not topic.lower().endswith(
        f"/providers/microsoft.storage/storageaccounts/{account.lower()}"
    ):
        raise RefusedMessageError(f"its topic {_text(topic)} is not the staging storage account {account!r}")
    subject = event.get("subject")
    prefix = f"/blobServices/default/containers/{services.settings.staging_container}/blobs/"
    if not isinstance(subject, str) or not subject.startswith(prefix):
        raise RefusedMessageError(
            f"its subject {_text(subject)} names no blob of the staging container {services.settings.staging_container!r}"
        )
    return subject[len(prefix) :]


def _event_etag(event: Mapping[str, Any]) -> str:
    data = event.get("data")
    etag = data.get("eTag") if isinstance(data, Mapping) else None
    if not isinstance(etag, str) or not etag.strip('"') or len(etag) > 64:
        raise RefusedMessageError("its data.eTag is missing, so the blob version it names is unknown")
    return etag.strip('"')


def _settle_event(services: Services, event: Any, where: str, foreign_sid: str, report: DeadLetterReport) -> None:
    if not isinstance(event, Mapping):
        _foreign(services, where, f"it is a JSON {type(event).__name__}, not an event object", event, foreign_sid, report)
        return
    try:
        name = _staging_blob_name(services, event)
        etag = _event_etag(event)
        blob = services.staging.blob(name)
    except RefusedMessageError as error:
        _foreign(services, where, str(error), event, foreign_sid, report)
        return
    why = (
        f"Event Grid gave up on its BlobCreated event ({_text(event.get('deadLetterReason', '?'))} after "
        f"{_text(event.get('deliveryAttempts', '?'))} delivery attempt(s), last outcome "
        f"{_text(event.get('lastDeliveryOutcome', '?'))})"
    )
    url = plain_blob_url(blob.url)
    sid = source_id(url, f'"{etag}"')
    try:
        current = blob.get_blob_properties().etag.strip('"')
    except ResourceNotFoundError:
        current = None
    if current is None or current.lower() != etag.lower():
        state = "was deleted" if current is None else "was overwritten (its ETag is now another)"
        _alert(
            services,
            error_codes.DEAD_LETTER_BLOB_GONE,
            f"blob {services.settings.staging_container + '/' + name!r} (ETag {etag}) never reached the blob trigger: {why}, "
            f"and the blob {state}, so this version can no longer be recorded or ingested. Source: {where}",
            sid=sid,
            blob_url=url,
            blob_name=name,
            status=EXHAUSTED,
            report=report,
        )
        return
    result = record_blob(blob, services)
    report.recovered += 1
    logger.warning(
        error_codes.DEAD_LETTER_RECOVERED + " blob %r recorded from a dead-lettered event (%s): %s%s",
        f"{services.settings.staging_container}/{name}",
        where,
        why,
        f"; it could not be routed ({result.error_code}), which alerts on its own" if result.error_code else "",
        extra={
            "custom_dimensions": {
                "errorCode": error_codes.DEAD_LETTER_RECOVERED,
                "blobName": name,
                "sourceId": sid,
                "outcome": result.outcome,
                "deadLetterReason": _text(event.get("deadLetterReason", "")),
                "deliveryAttempts": _text(event.get("deliveryAttempts", "")),
                "lastDeliveryOutcome": _text(event.get("lastDeliveryOutcome", "")),
            }
        },
    )


def _foreign(services: Services, where: str, reason: str, event: Any, sid: str, report: DeadLetterReport) -> None:
    payload = redact(json.dumps(event, default=str))[:PAYLOAD_EXCERPT]
    _alert(
        services,
        error_codes.DEAD_LETTER_FOREIGN,
        f"{where} is not a BlobCreated event of the staging container: {reason}. Nothing was recorded or changed for it; "
        f"the dead letter is deleted after this alert. Event: {payload}",
        sid=sid,
        report=report,
    )


def _alert(
    services: Services,
    code: str,
    details: str,
    *,
    sid: str,
    report: DeadLetterReport,
    blob_url: str = "",
    blob_name: str = "",
    dead_letter_url: str = "",
    status: str = PERMANENT,
) -> None:
    send_failure(
        services.failures_queue,
        failure_notification(
            error_code=code,
            details=details,
            origin=ORIGIN,
            failure_status=status,
            blob_url=blob_url or dead_letter_url,
            blob_name=blob_name[:1024],
            source_id=sid,
        ),
    )
    report.alerted += 1
    logger.error("%s: %s", code, clean(details)[:PAYLOAD_EXCERPT])
