"""Alert markers: a failure already alerted is not alerted again when its notification comes twice.

Notifications repeat. The blob trigger fires again for a blob whose receipt was not stored before its worker
died, so an unroutable blob is reported twice; the tracker polls an operation again when it died before
settling the poll; a blob submitted twice (see `shared.submission_ledger`) fails twice. Every repeat names
the same blob version (`IngestionSourceId`), error code, failure status and origin, and one person should
get one alert for it.

A marker is one small blob `alerted/<hash of those four>` in STATE_CONTAINER whose text says how far the
alert got: `logged` (the alert log record is written) or `delivered` (the webhook or the digest took it as
well). A repeat of a `delivered` alert is dropped; of a `logged` one, only the delivery is tried again (the
webhook refused it the first time). Each marker is written after its step, so a worker dying between the
step and the marker repeats the step: an alert can, rarely, come twice, but never not at all.
Notifications that name no blob version (a malformed pending message, a poison-queue record) carry no key
and always alert. Markers older than DUPLICATE_WINDOW_SECONDS no longer count and housekeeping deletes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

logger = logging.getLogger(__name__)

PREFIX = "alerted/"
LOGGED = "logged"
DELIVERED = "delivered"
_STATES = (LOGGED, DELIVERED)


def marker_key(notification: Mapping[str, Any]) -> str | None:
    """The marker name of a failure notification, or None when it names no blob version."""
    source_id = notification.get("IngestionSourceId")
    if not source_id:
        return None
    identity = "\x00".join(
        str(notification.get(field) or "") for field in ("IngestionSourceId", "ErrorCode", "FailureStatus", "Origin")
    )
    return PREFIX + hashlib.sha256(identity.encode("utf-8")).hexdigest()[:48]


def _now() -> datetime:
    return datetime.now(UTC)


class AlertMarkers:
    """The markers of one STATE_CONTAINER."""

    def __init__(self, container: ContainerClient, window_seconds: int, clock: Callable[[], datetime] = _now) -> None:
        self._container = container
        self._window = timedelta(seconds=window_seconds)
        self._clock = clock

    def state(self, key: str) -> str | None:
        """`logged`, `delivered`, or None when this failure was not alerted within the window."""
        try:
            downloader = self._container.get_blob_client(key).download_blob()
        except ResourceNotFoundError:
            return None
        text = downloader.readall().decode("utf-8", errors="replace")
        modified = downloader.properties.last_modified
        if text not in _STATES or (modified is not None and modified < self._clock() - self._window):
            return None
        return text

    def mark(self, key: str, state: str) -> None:
        """Record how far the alert got; raises AzureError when storage refuses."""
        blob = self._container.get_blob_client(key)
        try:
            blob.upload_blob(state.encode("utf-8"), overwrite=True)
        except ResourceNotFoundError:
            # The container is missing on first use (a new storage account): create it and write again.
            with contextlib.suppress(ResourceExistsError):
                self._container.create_container()
            blob.upload_blob(state.encode("utf-8"), overwrite=True)

    def forget_expired(self) -> int:
        """Delete markers older than the window (housekeeping); returns how many were deleted."""
        horizon = self._clock() - self._window
        deleted = 0
        try:
            expired = [
                blob.name
                for blob in self._container.list_blobs(name_starts_with=PREFIX)
                if blob.last_modified is not None and blob.last_modified < horizon
            ]
        except ResourceNotFoundError:
            return 0
        for name in expired:
            with contextlib.suppress(ResourceNotFoundError):
                self._container.delete_blob(name)
                deleted += 1
        return deleted
