"""Folds repeated failures of one (database, table, error code) into one webhook alert per window.

A bad deployment (a dropped table, a wrong mapping) fails every blob the same way; a webhook message per
blob would bury the one that matters. So the first failure of a key alerts at once and opens a window;
later failures of that key within the window are only counted, and when the window has closed the
housekeeping timer sends ONE digest with the count and sample blobs. Nothing is ever folded into nothing:
a failure either opens a window (and is sent) or is counted in a window that is flushed later.

State is one small JSON blob per open window in `STATE_CONTAINER`, so it survives restarts and is
shared by every worker. Every write is conditional on the ETag read just before (optimistic concurrency):
two workers counting at once cannot lose a count, the loser re-reads and tries again. The queue message id
of each counted failure is kept, so a message the queue trigger retries is not counted twice, and the
message that opened a window is sent again when it is retried (its first send may have failed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.times import iso_utc, parse_time

logger = logging.getLogger(__name__)

PREFIX = "digest/"
MAX_SAMPLES = 10
MAX_REMEMBERED_IDS = 1000
# Optimistic-concurrency rounds before giving up; the queue trigger then retries the message.
MAX_CONFLICTS = 20


class DigestContentionError(RuntimeError):
    """The digest state kept changing under us; the failure message is retried by the queue trigger."""


@dataclass(frozen=True)
class DueDigest:
    """A closed window with counted failures: what to send, and the state version it was read from."""

    blob_name: str
    etag: str
    state: Mapping[str, Any]

    @property
    def count(self) -> int:
        return int(self.state["count"])


def digest_key(dimensions: Mapping[str, Any]) -> str:
    """Blob name of the window for this alert's (database, table, error code)."""
    raw = "\x00".join(str(dimensions.get(k, "")) for k in ("database", "table", "errorCode"))
    return PREFIX + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:40] + ".json"


def _sample(dimensions: Mapping[str, Any]) -> str:
    return str(dimensions.get("blobPath") or dimensions.get("blobName") or dimensions.get("operationId") or "?")


class DigestBook:
    """The digest windows of one storage container."""

    def __init__(self, container: ContainerClient, window_seconds: int) -> None:
        self._container = container
        self._window = timedelta(seconds=window_seconds)

    def _read(self, name: str) -> tuple[dict[str, Any] | None, str | None]:
        try:
            downloader = self._container.get_blob_client(name).download_blob()
        except ResourceNotFoundError:
            return None, None
        return json.loads(downloader.readall()), downloader.properties.etag

    def _write(self, name: str, state: Mapping[str, Any], etag: str | None) -> bool:
        """Write `state` only if the blob is still at `etag` (or still absent when etag is None)."""
        data = json.dumps(state, separators=(",", ":")).encode("utf-8")
        blob = self._container.get_blob_client(name)
        try:
            if etag is None:
                blob.upload_blob(data, overwrite=False)
            else:
                blob.upload_blob(data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except ResourceNotFoundError:
            # The container is missing on first use: create it, then let the caller read again.
            with contextlib.suppress(ResourceExistsError):
                self._container.create_container()
            return False
        return True

    def record(self, dimensions: Mapping[str, Any], message_id: str, now: datetime) -> bool:
        """Count this alert; True when it must be sent now (it opens a window, or it is the retried opener)."""
        name = digest_key(dimensions)
        for _ in range(MAX_CONFLICTS):
            state, etag = self._read(name)
            if state is None or (now >= parse_time(state["windowEnd"]) and state["count"] == 0):
                fresh = {
                    "database": dimensions.get("database", ""),
                    "table": dimensions.get("table", ""),
                    "errorCode": dimensions.get("errorCode", ""),
                    "windowStart": iso_utc(now),
                    "windowEnd": iso_utc(now + self._window),
                    "opener": message_id,
                    "first": dict(dimensions),
                    "count": 0,
                    "samples": [],
                    "counted": [],
                }
                if self._write(name, fresh, etag):
                    return True
                continue
            if state["opener"] == message_id:
                return True
            if message_id in state["counted"]:
                return False
            state["count"] += 1
            if len(state["samples"]) < MAX_SAMPLES:
                state["samples"].append(_sample(dimensions))
            state["counted"] = [*state["counted"], message_id][-MAX_REMEMBERED_IDS:]
            if self._write(name, state, etag):
                logger.info(
                    "failure %s on %s.%s counted in digest (%d so far)",
                    state["errorCode"],
                    state["database"],
                    state["table"],
                    state["count"],
                )
                return False
        raise DigestContentionError(f"digest state {name} changed {MAX_CONFLICTS} times while counting; retrying the message")

    def due(self, now: datetime) -> Iterator[DueDigest]:
        """Closed windows holding counted failures; closed empty windows are removed on the way."""
        try:
            names = [item.name for item in self._container.list_blobs(name_starts_with=PREFIX)]
        except ResourceNotFoundError:
            return
        for name in names:
            state, etag = self._read(name)
            if state is None or now < parse_time(state["windowEnd"]):
                continue
            if state["count"] > 0:
                yield DueDigest(name, str(etag), state)
                continue
            try:
                self._container.delete_blob(name, etag=etag, match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError):
                logger.debug("digest window %s changed while being removed; next run looks again", name)

    def settle(self, sent: DueDigest) -> None:
        """Forget the failures a sent digest stood for; failures counted meanwhile stay for the next digest."""
        state: Mapping[str, Any] | None = sent.state
        etag: str | None = sent.etag
        for _ in range(MAX_CONFLICTS):
            if state is None:
                return
            remaining = state["count"] - sent.count
            if remaining <= 0:
                try:
                    self._container.delete_blob(sent.blob_name, etag=etag, match_condition=MatchConditions.IfNotModified)
                    return
                except ResourceNotFoundError:
                    return
                except ResourceModifiedError:
                    pass
            elif self._write(
                sent.blob_name, {**state, "count": remaining, "samples": state["samples"][len(sent.state["samples"]) :]}, etag
            ):
                return
            state, etag = self._read(sent.blob_name)
        raise DigestContentionError(f"digest state {sent.blob_name} changed {MAX_CONFLICTS} times while settling")
