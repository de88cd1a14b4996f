"""Messages as the app writes them, for tests that put one on a queue themselves (a copy, a forgery, a backlog)."""

from __future__ import annotations

from typing import Any

from azure.storage.blob import BlobClient

from shared.redaction import plain_blob_url
from shared.staging_area import source_id
from shared.times import utc_now_iso


def pending_message(
    blob: BlobClient, *, etag: str, size: int, database: str, table: str, properties: dict[str, Any] | None = None, **changes: Any
) -> dict[str, Any]:
    """The pending message the blob trigger records for this version of `blob` (its sourceId is its URL's and
    ETag's, as the recorder derives it), `properties` beside the CSV format, then `changes` on top: a test that
    forges a field names only that field. The blob need not exist."""
    url = plain_blob_url(blob.url)
    message = {
        "version": 1,
        "blobUrl": url,
        "container": blob.container_name,
        "blobName": blob.blob_name,
        "etag": etag,
        "size": size,
        "sourceId": source_id(url, etag),
        "database": database,
        "table": table,
        "properties": {"format": "csv", **(properties or {})},
        "recordedAt": utc_now_iso(),
    }
    return message | changes
