"""What one ingestion is about and how it ended: the data every ingestion path hands around.

Queued ingestion (REST and queue protocol) runs jobs on the worker pool (`worker.py`); `.ingest` commands
and streaming ingestion run them at once on the request's thread (`direct_ingestion.py`). Both go through
the same pipeline (`blob_ingestion.py`), so a blob, an inline text and a streamed body are read, mapped
and committed the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .catalog import utc_now
from .storage import split_credential


@dataclass(frozen=True)
class IngestionJob:
    """One source to ingest. `blob_url` carries its credential (SAS query or `;managed_identity=...`).

    `properties` uses the REST (v2) property names: format, ingestionMappingReference, ingestionMapping
    (a JSON string), ignoreFirstRecord, tags, ingestIfNotExists, creationTime, zipPattern,
    deleteAfterDownload. `blob_index` is set only for tracked REST operations: the worker then records the
    blob's final status in `_emulator.blob_outcomes` within the ingestion transaction. For data that came
    with the request (`.ingest inline`, streaming) `blob_url` names the source for logs and extents only.
    """

    database: str
    table: str
    blob_url: str
    source_id: str
    raw_size: int | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    operation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    blob_index: int | None = None

    @property
    def plain_url(self) -> str:
        """The blob URL without its credential: the only form that is logged or stored."""
        return split_credential(self.blob_url)[0]


@dataclass(frozen=True)
class BlobOutcome:
    """How one job ended: Succeeded (rows appended, `extent_id` set), Skipped (ingestIfNotExists matched) or Failed."""

    job: IngestionJob
    status: str
    rows: int = 0
    error_code: str | None = None
    failure_status: str | None = None
    details: str | None = None
    started_at: datetime = field(default_factory=utc_now)
    finished_at: datetime = field(default_factory=utc_now)
    extent_id: str | None = None
