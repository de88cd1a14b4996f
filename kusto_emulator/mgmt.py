"""`POST /v1/rest/mgmt`: management commands, dispatched by regular expression.

Each module contributes a list of (compiled pattern, handler) pairs: `catalog_commands.COMMANDS` (tables,
databases, mappings, failures, version), `policy_commands.COMMANDS` (streaming ingestion policy),
`ingest_commands.COMMANDS` (`.ingest inline`, `.ingest into`) and `queued_protocol.MGMT_COMMANDS`
(ingestion resources, identity token).
The first pattern that matches the whole command wins. A handler takes the parsed request and the match,
and returns the v1 tables of the answer; it runs on a worker thread, so it may block on DuckDB.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import catalog_commands, ingest_commands, policy_commands, queued_protocol
from .bodies import read_json_body
from .errors import BadRequest, SyntaxError_
from .mgmt_request import MgmtHandler, MgmtRequest
from .responses import V1Table, v1_response
from .state import EmulatorState

COMMANDS: list[tuple[re.Pattern[str], MgmtHandler]] = [
    *catalog_commands.COMMANDS,
    *policy_commands.COMMANDS,
    *ingest_commands.COMMANDS,
    *queued_protocol.MGMT_COMMANDS,
]


def _properties(value: Any) -> dict[str, Any]:
    """`properties` is a JSON string in the SDKs' bodies; an object is accepted too."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise BadRequest("'properties' is not valid JSON: send a JSON object or a string holding one") from None
    if not isinstance(value, dict):
        raise BadRequest("'properties' must be a JSON object (or a string holding one)")
    return value


def parse_mgmt_body(body: Any) -> tuple[str | None, str, dict[str, Any]]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with 'csl' (the command) and optional 'db' and 'properties'")
    csl, database = body.get("csl"), body.get("db")
    if not isinstance(csl, str) or not csl.strip():
        raise BadRequest("'csl' must be a non-empty string holding the command")
    if database is not None and not isinstance(database, str):
        raise BadRequest("'db' must be a string")
    return database or None, csl.strip(), _properties(body.get("properties"))


def dispatch(request: MgmtRequest) -> Sequence[V1Table]:
    for pattern, handler in COMMANDS:
        match = pattern.fullmatch(request.csl)
        if match:
            request.state.stats.count_mgmt_command(handler.__name__)
            return handler(request, match)
    request.state.stats.count_mgmt_command("(unsupported)")
    first_line = request.csl.splitlines()[0][:200]
    if not request.csl.startswith("."):
        raise SyntaxError_(f"'{first_line}' is not a management command: management commands start with '.'")
    raise SyntaxError_(f"the emulator does not support the command '{first_line}'")


def routes(state: EmulatorState) -> list[Route]:
    async def mgmt(request: Request) -> Response:
        database, csl, properties = parse_mgmt_body(await read_json_body(request, state.config.max_body_bytes))
        headers = {key.lower(): value for key, value in request.headers.items() if key.lower() != "authorization"}
        tables = await run_in_threadpool(dispatch, MgmtRequest(state, database, csl, properties, headers))
        return v1_response(tables)

    return [Route("/v1/rest/mgmt", mgmt, methods=["POST"])]
