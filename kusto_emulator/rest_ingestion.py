"""The REST queued-ingestion API ("v2"): submit, status, configuration, plus the auth metadata route.

The POST path stays light, as a real DM's does: validate the body against the contract (`ingest_request.py`), check the target
table, persist the operation (group commit) and hand each blob to the worker. Everything else happens in
the background, and the status route reports it.

Status answers follow the OpenAPI contract (camelCase counts, `startedAt` / `lastUpdateTime` per blob)
and also carry the spellings of the public docs (`startTime` / `lastUpdated` and `url` per blob), because
the two disagree and extra keys are harmless to clients of either.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .bodies import read_json_body
from .catalog import utc_now
from .errors import BadRequest, InternalError, OperationNotFound
from .ids import new_operation_id, random_uuid
from .ingest_request import request_validator, validate_request
from .ingestion_job import IngestionJob
from .names import validate_entity_name
from .operations import BlobRef, Operation
from .state import EmulatorState
from .storage import container_sas_url

logger = logging.getLogger(__name__)

TEMP_CONTAINER = "emulator-ingest-temp"
REFRESH_SECONDS = 3600
# Public-cloud values the Python SDK would fall back to anyway; served so it needs no 404 path.
AUTH_METADATA = {
    "AzureAD": {
        "LoginEndpoint": "https://login.microsoftonline.com",
        "LoginMfaRequired": False,
        "KustoClientAppId": "db662dc1-0cfe-4e1c-a843-19a68e65be58",
        "KustoClientRedirectUri": "http://localhost",
        "KustoServiceResourceId": "https://kusto.kusto.windows.net",
        "FirstPartyAuthorityUrl": "https://login.microsoftonline.com/f8cdef31-a31e-4b4a-93e4-5f571e91255a",
    },
    "dSTS": {},
}


def kusto_time(value: datetime) -> str:
    """ISO 8601 UTC with 7 fractional digits, as .NET (and so Kusto) writes it."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def status_body(state: EmulatorState, database: str, table: str, operation_id: str, details: bool) -> dict[str, Any]:
    """The status answer of a tracked operation: counts, times, and per-blob details if asked."""
    operation = state.operations.get(operation_id)
    if operation is None or not operation.tracked or operation.database != database or operation.table != table:
        raise OperationNotFound(f"no tracked ingestion operation '{operation_id}' for table '{database}.{table}'")
    results = state.operations.results(operation_id)
    running = state.worker.in_progress(operation_id)
    counts = {"succeeded": 0, "failed": 0, "inProgress": 0, "canceled": 0}
    last_update = operation.start_time
    blobs = []
    for index, blob in enumerate(operation.blobs):
        result = results.get(index)
        if result is not None:
            status = "Failed" if result.status == "Failed" else "Succeeded"
            started, updated = result.started_at, result.finished_at
            last_update = max(last_update, updated)
        else:
            status = "InProgress" if index in running else "Queued"
            started = running.get(index, operation.start_time)
            updated = started
        counts[{"Succeeded": "succeeded", "Failed": "failed"}.get(status, "inProgress")] += 1
        blobs.append(
            {
                "sourceId": blob.source_id,
                "url": blob.url,
                "status": status,
                "startedAt": kusto_time(started),
                "startTime": kusto_time(started),
                "lastUpdateTime": kusto_time(updated),
                "lastUpdated": kusto_time(updated),
                "errorCode": result.error_code if result else None,
                "failureStatus": result.failure_status if result else None,
                "details": result.details if result and (result.error_code or result.status == "Skipped") else None,
            }
        )
    answer: dict[str, Any] = {
        "startTime": kusto_time(operation.start_time),
        "lastUpdated": kusto_time(last_update),
        "status": counts,
    }
    if details:
        answer["details"] = blobs
    return answer


def routes(state: EmulatorState) -> list[Route]:
    validator = request_validator(state.config.max_blobs_per_batch)
    temp_container: list[tuple[float, str]] = []  # (monotonic time made, SAS URL): renewed every refreshInterval

    async def submit(request: Request) -> Response:
        database = validate_entity_name("database", request.path_params["database"])
        table = validate_entity_name("table", request.path_params["table"])
        body = await read_json_body(request, state.config.max_body_bytes)
        urls = validate_request(validator, body, state.config.max_blobs_per_batch)
        refused = state.faults.request_error_blob([plain for plain, _ in urls])
        if refused is not None:
            raise InternalError(f"server error injected for a request naming {refused} (errorBlobs)")
        state.use_database(database)
        state.catalog.require_table(database, table)
        properties = body["properties"]
        tracked = bool(properties.get("enableTracking"))
        blobs = [
            BlobRef(plain, credential, blob.get("sourceId") or random_uuid(), blob.get("rawSize"))
            for blob, (plain, credential) in zip(body["blobs"], urls, strict=True)
        ]
        operation = Operation(new_operation_id(), database, table, tracked, utc_now(), properties, tuple(blobs))
        await state.operations.record(operation)
        for index, blob in enumerate(operation.blobs):
            state.worker.submit(
                IngestionJob(
                    database,
                    table,
                    blob.url + blob.credential,
                    blob.source_id,
                    blob.raw_size,
                    properties,
                    operation.operation_id,
                    index,
                )
            )
        return JSONResponse({"ingestionOperationId": operation.operation_id if tracked else ""})

    async def status(request: Request) -> Response:
        database = validate_entity_name("database", request.path_params["database"])
        table = validate_entity_name("table", request.path_params["table"])
        details_flag = request.query_params.get("details", "false").lower()
        if details_flag not in ("true", "false"):
            raise BadRequest(f"query parameter details={details_flag!r} must be true or false")
        operation_id = request.path_params["operation_id"]
        body = await run_in_threadpool(status_body, state, database, table, operation_id, details_flag == "true")
        return JSONResponse(body)

    def temp_container_url() -> str:
        if not temp_container or time.monotonic() - temp_container[0][0] > REFRESH_SECONDS:
            temp_container[:] = [(time.monotonic(), container_sas_url(state.storage_connection_string, TEMP_CONTAINER))]
        return temp_container[0][1]

    async def configuration(request: Request) -> Response:
        container = await run_in_threadpool(temp_container_url)
        return JSONResponse(
            {
                "containerSettings": {
                    "containers": [{"path": container}],
                    "lakeFolders": [],
                    "refreshInterval": "01:00:00",  # REFRESH_SECONDS; the SAS lives 24 h
                    "preferredUploadMethod": "Storage",
                },
                "ingestionSettings": {
                    "maxBlobsPerBatch": state.config.max_blobs_per_batch,
                    "maxDataSize": state.config.max_data_size,
                    "preferredIngestionMethod": "REST",
                },
            }
        )

    async def auth_metadata(request: Request) -> Response:
        return JSONResponse(AUTH_METADATA)

    return [
        Route("/v1/rest/ingestion/configuration", configuration, methods=["GET"]),
        Route("/v1/rest/ingestion/queued/{database}/{table}", submit, methods=["POST"]),
        Route("/v1/rest/ingestion/queued/{database}/{table}/{operation_id:path}", status, methods=["GET"]),
        Route("/v1/rest/auth/metadata", auth_metadata, methods=["GET"]),
    ]
