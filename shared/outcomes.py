"""What happens to a staged blob once Kusto has said how its ingestion ended.

* Succeeded: with `DELETE_ON_SUCCESS` the staging blob is deleted (only the version that was ingested: the
  delete is conditional on the ETag recorded when the blob landed, so a newer upload of the same name stays).
* Failed, transient (`FailureStatus` Transient): the blob's pending message goes back to the pending queue
  with `attempt + 1`, up to `RESUBMIT_MAX_ATTEMPTS` times; no alert, since the next attempt may succeed.
* Failed, permanent, or transient with no attempts left (reported as `Exhausted`): with
  `QUARANTINE_CONTAINER` the blob is copied server-side to that container (same path, its own metadata plus keys naming the
  error code and the operation) and removed from staging; then one failure notification is written.

Each step is idempotent, so a run that crashes half-way is simply redone by the next one: a finished copy
is not started again, a blob already removed is not an error. Quarantine comes before the notification so
the alert can say where the blob now is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient

from shared import schemas
from shared.messages import TrackedBlob, TrackingRecord
from shared.notifications import EXHAUSTED, PERMANENT, TRANSIENT, UNKNOWN, failure_notification, send_failure, tracked_blob_fields
from shared.times import utc_now_iso

if TYPE_CHECKING:
    from shared.services import Services

logger = logging.getLogger(__name__)

QUARANTINED = "quarantined"
RESUBMITTED = "resubmitted"
ALERTED = "alerted"


QUARANTINE_METADATA = ("errorcode", "failurestatus", "operationid", "sourceid", "sourcecontainer", "quarantinedat")
"""The metadata quarantine adds beside the blob's own (kept: routing reads it); `replay quarantine` removes these."""


class QuarantinePendingError(RuntimeError):
    """A server-side copy to quarantine has not finished yet; the caller tries again on its next run."""


@dataclass(frozen=True)
class IngestionFailure:
    """Kusto's verdict on one blob: its error code, failure status and free-text details."""

    error_code: str
    failure_status: str
    details: str


def _staged_blob(services: Services, blob: TrackedBlob) -> BlobClient:
    """The blob in the staging container, whatever container a record names: deletes and moves act only there."""
    return services.staging.blob(blob["blobName"])


def _etag(blob: TrackedBlob) -> str | None:
    pending = blob.get("pending")
    return pending.get("etag") if pending is not None else None


def _remove_staged(services: Services, blob: TrackedBlob, why: str) -> bool:
    """Delete the staged blob if it is still the recorded version; False when it is gone or was replaced."""
    etag = _etag(blob)
    if etag is None:
        logger.warning(
            "blob %s/%s kept in staging: its tracking record has no ETag to check the version",
            blob["container"],
            blob["blobName"],
        )
        return False
    try:
        _staged_blob(services, blob).delete_blob(
            delete_snapshots="include", etag=etag, match_condition=MatchConditions.IfNotModified
        )
    except ResourceNotFoundError:
        logger.info("blob %s/%s was already gone from staging (%s)", blob["container"], blob["blobName"], why)
        return False
    except ResourceModifiedError:
        logger.info(
            "blob %s/%s kept in staging: a newer version was uploaded since (%s)", blob["container"], blob["blobName"], why
        )
        return False
    logger.info("blob %s/%s removed from staging (%s)", blob["container"], blob["blobName"], why)
    return True


def settle_success(services: Services, blob: TrackedBlob) -> None:
    """A blob Kusto ingested: delete it from staging when DELETE_ON_SUCCESS is set."""
    if services.settings.delete_on_success:
        _remove_staged(services, blob, "ingested")


def quarantine(services: Services, record: TrackingRecord, blob: TrackedBlob, failure: IngestionFailure) -> str:
    """Copy the failed blob to the quarantine container and remove it from staging; return where it went.

    The copy is conditional on the recorded ETag, so only the version that failed is moved. Within one
    account the service copies at once; if it reports the copy as pending, QuarantinePendingError makes the
    caller come back later, and the staged blob is kept until the copy has succeeded.
    """
    container = services.settings.quarantine_container
    target = services.blob_service.get_blob_client(container, blob["blobName"])
    etag = _etag(blob)
    if etag is None:
        return ""
    copied = _finished_copy(target, blob)
    if not copied:
        metadata = {
            "errorcode": failure.error_code[:256],
            "failurestatus": failure.failure_status,
            "operationid": record["operationId"][:256],
            "sourceid": blob["sourceId"],
            "sourcecontainer": blob["container"],
            "quarantinedat": utc_now_iso(),
        }
        source = _staged_blob(services, blob)
        try:
            # A copy given metadata gets that metadata only, so the blob's own is added to it here.
            own = source.get_blob_properties(etag=etag, match_condition=MatchConditions.IfNotModified).metadata
            kept = {key: value for key, value in own.items() if key.lower() not in QUARANTINE_METADATA}
            result = _start_copy(services, target, source.url, {**kept, **metadata}, etag)
        except ResourceNotFoundError:
            logger.warning("blob %s/%s not quarantined: it is no longer in staging", blob["container"], blob["blobName"])
            return ""
        except HttpResponseError as error:
            if error.status_code != 412:
                raise
            logger.warning(
                "blob %s/%s not quarantined: a newer version replaced the failed one", blob["container"], blob["blobName"]
            )
            return ""
        if result.get("copy_status") != "success":
            raise QuarantinePendingError(
                f"copy of {blob['container']}/{blob['blobName']} to {container} is {result.get('copy_status')}"
            )
    _remove_staged(services, blob, f"quarantined in {container}")
    logger.warning("blob %s/%s quarantined in %s (%s)", blob["container"], blob["blobName"], container, failure.error_code)
    return f"{container}/{blob['blobName']}"


def _finished_copy(target: BlobClient, blob: TrackedBlob) -> bool:
    """True when an earlier run already copied this blob version to quarantine."""
    try:
        properties = target.get_blob_properties()
    except ResourceNotFoundError:
        return False
    if properties.metadata.get("sourceid") != blob["sourceId"]:
        return False
    if properties.copy.status == "pending":
        raise QuarantinePendingError(f"copy of {blob['container']}/{blob['blobName']} to quarantine is still pending")
    return properties.copy.status == "success"


def _start_copy(services: Services, target: BlobClient, source_url: str, metadata: dict[str, str], etag: str) -> dict[str, Any]:
    try:
        return target.start_copy_from_url(
            source_url, metadata=metadata, source_etag=etag, source_match_condition=MatchConditions.IfNotModified
        )
    except ResourceNotFoundError as error:
        # 404 means either the source is gone or the quarantine container does not exist yet.
        if getattr(error, "error_code", None) not in ("ContainerNotFound",):  # set by the storage SDK
            raise
    services.blob_service.create_container(services.settings.quarantine_container)
    logger.info("created quarantine container %s", services.settings.quarantine_container)
    return target.start_copy_from_url(
        source_url, metadata=metadata, source_etag=etag, source_match_condition=MatchConditions.IfNotModified
    )


def settle_failure(services: Services, record: TrackingRecord, blob: TrackedBlob, failure: IngestionFailure) -> str:
    """A blob Kusto failed: resubmit it (transient, attempts left) or quarantine it and alert; returns what was done."""
    settings = services.settings
    pending = blob.get("pending")
    attempt = int(pending.get("attempt", 0)) if pending is not None else 0
    if failure.failure_status == TRANSIENT and pending is not None and attempt < settings.resubmit_max_attempts:
        services.pending_queue.send_message(schemas.dump(schemas.PENDING_BLOB, {**pending, "attempt": attempt + 1}))
        logger.warning(
            "blob %s/%s failed transiently (%s); resubmitted, attempt %d of %d",
            blob["container"],
            blob["blobName"],
            failure.error_code,
            attempt + 1,
            settings.resubmit_max_attempts,
        )
        return RESUBMITTED
    status = failure.failure_status if failure.failure_status in (PERMANENT, EXHAUSTED, UNKNOWN) else UNKNOWN
    details = failure.details
    if failure.failure_status == TRANSIENT:
        status = EXHAUSTED
        limit = settings.resubmit_max_attempts
        if pending is not None:
            details = f"{details} (still failing after {attempt} resubmission(s); RESUBMIT_MAX_ATTEMPTS is {limit})"
        else:
            details = f"{details} (not resubmitted: the tracking record kept no copy of the pending message)"
    where = ""
    if settings.quarantine_container and status in (PERMANENT, EXHAUSTED):
        where = quarantine(services, record, blob, failure)
    if where:
        details = f"{details} The blob was moved to {where}."
    send_failure(
        services.failures_queue,
        failure_notification(
            error_code=failure.error_code,
            details=details,
            origin="ingestion",
            **tracked_blob_fields(record, blob),
            failure_status=status,
        ),
    )
    return QUARANTINED if where else ALERTED
