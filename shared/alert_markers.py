"""Alert markers: a failure already alerted is not alerted again when its notification comes twice.

Notifications repeat. The blob trigger fires again for a blob whose receipt was not stored before its worker
died, so an unroutable blob is reported twice; the tracker polls an operation again when it died before
settling the poll; a blob submitted twice (see `shared.submission_ledger`) fails twice. Every repeat names
the same blob version (`IngestionSourceId`), error code, failure status and origin, and one person should
get one alert for it, even when the repeats reach the failure queue trigger at the same moment.

A marker is one small blob `alerted/<IngestionSourceId>/<hash of those four>` in STATE_CONTAINER whose text
says how far the alert got: `claimed` (a worker is alerting now), `logged` (the alert log record is written,
the webhook refused it) or `delivered` (the webhook or the digest took it as well, or there is no webhook).
Its metadata (`marker_facts`, written with each write, so at no extra cost) keeps what the alert said: error
code, failure status, origin, operation, target and the first part of the details. So one listing of
`alerted/<source id>/` answers "was this blob version alerted, and why" (`shared.ops.status`), and one listing
of `alerted/` tells the reconciler every blob version that ended in an alert (`shared.reconcile`).

The marker is claimed before anything is alerted: the first worker creates it as `claimed` with a write
that succeeds only if the blob is absent, so of several workers racing on one failure exactly one wins.
The winner writes the log record, delivers, then writes `delivered`; when the delivery fails it writes
`logged` and the queue trigger retries its message, which then only delivers. A worker that loses the
race, or comes later, reads the marker:
* `delivered`: a repeat, dropped; `logged`: only the delivery is tried again;
* `claimed` less than CLAIM_LEASE_SECONDS old: the owner may be alive and still alerting, so the
  notification is held back (the caller puts a copy back on the failures queue, invisible until the lease
  ends) and judged again then, when it is normally a repeat of a `delivered` alert;
* `claimed` older than the lease: its owner died mid-way. The claim is taken over with a write conditional
  on the marker's ETag, so only one worker takes it, and the alert is raised again: an alert can, rarely,
  come twice (an owner dying between its log record and `delivered`, or outliving its lease), but never
  not at all.
A marker older than DUPLICATE_WINDOW_SECONDS, or whose text is none of the three, counts as absent and is
claimed in the same conditional way; housekeeping deletes markers older than `Settings.state_retention_seconds`
(only if unchanged since listed).
Notifications that name no blob version (a malformed pending message, a poison-queue record) carry no key
and always alert.

Cost: a first alert is one conditional create and one overwrite (`delivered`); a repeat is a refused create
and one read; a failed delivery adds one write (`logged`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

logger = logging.getLogger(__name__)

PREFIX = "alerted/"
DETAILS_KEPT = 1024
"""Characters of an alert's details kept in its marker's metadata (the whole text is in the alert itself)."""
_FACTS = {
    "errorcode": "ErrorCode",
    "failurestatus": "FailureStatus",
    "origin": "Origin",
    "operationid": "OperationId",
    "database": "Database",
    "table": "Table",
    "failedon": "FailedOn",
    "details": "Details",
}
CLAIMED = "claimed"
LOGGED = "logged"
DELIVERED = "delivered"
_STATES = (CLAIMED, LOGGED, DELIVERED)

HELD = "held"
"""`Claim.outcome` when another worker holds a live claim: the caller holds its notification back."""
WON = "won"
"""`Claim.outcome` when the caller holds the claim: it alerts."""

CLAIM_LEASE_SECONDS = 120
"""How long a `claimed` marker protects its owner. It must outlast the owner's log record and one delivery:
the webhook's pipeline takes at most 4 tries x (5 s connect + 15 s read) + 3.5 s of back-off, about 84 s,
plus the digest's few storage calls. An owner slower than that (a webhook answering 429 with a long
Retry-After) is taken over and its alert may come twice; a shorter lease would make that likelier, a longer
one only delays the repeats held back behind a dead owner."""

_CLAIM_TRIES = 4


@dataclass(frozen=True)
class Claim:
    """What `AlertMarkers.claim` found, so what the caller does next.

    `outcome`: WON (alert: log, deliver, mark), LOGGED (deliver only), DELIVERED (drop the repeat) or HELD
    (another worker is alerting now: look again in `wait` seconds). `taken_over` is CLAIMED when the caller
    won by taking over the claim of an owner that outlived its lease (None when the marker was absent,
    expired or unreadable); `age` is the age in seconds of the marker found.
    """

    outcome: str
    wait: float = 0.0
    taken_over: str | None = None
    age: float = 0.0


@dataclass(frozen=True)
class _Marker:
    state: str | None
    """`claimed`, `logged` or `delivered`; None when expired or unreadable (counts as absent)."""
    etag: str
    age: float
    """Seconds since the marker was last written, by this worker's clock, at least (it may be 1 s more)."""


def marker_key(notification: Mapping[str, Any]) -> str | None:
    """The marker name of a failure notification, or None when it names no blob version."""
    source_id = notification.get("IngestionSourceId")
    if not source_id:
        return None
    identity = "\x00".join(
        str(notification.get(field) or "") for field in ("IngestionSourceId", "ErrorCode", "FailureStatus", "Origin")
    )
    return f"{PREFIX}{source_id}/{hashlib.sha256(identity.encode('utf-8')).hexdigest()[:48]}"


def marker_facts(notification: Mapping[str, Any]) -> dict[str, str]:
    """What a marker keeps of its alert, as blob metadata (percent-encoded: metadata values must be ASCII)."""
    facts = {name: str(notification.get(field) or "") for name, field in _FACTS.items()}
    facts["details"] = facts["details"][:DETAILS_KEPT]
    return {name: urllib.parse.quote(value, safe=" /:;,.()'=@+-_") for name, value in facts.items() if value}


@dataclass(frozen=True)
class AlertFacts:
    """One alert raised for a blob version, as its marker keeps it (`AlertMarkers.alerts_of`)."""

    state: str
    written: datetime | None
    facts: Mapping[str, str]
    """`marker_facts`' names (errorcode, failurestatus, origin, operationid, database, table, failedon, details)."""


def _now() -> datetime:
    return datetime.now(UTC)


class AlertMarkers:
    """The markers of one STATE_CONTAINER."""

    def __init__(
        self,
        container: ContainerClient,
        window_seconds: int,
        clock: Callable[[], datetime] = _now,
        lease_seconds: float = CLAIM_LEASE_SECONDS,
    ) -> None:
        self._container = container
        self._window = timedelta(seconds=window_seconds)
        self._clock = clock
        self._lease = lease_seconds

    def state(self, key: str) -> str | None:
        """`claimed`, `logged`, `delivered`, or None when this failure was not alerted within the window."""
        marker = self._read(key)
        return None if marker is None else marker.state

    def claim(self, key: str, facts: Mapping[str, str] | None = None) -> Claim:
        """Claim the marker before alerting, atomically; the Claim says what the caller does.

        Raises AzureError when storage fails, or when the marker keeps changing under the caller.
        """
        for _ in range(_CLAIM_TRIES):
            if self._create(key, facts):
                return Claim(WON)
            marker = self._read(key)
            if marker is None:
                continue  # deleted since (housekeeping): create it again
            if marker.state in (LOGGED, DELIVERED):
                return Claim(marker.state, age=marker.age)
            if marker.state == CLAIMED and marker.age < self._lease:
                return Claim(HELD, wait=self._lease - marker.age, age=marker.age)
            # Expired, unreadable, or a claim whose owner outlived its lease: take it over unless someone else
            # changed it since it was read (then read again: it is now a live claim, most likely).
            if self._replace(key, marker.etag, facts):
                return Claim(WON, taken_over=marker.state, age=marker.age)
        raise AzureError(f"alert marker {key} changed {_CLAIM_TRIES} times while being claimed")

    def mark(self, key: str, state: str, facts: Mapping[str, str] | None = None) -> None:
        """Record how far the claimed alert got (the owner's plain overwrite); raises AzureError when storage refuses."""
        blob = self._container.get_blob_client(key)
        metadata = _metadata(state, facts)
        try:
            blob.upload_blob(state.encode("utf-8"), overwrite=True, metadata=metadata)
        except ResourceNotFoundError:
            # The container is missing on first use (a new storage account): create it and write again.
            with contextlib.suppress(ResourceExistsError):
                self._container.create_container()
            blob.upload_blob(state.encode("utf-8"), overwrite=True, metadata=metadata)

    def alerted_versions(self) -> set[str]:
        """The source ids of every blob version a kept marker names (one listing, no blob read); raises AzureError."""
        try:
            names = self._container.list_blob_names(name_starts_with=PREFIX)
            return {name[len(PREFIX) :].partition("/")[0] for name in names if name.count("/") == 2}
        except ResourceNotFoundError:
            return set()

    def alerts_of(self, source_id: str) -> list[AlertFacts]:
        """Every kept alert of one blob version, oldest first (one listing); raises AzureError."""
        try:
            blobs = list(self._container.list_blobs(name_starts_with=f"{PREFIX}{source_id}/", include=["metadata"]))
        except ResourceNotFoundError:
            return []
        found = [
            AlertFacts(
                state=(blob.metadata or {}).get("state", ""),
                written=blob.last_modified,
                facts={name: urllib.parse.unquote(value) for name, value in (blob.metadata or {}).items() if name != "state"},
            )
            for blob in blobs
        ]
        return sorted(found, key=lambda alert: alert.written or datetime.min.replace(tzinfo=UTC))

    def forget_expired(self, keep_seconds: int) -> int:
        """Delete markers older than `keep_seconds` (housekeeping); returns how many were deleted.

        A marker re-claimed after it was listed is kept: the delete holds only for the ETag listed.
        """
        horizon = self._clock() - timedelta(seconds=keep_seconds)
        deleted = 0
        try:
            expired = [
                (blob.name, blob.etag)
                for blob in self._container.list_blobs(name_starts_with=PREFIX)
                if blob.last_modified is not None and blob.last_modified < horizon
            ]
        except ResourceNotFoundError:
            return 0
        for name, etag in expired:
            with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):
                self._container.delete_blob(name, etag=etag, match_condition=MatchConditions.IfNotModified)
                deleted += 1
        return deleted

    def _read(self, key: str) -> _Marker | None:
        """The marker with its ETag and age; None when there is none."""
        try:
            downloader = self._container.get_blob_client(key).download_blob()
        except ResourceNotFoundError:
            return None
        text = downloader.readall().decode("utf-8", errors="replace")
        modified = downloader.properties.last_modified
        # Storage keeps the time in whole seconds: count from the end of that second, so that a claim is never
        # judged older than it is (taken over early) and a held-back copy never comes back early.
        age = 0.0 if modified is None else (self._clock() - modified).total_seconds() - 1
        state = text if text in _STATES and age <= self._window.total_seconds() else None
        return _Marker(state, str(downloader.properties.etag), age)

    def _create(self, key: str, facts: Mapping[str, str] | None) -> bool:
        """Write `claimed` if the marker is absent; False when it exists."""
        blob = self._container.get_blob_client(key)
        data = CLAIMED.encode("utf-8")
        metadata = _metadata(CLAIMED, facts)
        try:
            blob.upload_blob(data, overwrite=False, metadata=metadata)
        except ResourceExistsError:
            return False
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                self._container.create_container()
            try:
                blob.upload_blob(data, overwrite=False, metadata=metadata)
            except ResourceExistsError:
                return False
        return True

    def _replace(self, key: str, etag: str, facts: Mapping[str, str] | None) -> bool:
        """Write `claimed` over the marker only if it is still at `etag`; False when it changed or went."""
        blob = self._container.get_blob_client(key)
        try:
            blob.upload_blob(
                CLAIMED.encode("utf-8"),
                overwrite=True,
                metadata=_metadata(CLAIMED, facts),
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True


def _metadata(state: str, facts: Mapping[str, str] | None) -> dict[str, str]:
    """A marker's metadata: its state (so a listing shows it without reading the blob) and its alert's facts."""
    return {**(facts or {}), "state": state}
