"""Pure: cut pending blobs into requests Kusto accepts and the app can track.

A queued-ingestion request names one table and one set of ingestion properties for all its blobs, so
pending blobs are grouped by (database, table, canonical properties) and each group is cut into chunks:

* at most `max_blobs` blobs (the effective batch size: the server's maxBlobsPerBatch, 20 by the docs);
* no two blobs with the same URL (the service rejects a request that names a blob twice);
* at most `max_bytes` of pending messages, because the chunk's tracking record carries every pending
  message and must fit in one queue message (64 KiB after base64);
* a blob whose message says `submitAlone` (a request holding it failed with a server error) gets a chunk
  of its own, so one blob the service cannot take does not fail the others again;
* a message with the same `sourceId` as one already in the chunk (the same blob version recorded twice,
  e.g. a redelivered Event Grid event) is not sent again: it rides along as a duplicate and is settled
  with the chunk, so one blob version is ingested once.

Order is kept: within a group, blobs go to the first chunk they fit in, in arrival order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

TRACKING_RECORD_BYTES = 45_000
"""Budget for the pending messages of one chunk: 48 KiB of JSON is 64 KiB of base64, minus the envelope."""


class PendingLike(Protocol):
    """What batching needs from a received pending message: its parsed body and its size in bytes."""

    @property
    def pending(self) -> Mapping[str, Any]: ...

    @property
    def size(self) -> int: ...


T = TypeVar("T", bound=PendingLike)


@dataclass(frozen=True)
class Chunk(Generic[T]):
    """One request's worth of blobs for one target; `duplicates` are settled with it but not submitted."""

    database: str
    table: str
    properties: Mapping[str, Any]
    items: tuple[T, ...]
    duplicates: tuple[T, ...] = ()

    @property
    def target(self) -> tuple[str, str]:
        return (self.database, self.table)


@dataclass
class _OpenChunk(Generic[T]):
    items: list[T] = field(default_factory=list)
    duplicates: list[T] = field(default_factory=list)
    urls: set[str] = field(default_factory=set)
    size: int = 0
    alone: bool = False


def canonical_properties(properties: Mapping[str, Any]) -> str:
    """The ingestion properties as canonical JSON (sorted keys): equal properties, equal text."""
    return json.dumps(properties, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def group_key(pending: Mapping[str, Any]) -> tuple[str, str, str]:
    """(database, table, canonical properties): blobs that can share one request."""
    return (pending["database"], pending["table"], canonical_properties(pending["properties"]))


def make_chunks(items: Iterable[T], max_blobs: int, max_bytes: int = TRACKING_RECORD_BYTES) -> list[Chunk[T]]:
    """Group `items` by target and properties, then cut each group into chunks (rules in the module docstring)."""
    if max_blobs < 1:
        raise ValueError(f"max_blobs must be at least 1, not {max_blobs}")
    groups: dict[tuple[str, str, str], list[T]] = {}
    for item in items:
        groups.setdefault(group_key(item.pending), []).append(item)
    chunks: list[Chunk[T]] = []
    for (database, table, _), members in groups.items():
        open_chunks: list[_OpenChunk[T]] = []
        chunk_of_source: dict[str, _OpenChunk[T]] = {}
        for item in members:
            source_id = item.pending["sourceId"]
            if source_id in chunk_of_source:
                chunk_of_source[source_id].duplicates.append(item)
                continue
            url = item.pending["blobUrl"]
            alone = bool(item.pending.get("submitAlone"))
            target = None
            if not alone:
                target = next((chunk for chunk in open_chunks if _fits(chunk, url, item.size, max_blobs, max_bytes)), None)
            if target is None:
                target = _OpenChunk(alone=alone)
                open_chunks.append(target)
            target.items.append(item)
            target.urls.add(url)
            target.size += item.size
            chunk_of_source[source_id] = target
        properties = members[0].pending["properties"]
        chunks.extend(Chunk(database, table, properties, tuple(chunk.items), tuple(chunk.duplicates)) for chunk in open_chunks)
    return chunks


def _fits(chunk: _OpenChunk[Any], url: str, size: int, max_blobs: int, max_bytes: int) -> bool:
    if chunk.alone or len(chunk.items) >= max_blobs or url in chunk.urls:
        return False
    # An empty chunk takes any one blob, however large: it must go somewhere.
    return not chunk.items or chunk.size + size <= max_bytes
