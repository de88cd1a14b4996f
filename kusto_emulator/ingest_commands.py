"""The direct `.ingest` management commands: data pushed in the command, or pulled from blobs named in it.

Supported (any case):
`.ingest inline into table T [with (name = value, ...)] <| data` (and the `[record]` form, one record per
bracket pair), and `.ingest into table T ('<blob URL>', h'<blob URL>', ...) [with (...)]`. Properties are
the ingestion properties (`format`, `ingestionMappingReference`, `ingestionMapping`, `ignoreFirstRecord`,
`tags`, `ingestIfNotExists`, `creationTime`, `zipPattern`); others are accepted and ignored. Data is csv
unless `format` says otherwise. Both commands answer after the data is committed, one row per extent:
ExtentId, ItemLoaded, Duration, HasErrors, OperationId (Kusto's documented columns). `.ingest async` is
not supported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .direct_ingestion import ingest_blob, ingest_data, new_job
from .errors import SyntaxError_
from .ingestion_job import BlobOutcome
from .ingestion_properties import job_properties
from .kql import format_timespan
from .mgmt_request import MgmtHandler, MgmtRequest, command
from .mgmt_syntax import NAME, PROPERTIES, STRING, entity, string_list, with_properties
from .responses import V1Table

_NO_EXTENT = "00000000-0000-0000-0000-000000000000"
_RESULT_COLUMNS = [
    ("ExtentId", "guid"),
    ("ItemLoaded", "string"),
    ("Duration", "timespan"),
    ("HasErrors", "bool"),
    ("OperationId", "guid"),
]


def _result_row(outcome: BlobOutcome, item: str) -> list[object]:
    """One row of the answer; a source skipped by ingestIfNotExists made no extent (Kusto's zero extent id)."""
    duration = format_timespan(outcome.finished_at - outcome.started_at)
    return [outcome.extent_id or _NO_EXTENT, item, duration, False, outcome.job.operation_id]


def _bracketed_records(text: str) -> str:
    """`[a,b] [c,d]` -> "a,b\\nc,d": the records of the bracket form, brackets inside quoted fields kept."""
    records: list[str] = []
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        if text[position] != "[":
            raise SyntaxError_(f".ingest inline: expected '[' to start a record at position {position}")
        start = position = position + 1
        quoted = False
        while position < len(text) and (quoted or text[position] != "]"):
            quoted ^= text[position] == '"'
            position += 1
        if position == len(text):
            raise SyntaxError_(".ingest inline: a record's '[' has no closing ']'")
        records.append(text[start:position])
        position += 1
    return "\n".join(records)


def ingest_inline(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    database = request.context_database()
    table = entity(match.group("table"))
    request.state.catalog.require_table(database, table)
    pushed = match.group("data")
    data = pushed.lstrip() if pushed is not None else _bracketed_records(match.group("records"))
    properties = job_properties(with_properties(match.group("properties")))
    encoded = data.encode("utf-8")
    outcome = ingest_data(
        request.state, new_job(database, table, "inline", properties, len(encoded)), encoded, "inline", record_failure=True
    )
    return [V1Table("Table_0", _RESULT_COLUMNS, [_result_row(outcome, "inline")])]


def ingest_into(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    """Each source is ingested and committed in turn; the first failure ends the command (earlier ones stay)."""
    database = request.context_database()
    table = entity(match.group("table"))
    request.state.catalog.require_table(database, table)
    properties = job_properties(with_properties(match.group("properties")))
    rows = []
    for url in string_list(match.group("sources")):
        job = new_job(database, table, url, properties)
        rows.append(_result_row(ingest_blob(request.state, job, record_failure=True), job.plain_url))
    return [V1Table("Table_0", _RESULT_COLUMNS, rows)]


_WITH = rf"(?:\s+with\s*\((?P<properties>{PROPERTIES})\))?"

COMMANDS: list[tuple[re.Pattern[str], MgmtHandler]] = [
    (
        command(rf"\.ingest\s+inline\s+into\s+table\s+(?P<table>{NAME}){_WITH}\s*(?:<\|(?P<data>.*)|(?P<records>\[.*\]))"),
        ingest_inline,
    ),
    (
        command(rf"\.ingest\s+into\s+table\s+(?P<table>{NAME})\s*\((?P<sources>\s*{STRING}(?:\s*,\s*{STRING})*\s*)\){_WITH}\s*"),
        ingest_into,
    ),
]
