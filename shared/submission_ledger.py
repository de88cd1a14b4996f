"""The submission ledger: which blob versions Kusto accepted recently, so a second pending message for one is dropped.

Why it exists: recording is at-least-once. A worker that dies after writing a blob's pending message but
before the host stores the blob's receipt fires the trigger again after a restart, and Event Grid redelivers
events, so one blob version can have two pending messages. When both meet in one drain the batching folds
them (`shared.batching`); when they do not (one copy was held by a run that died and only comes back after
its visibility timeout), both would be submitted and the blob's rows would land twice. The ledger is what
the later drain checks before submitting.

Layout: append blobs `submitted/<UTC yyyyMMddHHmm>` in STATE_CONTAINER, one per 5-minute slot. Each append
block is the 16-byte keys of one accepted chunk (an append block is atomic, so a reader never sees half a
key). A key is the blob's `sourceId` (uuid5 of URL and ETag, so an overwritten blob is a new version), or
for the tracker's deliberate resubmission after a transient failure uuid5(sourceId, "attempt-N"), which is
never taken for a duplicate of the first attempt.

Cost: at most one append per accepted chunk, fewer when chunks finish together (group commit). A drain
that receives messages lists the slots once (their sizes) and reads only what other workers appended since
it last looked (a cold worker reads the whole window once). Housekeeping deletes slots older than
DUPLICATE_WINDOW_SECONDS.

What it cannot close: a worker that dies after Kusto accepted a chunk but before the append (one storage
request) leaves no entry, and the chunk's blobs are submitted again when their messages come back.
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

PREFIX = "submitted/"
SLOT_SECONDS = 300
KEY_BYTES = 16
_SLOT_FORMAT = "%Y%m%d%H%M"


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


def slot_of_name(name: str) -> int | None:
    """The slot start a blob name stands for, or None for a name the ledger did not write."""
    try:
        return int(datetime.strptime(name.removeprefix(PREFIX), _SLOT_FORMAT).replace(tzinfo=UTC).timestamp())
    except ValueError:
        return None


@dataclass
class _Batch:
    """Keys of the chunks waiting for one append, and how that append went."""

    keys: list[bytes] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None


class SubmissionLedger:
    """The ledger of one worker process: the keys it has read and written, per slot, and how far it read each slot."""

    def __init__(self, container: ContainerClient, window_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self._container = container
        self._window = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[int, set[bytes]] = {}
        self._read_to: dict[int, int] = {}
        self._existing: set[int] = set()
        self._open = _Batch()
        self._flushing = False

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            return any(key in keys for keys in self._keys.values())

    def next_attempt(self, source_id: str) -> int:
        """The first resubmission attempt of this blob version the ledger has not seen accepted (1 when none was).

        Reads what is new in the ledger first (raises AzureError), since the drain that accepted the last
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
            for start in [start for start in self._keys if start < oldest]:
                del self._keys[start]
                self._read_to.pop(start, None)

    def record(self, keys: Iterable[bytes]) -> None:
        """Append the keys of one accepted chunk; returns once they are stored, raises AzureError when storage refuses.

        Group commit: chunks that finish while an append is under way wait and share the next one, so the
        concurrent chunks of a drain cost one request between them instead of one each.
        """
        keys = list(keys)
        if not keys:
            return
        with self._lock:
            batch = self._open
            batch.keys.extend(keys)
            lead = not self._flushing
            self._flushing = True
        if lead:
            self._flush_until_idle()
        batch.done.wait()
        if batch.error is not None:
            raise batch.error

    def _flush_until_idle(self) -> None:
        """Append open batches one after another until no chunk is waiting (runs on the thread that found none running)."""
        while True:
            with self._lock:
                batch = self._open
                if not batch.keys:
                    self._flushing = False
                    return
                self._open = _Batch()
            try:
                self._append(batch.keys)
            except Exception as error:  # handed to every chunk of the batch, which raise it
                batch.error = error
            batch.done.set()

    def _append(self, keys: list[bytes]) -> None:
        start = slot_start(self._clock())
        blob = self._container.get_blob_client(slot_name(start))
        data = b"".join(keys)
        if start not in self._existing:
            self._create_slot(start)
        try:
            result = blob.append_block(data)
        except ResourceNotFoundError:  # deleted since (a container recreated by hand): create it again
            self._create_slot(start)
            result = blob.append_block(data)
        offset = int(result["blob_append_offset"])
        with self._lock:
            self._existing.add(start)
            self._keys.setdefault(start, set()).update(keys)
            if self._read_to.get(start, 0) == offset:
                # Nobody appended in between: the next refresh need not read this worker's own keys back.
                self._read_to[start] = offset + len(data)

    def forget_expired(self) -> int:
        """Delete the slot blobs that left the window (housekeeping); returns how many were deleted."""
        oldest = slot_start(self._clock() - self._window)
        deleted = 0
        try:
            names = [blob.name for blob in self._container.list_blobs(name_starts_with=PREFIX)]
        except ResourceNotFoundError:
            return 0
        for name in names:
            start = slot_of_name(name)
            if start is not None and start < oldest:
                try:
                    self._container.delete_blob(name)
                except ResourceNotFoundError:
                    continue
                deleted += 1
        return deleted

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
        whole = len(data) - len(data) % KEY_BYTES
        keys = {data[index : index + KEY_BYTES] for index in range(0, whole, KEY_BYTES)}
        with self._lock:
            self._keys.setdefault(start, set()).update(keys)
            self._read_to[start] = offset + whole
