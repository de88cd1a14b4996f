"""`status <blob name>`: where one staged blob version is, from the state the app keeps plus one status poll.

The answer comes from what the app writes anyway, so asking costs a few reads and nothing on the happy path:
* the staging blob itself (its ETag makes the version's source id; `--etag` names an earlier version), or its
  quarantined copy, whose metadata names the failure, the operation and the source id;
* the submission ledger: when the version was sent, refused or accepted, and the operation Kusto answered with;
* the alert markers filed under the version: each alert's error code, failure status, origin and details;
* the pending queue's visible head (a peek shows at most 32 messages), for a version recorded and not sent yet;
* for an accepted version, one poll of the operation's status (`--no-poll` skips it), which says whether Kusto
  ingested it, failed it, or is still at work.
The verdict is one of: ingested, failed (alerted), sent (Kusto still ingesting), being submitted, waiting in
the pending queue, or not recorded. The ledger and the markers reach back `Settings.state_retention_seconds`;
older history is gone, and the answer says so.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobProperties

from shared.kusto_errors import KustoError
from shared.ops.progress import say
from shared.redaction import redact
from shared.routing import RoutingError
from shared.staging_area import source_id
from shared.storage import decode_message
from shared.submission_ledger import ACCEPTED, NOT_ACCEPTED, SENDING

if TYPE_CHECKING:
    from shared.services import Services

PEEK_LIMIT = 32
_STATE_WORDS = {SENDING: "sending", NOT_ACCEPTED: "not accepted (deferred)", ACCEPTED: "accepted"}

INGESTED = "ingested"
FAILED = "failed"
SENT = "sent"
SUBMITTING = "being submitted"
WAITING = "waiting in the pending queue"
NOT_RECORDED = "not recorded"
GONE = "not found"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("blob", help="the blob's name in the staging container, e.g. Sales/Orders/2026-12-01.csv")
    parser.add_argument("--etag", help="an earlier version of the blob (its ETag), instead of the one in staging")
    parser.add_argument("--no-poll", action="store_true", help="do not ask Kusto for the operation's status")
    parser.add_argument("--json", action="store_true", help="print the answer as one JSON object")


@dataclass
class BlobStatus:
    """The answer about one blob version."""

    blob: str
    verdict: str = GONE
    where: str = ""
    """`staging`, `quarantine/<container>`, or "" when the blob is in neither."""
    etag: str = ""
    source_id: str = ""
    modified: str = ""
    target: str = ""
    operation_id: str = ""
    kusto_status: str = ""
    history: list[str] = field(default_factory=list)
    alerts: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run(args: argparse.Namespace, services: Services) -> int:
    answer = blob_status(services, args.blob, etag=args.etag, poll=not args.no_poll)
    if args.json:
        say(json.dumps(asdict(answer)))
    else:
        _print(answer)
    return 0


def blob_status(services: Services, blob_name: str, *, etag: str | None = None, poll: bool = True) -> BlobStatus:
    """Everything the app's state says about one version of `blob_name` (its current one unless `etag`)."""
    answer = BlobStatus(blob=f"{services.settings.staging_container}/{blob_name}")
    client = services.blob_service.get_blob_client(services.settings.staging_container, blob_name)
    properties = _properties(client)
    database = table = ""
    if properties is not None:
        answer.where = "staging"
        answer.modified = properties.last_modified.isoformat() if properties.last_modified else ""
        database, table = _route(services, blob_name, properties)
    quarantined = _quarantined(services, blob_name)
    if properties is None and quarantined is not None:
        answer.where = f"quarantine/{services.settings.quarantine_container}"
        answer.source_id = quarantined.metadata.get("sourceid", "")
        answer.notes.append(
            f"moved to quarantine at {quarantined.metadata.get('quarantinedat', '?')} after "
            f"{quarantined.metadata.get('errorcode', '?')} (operation {quarantined.metadata.get('operationid', '?')})"
        )
    answer.etag = etag or (properties.etag if properties is not None else "")
    if answer.etag:
        answer.source_id = source_id(client.url, answer.etag if answer.etag.startswith('"') else f'"{answer.etag}"')
    if not answer.source_id:
        answer.notes.append(
            "the blob is neither in staging nor in quarantine: deleted (DELETE_ON_SUCCESS deletes it once ingested) or "
            "never staged; give --etag to look up a version that was"
        )
        return answer
    _read_history(services, answer)
    if not database and answer.alerts:
        database, table = answer.alerts[-1].get("database", ""), answer.alerts[-1].get("table", "")
    if not database:
        database, table = _route(services, blob_name, None)
    answer.target = f"{database}.{table}" if database else ""
    if answer.operation_id and poll and database:
        _poll(services, answer, database, table)
    answer.verdict = _verdict(services, answer)
    return answer


def _properties(client: Any) -> BlobProperties | None:
    try:
        return client.get_blob_properties()
    except ResourceNotFoundError:
        return None


def _quarantined(services: Services, blob_name: str) -> BlobProperties | None:
    container = services.settings.quarantine_container
    if not container:
        return None
    return _properties(services.blob_service.get_blob_client(container, blob_name))


def _route(services: Services, blob_name: str, properties: BlobProperties | None) -> tuple[str, str]:
    try:
        route = services.router.route(blob_name, (properties.metadata if properties else None) or {})
    except RoutingError:
        return "", ""
    return route.database, route.table


def _read_history(services: Services, answer: BlobStatus) -> None:
    since = time.time() - services.settings.state_retention_seconds
    for record in services.ledger.history(uuid.UUID(answer.source_id).bytes, since):
        moment = datetime.fromtimestamp(record.entry.at, UTC).isoformat(timespec="seconds")
        line = f"{moment} {_STATE_WORDS[record.entry.state]}"
        if record.operation_id:
            line += f" as operation {record.operation_id}"
            answer.operation_id = record.operation_id
        answer.history.append(line)
    for alert in services.alert_markers.alerts_of(answer.source_id):
        facts = dict(alert.facts)
        answer.alerts.append({"state": alert.state, "written": alert.written.isoformat() if alert.written else "", **facts})
        answer.history.append(
            f"{facts.get('failedon') or (alert.written.isoformat() if alert.written else '?')} alerted "
            f"{facts.get('errorcode', '?')} ({facts.get('failurestatus', '?')}, {facts.get('origin', '?')}): "
            f"{facts.get('details', '')}"
        )
    if not answer.history:
        answer.notes.append(_pending_note(services, answer.source_id))


def _pending_note(services: Services, sid: str) -> str:
    """Whether the version's pending message is among the queue's visible head."""
    try:
        peeked = services.pending_queue.peek_messages(max_messages=PEEK_LIMIT)
        total = services.pending_queue.get_queue_properties().approximate_message_count
    except AzureError as error:
        return f"the pending queue could not be read ({type(error).__name__})"
    for message in peeked:
        try:
            if json.loads(decode_message(message.content)).get("sourceId") == sid:
                return "its pending message is in the pending queue: the next drain sends it"
        except (ValueError, AttributeError):
            continue
    return (
        f"no pending message for it among the {len(peeked)} visible at the head of the pending queue "
        f"(about {total} in all); a message being sent, deferred or further back is not visible to a peek"
    )


def _poll(services: Services, answer: BlobStatus, database: str, table: str) -> None:
    try:
        status = services.kusto.get_status(database, table, answer.operation_id, details=True)
    except (KustoError, AzureError) as error:
        answer.notes.append(f"Kusto's status of operation {answer.operation_id} could not be read: {redact(str(error))}")
        return
    for blob in status.blobs:
        if blob.source_id.lower() == answer.source_id:
            answer.kusto_status = blob.status
            detail = f": {blob.error_code} {blob.details or ''}".rstrip() if blob.error_code else ""
            answer.history.append(f"{blob.last_updated or '?'} Kusto says {blob.status}{detail}")
            return
    answer.notes.append(f"operation {answer.operation_id} does not list this blob (Kusto keeps statuses for a limited time)")


def _verdict(services: Services, answer: BlobStatus) -> str:
    if answer.kusto_status == "Succeeded":
        return INGESTED
    if answer.alerts or answer.kusto_status in ("Failed", "PartiallySucceeded", "Canceled", "Skipped"):
        return FAILED
    if answer.operation_id:
        return SENT
    if answer.history:
        return SUBMITTING
    if any(note.startswith("its pending message") for note in answer.notes):
        return WAITING
    return NOT_RECORDED


def _print(answer: BlobStatus) -> None:
    say(f"blob:     {answer.blob}" + (f" (in {answer.where})" if answer.where else ""))
    if answer.source_id:
        say(f"version:  etag {answer.etag or '?'}, modified {answer.modified or '?'}, source id {answer.source_id}")
    if answer.target:
        say(f"target:   {answer.target}")
    say(f"status:   {answer.verdict}" + (f" (operation {answer.operation_id})" if answer.operation_id else ""))
    for line in answer.history:
        say(f"  {line}")
    for note in answer.notes:
        say(f"note: {note}")
