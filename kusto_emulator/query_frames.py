"""The answer to a query, in the two shapes Kusto sends: v1 (`/v1/rest/query`) and v2 (`/v2/rest/query`).

v2 is a list of frames: DataSetHeader; a QueryProperties table (`@ExtendedProperties`: one Visualization row
per result); one PrimaryResult table per tabular statement; a QueryCompletionInformation table (Level 4,
information, so the clients count no error); DataSetCompletion. The streaming readers of the official
clients take the frames in that order. v1 is `{"Tables": [...]}`: the primary results first, then
`@ExtendedProperties`, `QueryStatus` and a TableOfContents naming the kind of every table before it, which
is how the clients tell the results apart once there is more than one.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .kql import QueryResult
from .responses import V1Table

# Kusto's Visualization properties of a query that has no `render`: everything unset.
_VISUALIZATION = {
    "Visualization": None,
    "Title": None,
    "XColumn": None,
    "Series": None,
    "YColumns": None,
    "AnomalyColumns": None,
    "XTitle": None,
    "YTitle": None,
    "XAxis": None,
    "YAxis": None,
    "Legend": None,
    "YSplit": None,
    "Accumulate": False,
    "IsQuerySorted": False,
    "Kind": None,
    "Ymin": "NaN",
    "Ymax": "NaN",
    "Xmin": None,
    "Xmax": None,
}


class Answer(NamedTuple):
    """One tabular statement's result, and whether it is sorted (Kusto's IsQuerySorted)."""

    result: QueryResult
    is_sorted: bool


_COMPLETION_COLUMNS = [
    ("Timestamp", "datetime"),
    ("ClientRequestId", "string"),
    ("ActivityId", "guid"),
    ("SubActivityId", "guid"),
    ("ParentActivityId", "guid"),
    ("Level", "int"),
    ("LevelName", "string"),
    ("StatusCode", "int"),
    ("StatusCodeName", "string"),
    ("EventType", "int"),
    ("EventTypeName", "string"),
    ("Payload", "string"),
]
_QUERY_STATUS_COLUMNS = [
    ("Timestamp", "datetime"),
    ("Severity", "int"),
    ("SeverityName", "string"),
    ("StatusCode", "int"),
    ("StatusDescription", "string"),
    ("Count", "int"),
    ("RequestId", "guid"),
    ("ActivityId", "guid"),
    ("SubActivityId", "guid"),
    ("ClientActivityId", "string"),
]
_TOC_COLUMNS = [("Ordinal", "long"), ("Kind", "string"), ("Name", "string"), ("Id", "string"), ("PrettyName", "string")]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _visualization(sorted_result: bool) -> str:
    """The Visualization value as Kusto writes it: JSON text inside the dynamic cell."""
    return json.dumps({**_VISUALIZATION, "IsQuerySorted": sorted_result}, separators=(",", ":"))


def _data_table(table_id: int, kind: str, name: str, columns: list[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "FrameType": "DataTable",
        "TableId": table_id,
        "TableKind": kind,
        "TableName": name,
        "Columns": [{"ColumnName": column, "ColumnType": kusto_type} for column, kusto_type in columns],
        "Rows": rows,
    }


def v2_frames(answers: list[Answer], client_request_id: str) -> list[dict[str, Any]]:
    """The v2 frames of a query whose tabular statements gave `answers`."""
    activity_id = str(uuid.uuid4())
    results = [answer.result for answer in answers]
    properties = [[index + 1, "Visualization", _visualization(answer.is_sorted)] for index, answer in enumerate(answers)]
    payload = json.dumps({"Count": 1, "Text": "Query completed successfully"})
    completion = [
        _now(),
        client_request_id,
        activity_id,
        activity_id,
        activity_id,
        4,
        "Info",
        0,
        "S_OK (0)",
        4,
        "QueryInfo",
        payload,
    ]
    primaries = [
        _data_table(index + 1, "PrimaryResult", "PrimaryResult", result.columns, result.rows)
        for index, result in enumerate(results)
    ]
    return [
        {
            "FrameType": "DataSetHeader",
            "IsProgressive": False,
            "Version": "v2.0",
            "IsFragmented": False,
            "ErrorReportingPlacement": "InData",
        },
        _data_table(
            0, "QueryProperties", "@ExtendedProperties", [("TableId", "int"), ("Key", "string"), ("Value", "dynamic")], properties
        ),
        *primaries,
        _data_table(
            len(results) + 1, "QueryCompletionInformation", "QueryCompletionInformation", _COMPLETION_COLUMNS, [completion]
        ),
        {"FrameType": "DataSetCompletion", "HasErrors": False, "Cancelled": False},
    ]


def v1_tables(answers: list[Answer], client_request_id: str) -> list[V1Table]:
    """The v1 tables of the same answer: primaries, @ExtendedProperties, QueryStatus, TableOfContents."""
    activity_id = str(uuid.uuid4())
    tables = [V1Table(f"Table_{index}", answer.result.columns, answer.result.rows) for index, answer in enumerate(answers)]
    tables.append(
        V1Table(f"Table_{len(tables)}", [("Value", "string")], [[_visualization(answer.is_sorted)] for answer in answers])
    )
    status = [_now(), 4, "Info", 0, "Query completed successfully", 1, activity_id, activity_id, activity_id, client_request_id]
    tables.append(V1Table(f"Table_{len(tables)}", _QUERY_STATUS_COLUMNS, [status]))
    kinds = [("QueryResult", "PrimaryResult")] * len(answers) + [
        ("QueryProperties", "@ExtendedProperties"),
        ("QueryStatus", "QueryStatus"),
    ]
    contents = [[ordinal, kind, name, str(uuid.uuid4()), ""] for ordinal, (kind, name) in enumerate(kinds)]
    tables.append(V1Table(f"Table_{len(tables)}", _TOC_COLUMNS, contents))
    return tables
