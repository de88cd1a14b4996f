"""`replay poison`: send the messages the poison watcher kept back to the queue they came from.

The poison watcher (`shared.poison`) keeps every message it alerts on in `<poison queue>-alerted`. Once the cause
is fixed (Kusto reachable again, the webhook repaired), each kept message is checked as its queue's reader checks
it, then sent back:

* `<pending>-poison-alerted` -> the pending queue (a pending-blob message of a staging blob and an allowed target);
* `<tracking>-poison-alerted` -> the tracking queue (a tracking record of staging blobs);
* `<failures>-poison-alerted` -> the failures queue (a failure notification), so that it is alerted again;
* `webjobs-blobtrigger-poison-alerted`: the host's message names a staging blob, and that blob is recorded
  (`shared.recorder.record_blob`) as the blob trigger would have recorded it.

A kept message is deleted once it was sent (a crash in between sends it twice: the drain and the alert markers drop
repeats). One that is not what its queue expects is reported and left in place, for the operator to read and
delete. The same text kept twice (a watcher run that died between its writes) is sent once, its repeat deleted.
With a prefix, only the messages that name a blob under it are sent (a tracking record: any of its blobs); the
others stay. A dry run peeks, which changes nothing but sees the first PEEK_LIMIT messages of each queue only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobClient
from azure.storage.queue import QueueClient, QueueMessage

from shared import schemas
from shared.ops.item_report import ItemReport
from shared.ops.progress import progress_bar, say
from shared.poison import BLOB_TRIGGER_POISON_QUEUE, kept_queue
from shared.recorder import PENDING, record_blob
from shared.redaction import clean
from shared.staging_area import RefusedMessageError
from shared.storage import readable_text, receive_pages

if TYPE_CHECKING:
    from shared.services import Services

PEEK_LIMIT = 32
"""The most messages a peek returns (the queue service's limit)."""
VISIBILITY_SECONDS = 300
"""How long a received message stays hidden while the replay works through its queue."""
MAX_PER_QUEUE = 10_000
"""The most messages one replay takes from one kept queue; the same command run again takes the rest."""
EXCERPT = 200


@dataclass(frozen=True)
class _Kind:
    """How the messages kept from one poison queue are checked and sent back."""

    action: str
    """What sending one back does, for the lines ("sent back to ingest-pending")."""
    blob_names: Callable[[Services, str], tuple[str, ...]]
    """The blobs a message names, after the checks its queue's reader makes; ValueError says why it is malformed."""
    send: Callable[[Services, str], str]
    """Send it back; returns "" when done, else why its blob cannot go on (it was alerted)."""


def _pending_blob_names(services: Services, text: str) -> tuple[str, ...]:
    pending = schemas.parse(schemas.PENDING_BLOB, text)
    services.staging.check_pending(pending)
    return (pending["blobName"],)


def _tracking_blob_names(services: Services, text: str) -> tuple[str, ...]:
    record = schemas.parse(schemas.TRACKING_RECORD, text)
    services.staging.check_tracking_record(record)
    return tuple(blob["blobName"] for blob in record["blobs"])


def _failure_blob_names(services: Services, text: str) -> tuple[str, ...]:
    return (schemas.parse(schemas.FAILURE_NOTIFICATION, text).get("BlobName", ""),)


def _blob_trigger_blob(services: Services, text: str) -> BlobClient:
    """The staging blob a blob trigger's poison message names (as the host writes it: ContainerName, BlobName)."""
    try:
        message = json.loads(text)
    except RecursionError:
        raise ValueError("not a blob trigger message: JSON nested too deeply") from None
    if not isinstance(message, dict):
        raise ValueError("not a blob trigger message: not a JSON object")
    container, name = message.get("ContainerName"), message.get("BlobName")
    if container != services.staging.container:
        raise RefusedMessageError(f"ContainerName {clean(str(container))[:64]!r} is not the staging container")
    if not isinstance(name, str) or not name:
        raise ValueError("not a blob trigger message: no BlobName")
    return services.staging.blob(name)


def _send_to(queue: QueueClient) -> Callable[[Services, str], str]:
    def send(_services: Services, text: str) -> str:
        queue.send_message(text)
        return ""

    return send


def _blob_trigger_blob_names(services: Services, text: str) -> tuple[str, ...]:
    return (_blob_trigger_blob(services, text).blob_name,)


def _record(services: Services, text: str) -> str:
    result = record_blob(_blob_trigger_blob(services, text), services)
    return "" if result.outcome == PENDING else f"its blob cannot be routed ({result.error_code}) and was alerted"


def _kinds(services: Services) -> dict[str, _Kind]:
    """Poison queue -> how its kept messages go back."""
    settings = services.settings
    return {
        settings.pending_poison_queue: _Kind(
            f"sent back to {settings.pending_queue}", _pending_blob_names, _send_to(services.pending_queue)
        ),
        settings.tracking_poison_queue: _Kind(
            f"sent back to {settings.tracking_queue}", _tracking_blob_names, _send_to(services.tracking_queue)
        ),
        settings.failures_poison_queue: _Kind(
            f"sent back to {settings.failures_queue}", _failure_blob_names, _send_to(services.failures_queue)
        ),
        BLOB_TRIGGER_POISON_QUEUE: _Kind("its blob recorded", _blob_trigger_blob_names, _record),
    }


def replay_poison(services: Services, prefix: str, report: ItemReport, *, dry_run: bool) -> None:
    """Send every kept poison message (naming a blob under `prefix`) back where it came from."""
    with progress_bar("replay poison", unit="message") as bar:
        for poison_queue, kind in _kinds(services).items():
            kept = services.raw_queue(kept_queue(poison_queue))
            sent: set[bytes] = set()
            staying = []
            for message in _peek(kept) if dry_run else _receive_all(kept):
                if _replay_message(services, kept, kind, message, prefix, sent, report, dry_run=dry_run):
                    staying.append(message)
                bar.update(1)
            if not dry_run:
                _show_again(kept, staying)


def _peek(queue: QueueClient) -> list[QueueMessage]:
    try:
        messages = queue.peek_messages(max_messages=PEEK_LIMIT)
        if len(messages) == PEEK_LIMIT:
            count = queue.get_queue_properties().approximate_message_count
            say(f"{queue.queue_name}: a dry run sees the first {PEEK_LIMIT} of about {count} kept messages only")
    except ResourceNotFoundError:
        return []  # never created: nothing was ever kept
    return messages


def _receive_all(queue: QueueClient) -> Iterator[QueueMessage]:
    """The queue's messages once each (up to MAX_PER_QUEUE), received and hidden page by page; a pass longer than
    VISIBILITY_SECONDS ends where the first messages come back."""
    seen: set[str] = set()
    try:
        for page in receive_pages(queue, limit=MAX_PER_QUEUE, visibility_timeout=VISIBILITY_SECONDS):
            fresh = [message for message in page if message.id not in seen]
            if not fresh:
                return
            seen.update(message.id for message in fresh)
            yield from fresh
    except ResourceNotFoundError:
        return  # never created: nothing was ever kept


def _show_again(queue: QueueClient, messages: list[QueueMessage]) -> None:
    """Make the messages left in place visible again at once, for the next replay (after the pass: seen ones
    coming back during it would end it)."""
    for message in messages:
        with contextlib.suppress(HttpResponseError):  # gone, or its receipt outdated: visible again by itself then
            # By id: given the message itself, the SDK would write its (raw) content back, encoded once more.
            queue.update_message(message.id, pop_receipt=message.pop_receipt, visibility_timeout=0)


def _replay_message(
    services: Services,
    queue: QueueClient,
    kind: _Kind,
    message: QueueMessage,
    prefix: str,
    sent: set[bytes],
    report: ItemReport,
    *,
    dry_run: bool,
) -> bool:
    """Replay one kept message; True when it stays in its queue (malformed, or not under the prefix)."""
    where = f"{queue.queue_name} message {message.id}"
    text = readable_text(message.content)
    try:
        names = kind.blob_names(services, text)
    except ValueError as error:  # schemas.MessageError, RefusedMessageError and JSON errors are ValueErrors
        report.left_behind(
            "malformed, left in place", f"left {where} in place: {error}; read it, then delete it: {clean(text)[:EXCERPT]}"
        )
        return True
    if prefix and not any(name.startswith(prefix) for name in names):
        report.skip("not under the prefix")
        return True
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    if digest in sent:
        if not dry_run:
            queue.delete_message(message.id, message.pop_receipt)
        report.did("repeats dropped", f"{'would drop' if dry_run else 'dropped'} {where}: a repeat of one sent back already")
        return False
    sent.add(digest)
    blobs = ", ".join(names)[:EXCERPT]
    if dry_run:
        report.did("would be sent back", f"would replay {where} ({blobs}): {kind.action}")
        return False
    problem = kind.send(services, text)
    queue.delete_message(message.id, message.pop_receipt)
    if problem:
        report.left_behind("replayed but not routable", f"replayed {where} ({blobs}): {problem}")
    else:
        report.did("sent back", f"replayed {where} ({blobs}): {kind.action}")
    return False
