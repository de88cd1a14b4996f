"""The staging container: the one place the app's blob actions may touch, and the check every message passes.

Queue messages are written by whoever can write to the storage account's queues (Storage Queue Data
Contributor, a role apart from reading blobs), so a pending message or a tracking record may be forged.
Nothing a message says about *where* a blob is gets used as written: the URL handed to Kusto, the SAS,
every delete and every copy start from the configured staging account and container plus the blob name
(`StagingArea.blob`), and a message is refused before anything acts on it when it names

* another container, host, account or path than the staging container's (`blobUrl` must be the URL the
  app itself builds for `container`/`blobName`);
* a blob name the blob trigger would have refused (`shared.names.blob_name_problem`);
* a database or table that is not a valid Kusto name, or that ALLOWED_TARGETS does not allow;
* a `sourceId` that is not the id of the blob version it names (a forged id could otherwise mark another
  blob's version as submitted in the ledger, and that blob would be dropped as a repeat).

The caller turns a refusal into an alert (`Pending_Refused`, `Tracking_Refused`), never a silent drop.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.storage.blob import BlobClient, BlobServiceClient

from shared import schemas
from shared.names import blob_name_problem, entity_name_problem
from shared.redaction import plain_blob_url
from shared.routing import target_allowed


class RefusedMessageError(ValueError):
    """A message names something outside what the app may act on; the text says which field and why."""


def source_id(blob_url: str, etag: str) -> str:
    """Deterministic id of one blob version: the same blob and ETag always give the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{plain_blob_url(blob_url)}#{etag}"))


class StagingArea:
    """The staging container of the configured account, and the targets ALLOWED_TARGETS lets the app write."""

    def __init__(self, blob_service: BlobServiceClient, container: str, allowed_targets: Sequence[str]) -> None:
        self.blob_service = blob_service
        self.container = container
        self._allowed_targets = tuple(allowed_targets)
        parts = urlsplit(blob_service.get_container_client(container).url)
        self._scheme = parts.scheme.lower()
        self._host = parts.netloc.lower()
        self._path = unquote(parts.path).rstrip("/") + "/"
        self.url_prefix = f"{self._scheme}://{parts.netloc}{parts.path.rstrip('/')}/"
        """Every staging blob's URL starts with this (the blob name follows, percent-encoded)."""

    def blob(self, blob_name: str) -> BlobClient:
        """The client of `blob_name` in the staging container; RefusedMessageError for a name the trigger refuses."""
        problem = blob_name_problem(blob_name)
        if problem is not None:
            raise RefusedMessageError(f"{problem}: {blob_name[:256]!r}")
        return self.blob_service.get_blob_client(self.container, blob_name)

    def check_blob(self, container: str, blob_name: str, blob_url: str, where: str) -> None:
        """Refuse a blob reference that is not `blob_name` in the staging container of the configured account."""
        if container != self.container:
            raise RefusedMessageError(f"{where}.container {container[:64]!r} is not the staging container {self.container!r}")
        problem = blob_name_problem(blob_name)
        if problem is not None:
            raise RefusedMessageError(f"{where}.blobName: {problem}")
        parts = urlsplit(blob_url)
        if parts.scheme.lower() != self._scheme or parts.netloc.lower() != self._host:
            raise RefusedMessageError(
                f"{where}.blobUrl points at {parts.scheme}://{parts.netloc[:128]}, not the staging account "
                f"({self._scheme}://{self._host})"
            )
        if parts.query or parts.fragment or unquote(parts.path) != self._path + blob_name:
            raise RefusedMessageError(f"{where}.blobUrl does not name {where}.blobName in the staging container")

    def check_target(self, database: str, table: str, where: str) -> None:
        """Refuse a target that is not a valid Kusto name or that ALLOWED_TARGETS does not allow."""
        for kind, name in (("database", database), ("table", table)):
            problem = entity_name_problem(name, kind)
            if problem is not None:
                raise RefusedMessageError(f"{where}.{kind}: {problem}")
        if not target_allowed(database, table, self._allowed_targets):
            raise RefusedMessageError(
                f"{where} targets {database}.{table}, which ALLOWED_TARGETS ({', '.join(self._allowed_targets)}) does not allow"
            )

    def check_pending(self, pending: Mapping[str, Any], where: str = "pending message") -> None:
        """Refuse a (schema-valid) pending message that names anything but a staging blob version and an allowed target."""
        self.check_blob(pending["container"], pending["blobName"], pending["blobUrl"], where)
        self.check_target(pending["database"], pending["table"], where)
        if pending["sourceId"].lower() != source_id(pending["blobUrl"], pending["etag"]):
            raise RefusedMessageError(f"{where}.sourceId is not the id of the blob version it names (blobUrl and etag)")

    def check_tracking_record(self, record: Mapping[str, Any]) -> None:
        """Refuse a (schema-valid) tracking record whose target or any blob (or its kept pending copy) is not ours."""
        self.check_target(record["database"], record["table"], "tracking record")
        for index, blob in enumerate(record["blobs"]):
            where = f"tracking record blobs[{index}]"
            self.check_blob(blob["container"], blob["blobName"], blob["blobUrl"], where)
            pending = blob.get("pending")
            if pending is None:
                continue
            try:
                schemas.validate(schemas.PENDING_BLOB, pending)
            except schemas.MessageError as error:
                raise RefusedMessageError(f"{where}.pending is not a pending-blob message: {error}") from None
            self.check_pending(pending, f"{where}.pending")
            same = (pending["sourceId"].lower(), pending["blobName"], pending["database"], pending["table"])
            if same != (blob["sourceId"].lower(), blob["blobName"], record["database"], record["table"]):
                raise RefusedMessageError(f"{where}.pending names another blob version or target than the record")
