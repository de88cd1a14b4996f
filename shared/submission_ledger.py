"""The submission ledger: what happened to each recent submission of a blob version, shared by every worker.

Why it exists: recording is at-least-once. A worker that dies after writing a blob's pending message but
before the host stores the blob's receipt fires the trigger again after a restart, and Event Grid redelivers
events, so one blob version can have two pending messages. And a worker can die, or lose Kusto's answer,
after its request reached Kusto: the chunk's pending messages come back although Kusto may have them.
Kusto's REST API has no idempotency key (its only deduplication, `ingest-by:` tags, seals every tagged
request as its own batch), so the drain keeps its own record and checks it before it submits.

Records: three per submission at most, each 25 bytes plus the operation id (state, time in ms, key, id):
* `S` sending, appended BEFORE each try of the request goes out (retries included);
* `N` not accepted, appended when Kusto's answer to a try says it did not take it (429, 5xx, 4xx), so a
  worker that dies while the pipeline waits out a Retry-After leaves no doubt behind;
* `A` accepted, appended once Kusto answered with an operation id and the tracking record is written; it
  carries that operation id (up to 255 bytes; Kusto's ids are opaque), so an operator asking where a blob is
  (`python -m shared.ops status`) learns which operation to ask Kusto about.
A key is the blob's `sourceId` (uuid5 of URL and ETag, so an overwritten blob is a new version), or for a
deliberate resubmission after a failed ingestion uuid5(sourceId, "attempt-N"), never taken for the first.
The drain reads a key's latest record: `A` means a repeat (dropped), `S` means a worker is sending it or
died while sending it (its outcome is unknown once the sender's lease has passed), none or `N` means submit.

Layout: append blobs `ledger/<UTC yyyyMMddHHmm>` in STATE_CONTAINER, one per 5-minute slot. An append
block holds whole records and is atomic, so a reader never sees half of one. The drain reads the last
DUPLICATE_WINDOW_SECONDS; slots are kept for `Settings.state_retention_seconds`, which covers the
reconciliation look-back too, since the ledger is also the durable answer to "was this blob version ever
recorded?" (`shared.reconcile`). Slots of the first format (`submitted/`, 24-byte records without an
operation id) are no longer read; housekeeping deletes them once expired.

Cost: appends are group commits: records that are ready while an append is under way share the next one,
so a drain's concurrent chunks share their `S` and `A` appends. A drain that receives messages lists the
slots once (their sizes) and reads only what other workers appended since it last looked (a cold worker
reads the whole window once). Housekeeping deletes slots older than DUPLICATE_WINDOW_SECONDS.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

PREFIX = "ledger/"
FIRST_FORMAT_PREFIX = "submitted/"
SLOT_SECONDS = 300
HEAD_BYTES = 25  # state (1) + milliseconds since the epoch (7) + key (16) + length of the operation id (1)
MAX_OPERATION_ID_BYTES = 255
_SLOT_FORMAT = "%Y%m%d%H%M"
GROUP_COMMIT_LINGER_SECONDS = 0.003

SENDING = "S"
ACCEPTED = "A"
NOT_ACCEPTED = "N"
_STATE_CODES = {SENDING: 0, NOT_ACCEPTED: 1, ACCEPTED: 2}
_CODE_STATES = {code: state for state, code in _STATE_CODES.items()}


def ledger_key(pending: Mapping[str, Any]) -> bytes:
    """The 16-byte identity of one submission of a blob version: its sourceId, or a derived id for a resubmission."""
    return _key(pending["sourceId"], pending.get("attempt") or 0)


def _key(source_id: str, attempt: int) -> bytes:
    source = uuid.UUID(source_id)
    return (source if attempt == 0 else uuid.uuid5(source, f"attempt-{attempt}")).bytes


def slot_start(moment: float) -> int:
    """The start (epoch seconds) of the slot `moment` falls in."""
    return int(moment // SLOT_SECONDS) * SLOT_SECONDS


def slot_name(start: int) -> str:
    return PREFIX + datetime.fromtimestamp(start, UTC).strftime(_SLOT_FORMAT)


def slot_of_name(name: str, prefix: str = PREFIX) -> int | None:
    """The slot start a blob name stands for, or None for a name the ledger did not write."""
    if not name.startswith(prefix):
        return None
    try:
        return int(datetime.strptime(name.removeprefix(prefix), _SLOT_FORMAT).replace(tzinfo=UTC).timestamp())
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Entry:
    """The latest record of one key: its state and when (epoch milliseconds) it was written."""

    state: str
    millis: int

    @property
    def at(self) -> float:
        return self.millis / 1000

    def supersedes(self, other: Entry | None) -> bool:
        """Whether this record replaces `other`: acceptance is final, else the later one wins (at a tie, `N` over `S`).

        Records reach a worker out of order (its own at once, others' at the next refresh), so the outcome
        must not depend on the order they are applied in.
        """
        if other is None:
            return True
        if other.state == ACCEPTED:
            return False
        if self.state == ACCEPTED or self.millis > other.millis:
            return True
        return self.millis == other.millis and self.state == NOT_ACCEPTED

    def packed(self) -> int:
        """The entry as one int (time and state), how a worker keeps it: a third of the memory of the object."""
        return self.millis << 2 | _STATE_CODES[self.state]

    @classmethod
    def unpack(cls, value: int) -> Entry:
        return cls(_CODE_STATES[value & 3], value >> 2)


def encode(state: str, millis: int, key: bytes, operation_id: str = "") -> bytes:
    """One record; an operation id too long to keep (or not ASCII) is left out, never cut."""
    operation = operation_id.encode("ascii", errors="replace")
    if len(operation) > MAX_OPERATION_ID_BYTES or not operation_id.isascii():
        operation = b""
    return state.encode("ascii") + millis.to_bytes(7, "big") + key + bytes([len(operation)]) + operation


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record: the key, its entry, and the operation id an `A` record carries ("" otherwise)."""

    key: bytes
    entry: Entry
    operation_id: str


def decode(data: bytes) -> tuple[list[Record], int]:
    """The whole records at the start of `data` and how many bytes they take; a record of an unknown state is skipped.

    A record still being appended when `data` was read is left for the next read (the count stops before it).
    """
    records: list[Record] = []
    index = 0
    while index + HEAD_BYTES <= len(data):
        end = index + HEAD_BYTES + data[index + HEAD_BYTES - 1]
        if end > len(data):
            break
        state = chr(data[index])
        if state in _STATE_CODES:
            entry = Entry(state, int.from_bytes(data[index + 1 : index + 8], "big"))
            operation = data[index + HEAD_BYTES : end].decode("ascii", errors="replace")
            records.append(Record(data[index + 8 : index + 24], entry, operation))
        index = end
    return records, index


@dataclass
class _Batch:
    """Records waiting for one append, and how that append went."""

    records: list[bytes] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None


class SubmissionLedger:
    """The ledger of one worker process: the latest record of each key it read or wrote, per slot, and how far it read."""

    def __init__(self, container: ContainerClient, window_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self._container = container
        self._window = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: dict[int, dict[bytes, int]] = {}  # slot start -> key -> packed Entry
        self._read_to: dict[int, int] = {}
        self._existing: set[int] = set()
        self._open = _Batch()
        self._flushing = False

    def lookup(self, key: bytes) -> Entry | None:
        """The latest record of `key` this worker knows, or None."""
        latest: Entry | None = None
        with self._lock:
            for entries in self._slots.values():
                packed = entries.get(key)
                if packed is not None and (entry := Entry.unpack(packed)).supersedes(latest):
                    latest = entry
        return latest

    def age(self, entry: Entry) -> float:
        """Seconds since `entry` was written, by this worker's clock."""
        return self._clock() - entry.at

    def __contains__(self, key: bytes) -> bool:
        return self.lookup(key) is not None

    def next_attempt(self, source_id: str) -> int:
        """The first resubmission attempt of this blob version the ledger has no record of (1 when it has none).

        Reads what is new in the ledger first (raises AzureError), since the drain that sent the last
        attempt may have run in another worker.
        """
        self.refresh()
        attempt = 1
        while _key(source_id, attempt) in self:
            attempt += 1
        return attempt

    def refresh(self) -> None:
        """Read what other workers appended since the last refresh (the whole window the first time); raises AzureError.

        One listing gives every slot's size; only a slot that grew past what this worker read or wrote
        itself is read, from where the worker stopped.
        """
        oldest = slot_start(self._clock() - self._window)
        try:
            listed = list(self._container.list_blobs(name_starts_with=PREFIX))
        except ResourceNotFoundError:
            listed = []  # no container yet: nothing was ever recorded
        sizes = {start: blob.size for blob in listed if (start := slot_of_name(blob.name)) is not None and start >= oldest}
        for start, size in sizes.items():
            if size > self._read_to.get(start, 0):
                self._read_slot(start)
        with self._lock:
            self._existing = set(sizes)
            for start in [start for start in self._slots if start < oldest]:
                del self._slots[start]
                self._read_to.pop(start, None)

    def record(self, state: str, keys: Iterable[bytes], operation_id: str = "") -> None:
        """Append one record per key (an `A` record names its operation); returns once stored, raises AzureError.

        Group commit: records that arrive while an append is under way wait and share the next one, so the
        concurrent chunks of a drain cost one request between them instead of one each.
        """
        millis = int(self._clock() * 1000)
        records = [encode(state, millis, key, operation_id) for key in keys]
        if not records:
            return
        with self._lock:
            batch = self._open
            batch.records.extend(records)
            lead = not self._flushing
            self._flushing = True
        if lead:
            self._flush_until_idle()
        batch.done.wait()
        if batch.error is not None:
            raise batch.error

    def _flush_until_idle(self) -> None:
        """Append open batches one after another until no record is waiting (runs on the thread that found none running).

        The leader lingers a moment before each append: the chunks a drain starts together reach here a
        millisecond or two apart, and waiting for them halves the appends of a drain. Finding nothing left
        to append costs no wait.
        """
        while True:
            with self._lock:
                if not self._open.records:
                    self._flushing = False
                    return
            time.sleep(GROUP_COMMIT_LINGER_SECONDS)
            with self._lock:
                batch, self._open = self._open, _Batch()
            try:
                self._append(b"".join(batch.records))
            except Exception as error:  # handed to every caller of the batch, which raise it
                batch.error = error
            batch.done.set()

    def _append(self, data: bytes) -> None:
        start = slot_start(self._clock())
        blob = self._container.get_blob_client(slot_name(start))
        if start not in self._existing:
            self._create_slot(start)
        try:
            result = blob.append_block(data)
        except ResourceNotFoundError:  # deleted since (a container recreated by hand): create it again
            self._create_slot(start)
            result = blob.append_block(data)
        offset = int(str(result["blob_append_offset"]))
        with self._lock:
            self._existing.add(start)
            self._apply(start, data)
            if self._read_to.get(start, 0) == offset:
                # Nobody appended in between: the next refresh need not read this worker's own records back.
                self._read_to[start] = offset + len(data)

    def _apply(self, start: int, data: bytes) -> None:
        """Merge records into the slot's entries (the caller holds the lock)."""
        entries = self._slots.setdefault(start, {})
        records, _ = decode(data)
        for record in records:
            current = entries.get(record.key)
            if record.entry.supersedes(None if current is None else Entry.unpack(current)):
                entries[record.key] = record.entry.packed()

    def forget_expired(self, keep_seconds: int) -> int:
        """Delete the slot blobs older than `keep_seconds`, of either format (housekeeping); returns how many went."""
        oldest = slot_start(self._clock() - keep_seconds)
        deleted = 0
        for prefix in (PREFIX, FIRST_FORMAT_PREFIX):
            try:
                names = [blob.name for blob in self._container.list_blobs(name_starts_with=prefix)]
            except ResourceNotFoundError:
                return 0
            for name in names:
                start = slot_of_name(name, prefix)
                if start is not None and start < oldest:
                    try:
                        self._container.delete_blob(name)
                    except ResourceNotFoundError:
                        continue
                    deleted += 1
        return deleted

    def history(self, key: bytes, since: float) -> list[Record]:
        """Every record of `key` in the slots from `since` (epoch seconds) on, oldest first; raises AzureError.

        For an operator's question about one blob (`shared.ops.status`): it reads each slot whole, unlike the
        drain's incremental `refresh`, and keeps nothing.
        """
        oldest = slot_start(since)
        try:
            names = sorted(
                blob.name
                for blob in self._container.list_blobs(name_starts_with=PREFIX)
                if (start := slot_of_name(blob.name)) is not None and start >= oldest
            )
        except ResourceNotFoundError:
            return []
        found: list[Record] = []
        for name in names:
            try:
                data = self._container.get_blob_client(name).download_blob().readall()
            except ResourceNotFoundError:
                continue
            records, _ = decode(data)
            found.extend(record for record in records if record.key == key)
        return sorted(found, key=lambda record: record.entry.millis)

    def _create_slot(self, start: int) -> None:
        blob = self._container.get_blob_client(slot_name(start))
        try:
            blob.create_append_blob(match_condition=MatchConditions.IfMissing)
        except ResourceExistsError:
            return  # another writer created it first
        except ResourceNotFoundError:
            # The container itself is missing (a new storage account): create it, then the slot.
            with contextlib.suppress(ResourceExistsError):
                self._container.create_container()
            with contextlib.suppress(ResourceExistsError):
                blob.create_append_blob(match_condition=MatchConditions.IfMissing)

    def _read_slot(self, start: int) -> None:
        offset = self._read_to.get(start, 0)
        try:
            data = self._container.get_blob_client(slot_name(start)).download_blob(offset=offset).readall()
        except ResourceNotFoundError:
            return
        except HttpResponseError as error:
            if error.status_code == 416:  # nothing appended since the last read
                return
            raise
        _, whole = decode(data)
        with self._lock:
            self._apply(start, data[:whole])  # whole records only: one still being appended is read next time
            self._read_to[start] = offset + whole
