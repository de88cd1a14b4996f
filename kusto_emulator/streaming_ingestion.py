"""`POST /v1/rest/ingest/{database}/{table}?streamFormat=...&mappingName=...`: streaming ingestion.

What the official clients send: the data as the body, gzip-compressed (`Content-Encoding: gzip`) or plain,
in `streamFormat` (csv, json, ...), with an optional named mapping (`mappingName`); or, with
`sourceKind=uri`, a JSON body `{"sourceUri": "<blob URL with SAS>"}` naming a blob to ingest. The answer
comes after the rows are committed: one v1 table with ConsumedRecordsCount and the update-policy columns.

Kusto takes streaming ingestion into a table only when the table's (or its database's) streaming ingestion
policy is enabled. Otherwise it refuses with `BadRequest_StreamingIngestionPolicyNotEnabled`, which the
managed-streaming clients take as their cue to use queued ingestion instead. The Python client does that
only for a refusal that is not permanent (`@permanent: false`), so the emulator sends it so; the Java
client (v2) falls back on the code itself. A request over 4 MB, the documented limit, gets 413.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .bodies import parse_json, read_body
from .direct_ingestion import ingest_blob, ingest_data, new_job
from .errors import BadRequest, DatabaseNotFound, EmulatorError, TableNotFound
from .ingestion_job import BlobOutcome
from .names import validate_entity_name
from .responses import V1Table, v1_response
from .state import EmulatorState

MAX_STREAMING_BYTES = 4 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


class StreamingPolicyNotEnabled(EmulatorError):  # noqa: N818 - named after Kusto's error kinds
    """Neither the table nor its database has an enabled streaming ingestion policy; queued ingestion still works."""

    http_status = 400
    code = "BadRequest_StreamingIngestionPolicyNotEnabled"
    kusto_type = "Kusto.DataNode.Exceptions.StreamingIngestionPolicyNotEnabledException"
    permanent = False


class StreamingTargetNotFound(BadRequest):
    """The database or table does not exist. 400, not 404: the clients read a 404 here as "streaming is not enabled"."""


def _check_target(state: EmulatorState, database: str, table: str) -> None:
    try:
        state.use_database(database)
        state.catalog.require_table(database, table)
    except (DatabaseNotFound, TableNotFound) as error:
        raise StreamingTargetNotFound(error.message, code=error.code) from None
    if not state.policies.streaming_enabled(database, table):
        raise StreamingPolicyNotEnabled(
            f"streaming ingestion into '{database}.{table}' is not enabled: enable it with "
            f"'.alter table {table} policy streamingingestion enable' (or on the database), or use queued ingestion"
        )


def _ingest(
    state: EmulatorState, database: str, table: str, properties: dict[str, str], from_blob: bool, encoding: str, body: bytes
) -> BlobOutcome:
    _check_target(state, database, table)
    if from_blob:
        document = parse_json(body, "streaming request body")
        folded = {str(key).lower(): value for key, value in document.items()} if isinstance(document, dict) else {}
        url = folded.get("sourceuri")
        if not isinstance(url, str) or not url:
            raise BadRequest('with sourceKind=uri the body must be {"sourceUri": "<blob URL>"}')
        return ingest_blob(state, new_job(database, table, url, properties), record_failure=False)
    compressed = encoding.lower() == "gzip" or body.startswith(_GZIP_MAGIC)
    job = new_job(database, table, "streaming-ingestion", properties, len(body))
    return ingest_data(state, job, body, "body.gz" if compressed else "body", record_failure=False)


def routes(state: EmulatorState) -> list[Route]:
    async def streaming_ingest(request: Request) -> Response:
        database = validate_entity_name("database", request.path_params["database"])
        table = validate_entity_name("table", request.path_params["table"])
        stream_format = request.query_params.get("streamFormat")
        if not stream_format:
            raise BadRequest("streamFormat is required, e.g. ?streamFormat=csv")
        properties = {"format": stream_format.lower()}
        if request.query_params.get("mappingName"):
            properties["ingestionMappingReference"] = request.query_params["mappingName"]
        from_blob = request.query_params.get("sourceKind", "").lower() == "uri"
        encoding = request.headers.get("content-encoding", "")
        body = await read_body(request, MAX_STREAMING_BYTES)
        outcome = await run_in_threadpool(_ingest, state, database, table, properties, from_blob, encoding, body)
        columns = [
            ("ConsumedRecordsCount", "long"),
            ("UpdatePolicyStatus", "string"),
            ("UpdatePolicyFailureCode", "string"),
            ("UpdatePolicyFailureReason", "string"),
        ]
        return v1_response([V1Table("Table_0", columns, [[outcome.rows, "Inactive", "Unknown", None]])])

    return [Route("/v1/rest/ingest/{database}/{table}", streaming_ingest, methods=["POST"])]
