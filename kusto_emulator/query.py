"""`POST /v1/rest/query` and `POST /v2/rest/query`: KQL queries over the ingested tables.

The body is Kusto's: `{"db", "csl", "properties"?}` with `properties` a JSON string whose `Parameters`
feed `declare query_parameters`. The v1 answer is one JSON table (the primary result); the v2 answer is
the frame list the official clients read: DataSetHeader, the PrimaryResult table, a
QueryCompletionInformation table (Level 4 = information, so the clients count no error) and
DataSetCompletion. Translation and its limits live in `kql.py`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .bodies import read_json_body
from .errors import BadRequest, DatabaseNotFound
from .kql import QueryResult, run_query
from .mgmt import parse_mgmt_body
from .responses import V1Table
from .state import EmulatorState

logger = logging.getLogger(__name__)


class QueryDatabaseNotFound(DatabaseNotFound):
    """The query's database does not exist. HTTP 400 as Kusto answers it: the SDKs read 404 as a missing endpoint."""

    http_status = 400


def _execute(state: EmulatorState, database: str | None, csl: str, properties: dict[str, Any]) -> QueryResult:
    if not database:
        raise BadRequest("'db' is required: name the database the query runs in")
    if not state.catalog.database_exists(database):
        raise QueryDatabaseNotFound(f"database '{database}' does not exist")
    parameters = properties.get("Parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("properties.Parameters must be a JSON object of name -> value")
    with state.catalog.cursor() as cursor:
        return run_query(cursor, csl, database, parameters)


def _v2_frames(result: QueryResult, client_request_id: str) -> list[dict[str, Any]]:
    activity_id = str(uuid.uuid4())
    completion_columns = [
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
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    completion_row = [now, client_request_id, activity_id, activity_id, activity_id, 4, "Info", 0, "S_OK (0)", 4, "QueryInfo", ""]
    return [
        {
            "FrameType": "DataSetHeader",
            "IsProgressive": False,
            "Version": "v2.0",
            "IsFragmented": False,
            "ErrorReportingPlacement": "InData",
        },
        _data_table(1, "PrimaryResult", "PrimaryResult", result.columns, result.rows),
        _data_table(2, "QueryCompletionInformation", "QueryCompletionInformation", completion_columns, [completion_row]),
        {"FrameType": "DataSetCompletion", "HasErrors": False, "Cancelled": False},
    ]


def _data_table(table_id: int, kind: str, name: str, columns: list[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "FrameType": "DataTable",
        "TableId": table_id,
        "TableKind": kind,
        "TableName": name,
        "Columns": [{"ColumnName": column, "ColumnType": kusto_type} for column, kusto_type in columns],
        "Rows": rows,
    }


def routes(state: EmulatorState) -> list[Route]:
    async def run(request: Request) -> tuple[QueryResult, str]:
        database, csl, properties = parse_mgmt_body(await read_json_body(request, state.config.max_body_bytes))
        result = await run_in_threadpool(_execute, state, database, csl, properties)
        return result, request.headers.get("x-ms-client-request-id", "")

    async def query_v1(request: Request) -> JSONResponse:
        result, _ = await run(request)
        return JSONResponse({"Tables": [V1Table("Table_0", result.columns, result.rows).to_json()]})

    async def query_v2(request: Request) -> JSONResponse:
        result, client_request_id = await run(request)
        return JSONResponse(_v2_frames(result, client_request_id))

    return [
        Route("/v1/rest/query", query_v1, methods=["POST"]),
        Route("/v2/rest/query", query_v2, methods=["POST"]),
    ]
