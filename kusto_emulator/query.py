"""`POST /v1/rest/query` and `POST /v2/rest/query`: KQL queries over the ingested tables.

The body is Kusto's: `{"db", "csl", "properties"?}` with `properties` a JSON string whose `Parameters`
feed `declare query_parameters`. A query may hold several `;`-separated statements (`kql_statements.py`):
each tabular statement adds one result table. The answer's shapes are in `query_frames.py`; translation
and its limits in `kql.py`.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .bodies import read_json_body
from .errors import BadRequest, DatabaseNotFound
from .kql import run_query
from .kql_statements import is_sorted, tabular_queries
from .mgmt import parse_mgmt_body
from .query_frames import Answer, v1_tables, v2_frames
from .responses import v1_response
from .state import EmulatorState

logger = logging.getLogger(__name__)


class QueryDatabaseNotFound(DatabaseNotFound):
    """The query's database does not exist. HTTP 400 as Kusto answers it: the SDKs read 404 as a missing endpoint."""

    http_status = 400


def _execute(state: EmulatorState, database: str | None, csl: str, properties: dict[str, Any]) -> list[Answer]:
    """The answer of each tabular statement of the query, in order."""
    if not database:
        raise BadRequest("'db' is required: name the database the query runs in")
    if not state.catalog.database_exists(database):
        raise QueryDatabaseNotFound(f"database '{database}' does not exist")
    parameters = properties.get("Parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("properties.Parameters must be a JSON object of name -> value")
    with state.catalog.cursor() as cursor:
        return [Answer(run_query(cursor, query, database, parameters), is_sorted(query)) for query in tabular_queries(csl)]


def routes(state: EmulatorState) -> list[Route]:
    async def run(request: Request) -> tuple[list[Answer], str]:
        database, csl, properties = parse_mgmt_body(await read_json_body(request, state.config.max_body_bytes))
        answers = await run_in_threadpool(_execute, state, database, csl, properties)
        return answers, request.headers.get("x-ms-client-request-id", "")

    async def query_v1(request: Request) -> JSONResponse:
        return v1_response(v1_tables(*await run(request)))

    async def query_v2(request: Request) -> JSONResponse:
        return JSONResponse(v2_frames(*await run(request)))

    return [
        Route("/v1/rest/query", query_v1, methods=["POST"]),
        Route("/v2/rest/query", query_v2, methods=["POST"]),
    ]
