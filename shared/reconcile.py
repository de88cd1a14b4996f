"""Reconciliation (timer body): a staged blob whose event never came is recorded anyway, and said so.

The blob trigger records a blob when its event arrives. Events can be lost: Event Grid drops one it could not
deliver for 24 hours when no dead-letter container is set, a subscription created after the blob landed never
sends one, and a polling trigger may miss a blob written while the host was away long enough. Such a blob
would never be ingested and never alerted. So every RECONCILE_SCHEDULE tick this timer lists the staging
container, takes each blob last modified between RECONCILE_LOOKBACK_SECONDS and RECONCILE_GRACE_SECONDS ago
(the grace leaves time for the event, and for the drain, to do their work first), and records each blob
version the app has never recorded exactly as the blob trigger would have (`shared.recorder.record_blob`),
logging a WARNING `Reconcile_Recovered` that names it.

"Has the app recorded this blob version?" is answered from state the app keeps anyway, so the happy path pays
nothing for it (docs/architecture.md, "Accounting"):
* the submission ledger (`shared.submission_ledger`) has a record of every version that was ever submitted,
  kept for `Settings.state_retention_seconds`, which covers the look-back;
* the alert markers (`shared.alert_markers`), kept as long, name every version that ended in an alert instead
  (an unroutable blob, a poisoned message), in their blob names: one listing reads them all.
A version in neither was never recorded, or was recorded and still waits in the pending queue past the grace
(a drain backlog); recording that one again only adds a repeat the drain drops (the ledger), so an unsure
answer costs a duplicate message, never a duplicate ingestion, and never silence.

Cost per run: the staging listing (one request per 5,000 blobs), the ledger's listing plus the slots that grew
since this worker last read them, one listing of the markers, and the recording of what it recovers. At most
MAX_RECOVERED_PER_RUN blobs are recorded per run, so a container full of old blobs (use `backfill` for those)
never outlasts the function's timeout; the next run takes the rest.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from azure.storage.blob import BlobProperties

from shared.error_codes import RECONCILE_RECOVERED
from shared.recorder import RecordResult, record_blob
from shared.staging_area import source_id

if TYPE_CHECKING:
    from shared.services import Services

logger = logging.getLogger(__name__)

MAX_RECOVERED_PER_RUN = 2000


@dataclass(frozen=True)
class RecordedVersions:
    """Which blob versions the app has recorded, as far back as the state it keeps reaches."""

    services: Services
    alerted: frozenset[str]

    def knows(self, blob: BlobProperties) -> bool:
        """Whether this listed blob version was submitted or alerted (by its source id)."""
        version = version_id(self.services, blob)
        return uuid.UUID(version).bytes in self.services.recorded_ledger or version in self.alerted


def recorded_versions(services: Services) -> RecordedVersions:
    """Read what is new in the ledger over the look-back, and the markers' names; raises AzureError."""
    services.recorded_ledger.refresh()
    return RecordedVersions(services, frozenset(services.alert_markers.alerted_versions()))


def version_id(services: Services, blob: BlobProperties) -> str:
    """The source id the blob trigger gives this listed version (a listing's ETag comes without its quotes)."""
    etag = blob.etag if blob.etag.startswith('"') else f'"{blob.etag}"'
    return source_id(services.blob_service.get_blob_client(services.staging.container, blob.name).url, etag)


def modified_within(blob: BlobProperties, since: datetime | None, until: datetime | None) -> bool:
    """Whether a listed blob was last modified within [since, until); None leaves that end open."""
    modified = blob.last_modified
    if modified is None:
        return since is None and until is None
    return (since is None or modified >= since) and (until is None or modified < until)


def staged_blobs(
    services: Services, *, prefix: str = "", modified_since: datetime | None = None, modified_until: datetime | None = None
) -> Iterator[BlobProperties]:
    """The staging container's blobs under `prefix` last modified within [since, until), in name order."""
    container = services.blob_service.get_container_client(services.staging.container)
    for blob in container.list_blobs(name_starts_with=prefix or None):
        if modified_within(blob, modified_since, modified_until):
            yield blob


def record_listed_blob(services: Services, blob: BlobProperties) -> RecordResult:
    """Record one listed blob as the blob trigger would (the client is built, not used, before its name is checked).

    The trigger rejects a name it refuses before reading the blob, so its notification names no version; here the
    listing gave the ETag, and the version's id lets the alert marker stop the next run from alerting it again.
    """
    client = services.blob_service.get_blob_client(services.staging.container, blob.name)
    return record_blob(client, services, listed_source_id=version_id(services, blob))


@dataclass
class ReconcileReport:
    """What one run found: blobs looked at in the window, versions already recorded, and those it recorded."""

    in_window: int = 0
    known: int = 0
    recovered: int = 0
    left_for_next_run: int = 0


def reconcile_staging(services: Services, now: datetime | None = None) -> ReconcileReport:
    """Record every blob version in the look-back window the app never recorded (the timer's body)."""
    settings = services.settings
    now = now or datetime.now(UTC)
    since = now - timedelta(seconds=settings.reconcile_lookback_seconds)
    until = now - timedelta(seconds=settings.reconcile_grace_seconds)
    versions = recorded_versions(services)
    report = ReconcileReport()
    for blob in staged_blobs(services, modified_since=since, modified_until=until):
        report.in_window += 1
        if versions.knows(blob):
            report.known += 1
            continue
        if report.recovered >= MAX_RECOVERED_PER_RUN:
            report.left_for_next_run += 1
            continue
        result = record_listed_blob(services, blob)
        report.recovered += 1
        _log_recovered(services, blob, result)
    logger.info(
        "reconciliation: %d staged blobs modified in the window, %d already recorded, %d recovered%s",
        report.in_window,
        report.known,
        report.recovered,
        f", {report.left_for_next_run} left for the next run" if report.left_for_next_run else "",
    )
    return report


def _log_recovered(services: Services, blob: BlobProperties, result: RecordResult) -> None:
    path = f"{services.settings.staging_container}/{blob.name}"
    logger.warning(
        RECONCILE_RECOVERED + " blob %r (modified %s) was never submitted or alerted, so its event was lost (or its "
        "pending message waited past RECONCILE_GRACE_SECONDS, and the drain drops this repeat): recorded now%s",
        path,
        blob.last_modified.isoformat() if blob.last_modified else "?",
        f"; it could not be routed ({result.error_code}), which alerts on its own" if result.error_code else "",
        extra={
            "custom_dimensions": {
                "errorCode": RECONCILE_RECOVERED,
                "blobName": blob.name,
                "sourceId": result.message.get("sourceId") or result.message.get("IngestionSourceId", ""),
                "outcome": result.outcome,
            }
        },
    )
