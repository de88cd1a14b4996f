"""`replay quarantine`: move fixed blobs from QUARANTINE_CONTAINER back to staging and record them as the trigger would.

For each quarantined blob under the prefix:

1. It is refused, and left where it is, when the blob trigger refuses its name, or when the staging container holds
   another blob of that name (one that is not this blob's own copy): the operator removes one of the two first.
2. The keys quarantine added to its metadata (`shared.outcomes.QUARANTINE_METADATA`) are removed in place. A copy
   takes the source's metadata, so the staging blob gets the blob's own metadata back (routing may read it); a copy
   given metadata of its own would get nothing else, and given none, the quarantine keys.
3. It is copied server-side to staging at the same name, only if that name is still free, and the copy is waited
   for; then the quarantined blob is deleted, only if it did not change meanwhile.
4. The new staging version (a new ETag, so a new source id) is recorded by `shared.recorder.record_blob`, as the
   blob trigger records it, so the replay does not depend on an event arriving; if the trigger fires as well, the
   drain drops the repeat (the submission ledger).

A run that stops between the copy and the delete leaves both blobs; the next run sees that the staging blob is a
copy of this quarantined blob made since it last changed (its copy source and completion time) and finishes the
move. One that stops between the delete and the recording leaves a staging blob the trigger (its event) or the
reconciliation timer records.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import unquote

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobProperties, ContainerClient

from shared.ops.item_report import ItemReport
from shared.ops.progress import progress_bar
from shared.outcomes import QUARANTINE_METADATA
from shared.recorder import PENDING, record_blob, route_version
from shared.redaction import plain_blob_url
from shared.routing import RoutingError
from shared.settings import SettingsError
from shared.staging_area import RefusedMessageError

if TYPE_CHECKING:
    from shared.services import Services

COPY_WAIT_SECONDS = 60.0
"""Longest wait for one copy; within one account the service copies at once, so this is only a bound."""
COPY_POLL_SECONDS = 1.0
REFUSED = "refused"
MOVED = "moved back and recorded"
WOULD_MOVE = "would be moved back and recorded"
NOT_ROUTABLE = "not routable"


class _NotMovedError(Exception):
    """The blob stays in quarantine this time; the text says why and what to do."""


def replay_quarantine(services: Services, prefix: str, report: ItemReport, *, dry_run: bool) -> None:
    """Replay every quarantined blob under `prefix`; SettingsError when quarantine is off or misconfigured."""
    settings = services.settings
    if "quarantine" in settings.disabled:
        raise SettingsError(settings.disabled["quarantine"])
    if not settings.quarantine_container:
        raise SettingsError("QUARANTINE_CONTAINER: not set, so the app quarantines nothing; set it to the app's value")
    container = services.blob_service.get_container_client(settings.quarantine_container)
    try:
        with progress_bar("replay quarantine", unit="blob") as bar:
            for item in container.list_blobs(name_starts_with=prefix or None, include=["metadata"]):
                _replay_blob(services, container, item, report, dry_run=dry_run)
                bar.update(1)
    except ResourceNotFoundError as error:
        if getattr(error, "error_code", None) != "ContainerNotFound":
            raise
        # No container yet: the app has quarantined nothing.


def _replay_blob(
    services: Services, container: ContainerClient, item: BlobProperties, report: ItemReport, *, dry_run: bool
) -> None:
    source = f"{container.container_name}/{item.name}"
    target = f"{services.staging.container}/{item.name}"
    try:
        staged = services.staging.blob(item.name)
    except RefusedMessageError as error:
        report.left_behind(REFUSED, f"refused {source}: the blob trigger refuses this name ({error})")
        return
    quarantined = container.get_blob_client(item.name)
    try:
        existing = staged.get_blob_properties()
    except ResourceNotFoundError:
        existing = None
    if existing is not None and not _is_copy_of(existing, item, quarantined.url):
        report.left_behind(
            REFUSED,
            f"refused {source}: {target} already exists and is not a copy of it; if that one is the fixed file, delete "
            "the quarantined one, otherwise remove it from staging, then replay again",
        )
        return
    if dry_run:
        _plan(services, item, source, target, report)
        return
    # A listing's ETag comes without the quotes the conditional headers take.
    etag = '"' + item.etag.strip('"') + '"'
    try:
        if existing is None:
            etag = _without_quarantine_metadata(quarantined, item, etag)
            status = _copy(quarantined, staged, etag)
        else:
            status = existing.copy.status
        _wait_for_copy(staged, status)
    except _NotMovedError as error:
        report.left_behind("not moved", f"not moved {source}: {error}")
        return
    deleted = _delete_unchanged(quarantined, etag)
    result = record_blob(staged, services)
    if result.outcome != PENDING:
        report.left_behind(
            NOT_ROUTABLE,
            f"moved {source} -> {target}, but it cannot be routed ({result.error_code}); it was alerted as the trigger "
            "would alert it",
        )
    elif not deleted:
        report.left_behind(
            "moved back, quarantined blob changed and kept",
            f"moved {source} -> {target} and recorded it for {result.message['database']}.{result.message['table']}, "
            f"but {source} changed meanwhile and was kept; look at it before replaying again",
        )
    else:
        report.did(MOVED, f"moved {source} -> {target}: recorded for {result.message['database']}.{result.message['table']}")


def _plan(services: Services, item: BlobProperties, source: str, target: str, report: ItemReport) -> None:
    """What the replay would do with this blob, routed from its listing as the recording would route it."""
    try:
        route = route_version(services, item.name, item)
    except RoutingError as error:
        report.left_behind(
            NOT_ROUTABLE, f"would move {source} -> {target}, but it cannot be routed ({error.code}): {error.reason}"
        )
        return
    report.did(WOULD_MOVE, f"would move {source} -> {target} and record it for {route.database}.{route.table}")


def _is_copy_of(staged: BlobProperties, quarantined: BlobProperties, quarantined_url: str) -> bool:
    """Whether the staging blob is a copy of this quarantined blob made since it last changed (a replay cut short)."""
    copy = staged.copy
    if not copy.source or unquote(plain_blob_url(copy.source)) != unquote(plain_blob_url(quarantined_url)):
        return False
    if copy.status == "pending":
        return True
    return copy.status == "success" and copy.completion_time is not None and quarantined.last_modified <= copy.completion_time


def _without_quarantine_metadata(quarantined: BlobClient, item: BlobProperties, etag: str) -> str:
    """Remove the quarantine's metadata keys from the listed version; returns the ETag of the version to copy."""
    metadata = item.metadata or {}
    own = {key: value for key, value in metadata.items() if key.lower() not in QUARANTINE_METADATA}
    if len(own) == len(metadata):
        return etag
    try:
        return str(quarantined.set_blob_metadata(own, etag=etag, match_condition=MatchConditions.IfNotModified)["etag"])
    except ResourceModifiedError:
        raise _NotMovedError("it changed while it was read; replay again") from None
    except ResourceNotFoundError:
        raise _NotMovedError("it was deleted meanwhile") from None


def _copy(quarantined: BlobClient, staged: BlobClient, etag: str) -> str | None:
    """Start the copy of that version to staging, only if the name is still free there; returns the copy's status."""
    try:
        result = staged.start_copy_from_url(
            quarantined.url,
            source_etag=etag,
            source_match_condition=MatchConditions.IfNotModified,
            match_condition=MatchConditions.IfMissing,
        )
    except ResourceExistsError:
        raise _NotMovedError(f"{staged.container_name}/{staged.blob_name} appeared meanwhile; replay again") from None
    except ResourceNotFoundError:
        raise _NotMovedError("it was deleted meanwhile") from None
    except HttpResponseError as error:
        if error.status_code != 412:
            raise
        raise _NotMovedError("it changed while it was copied; replay again") from None
    status = result.get("copy_status")
    return None if status is None else str(status)


def _wait_for_copy(staged: BlobClient, status: str | None) -> None:
    deadline = time.monotonic() + COPY_WAIT_SECONDS
    while status == "pending" and time.monotonic() < deadline:
        time.sleep(COPY_POLL_SECONDS)
        status = staged.get_blob_properties().copy.status
    if status == "pending":
        raise _NotMovedError("the copy to staging is still running; replay again to finish the move")
    if status != "success":
        raise _NotMovedError(
            f"the copy to staging ended {status}; delete {staged.container_name}/{staged.blob_name} and replay again"
        )


def _delete_unchanged(quarantined: BlobClient, etag: str) -> bool:
    """Delete the quarantined blob if it is still the version copied; False when it changed (it is kept)."""
    try:
        quarantined.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
    except ResourceModifiedError:
        return False
    except ResourceNotFoundError:
        pass  # deleted by someone else: the move is done all the same
    return True
