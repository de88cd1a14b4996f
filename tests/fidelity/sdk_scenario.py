"""Drives the emulator with the official Kusto SDKs, unchanged; prints what they saw as one JSON object.

Runs in `.venv-sdk` (azure-kusto-data / azure-kusto-ingest pin storage SDKs the app's environment does not
have), started as a subprocess by `test_official_clients.py`:

    .venv-sdk/bin/python tests/fidelity/sdk_scenario.py EMULATOR_URL STORAGE_CONNECTION_STRING DATABASE TABLE WORK_DIR

What it does, in the order a user of the SDKs would: create a table and list tables (KustoClient, mgmt),
ingest with QueuedIngestClient (a blob by SAS URL, several local files, and one missing blob that must
fail), read the success and failure status queues, then query the table (KustoClient, v2 query).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.kusto.data import KustoClient, KustoConnectionStringBuilder
from azure.kusto.data.data_format import DataFormat
from azure.kusto.data.exceptions import KustoApiError
from azure.kusto.ingest import BlobDescriptor, IngestionProperties, QueuedIngestClient, ReportLevel
from azure.kusto.ingest.status import KustoIngestStatusQueues
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

FILES_TO_INGEST = 4  # several ingests through one client: the SDK must fetch resources and token only once
STATUS_WAIT_SECONDS = 120
# pop(n) asks each queue for n + 1 messages, and storage allows at most 32 per request.
STATUS_PAGE = 16


def _blob_with_sas(service: BlobServiceClient, container: str, name: str, data: bytes | None) -> str:
    """Upload `data` (unless None) and return the blob's URL with a read SAS."""
    client = service.get_blob_client(container, name)
    if data is not None:
        client.upload_blob(data, overwrite=True)
    sas = generate_blob_sas(
        service.account_name,
        container,
        name,
        account_key=service.credential.account_key,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"{client.url}?{sas}"


def _drain(queues: KustoIngestStatusQueues, success_ids: set[str], failure_ids: set[str]) -> tuple[list[Any], list[Any]]:
    """Pop status messages until those of our sources arrived or the wait ran out (the caller checks them).

    Other tests may share the emulator's status queues, so only messages about our sources are kept.
    """
    succeeded: list[Any] = []
    failed: list[Any] = []
    deadline = time.monotonic() + STATUS_WAIT_SECONDS
    while (len(succeeded) < len(success_ids) or len(failed) < len(failure_ids)) and time.monotonic() < deadline:
        ours = success_ids | failure_ids
        succeeded += [message for message in queues.success.pop(STATUS_PAGE) if message.IngestionSourceId in ours]
        failed += [message for message in queues.failure.pop(STATUS_PAGE) if message.IngestionSourceId in ours]
        time.sleep(0.2)
    return succeeded, failed


def _status(message: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: getattr(message, key) for key in keys}


def main(url: str, connection_string: str, database: str, table: str, work_dir: Path) -> dict[str, Any]:
    kcsb = KustoConnectionStringBuilder.with_no_authentication(url)
    data_client = KustoClient(kcsb)
    ingest_client = QueuedIngestClient(kcsb)
    result: dict[str, Any] = {}

    data_client.execute_mgmt(database, f".create table {table} (x:long, y:string)")
    shown = data_client.execute_mgmt(database, ".show tables").primary_results[0]
    result["tables"] = [row["TableName"] for row in shown]

    properties = IngestionProperties(database, table, data_format=DataFormat.CSV, report_level=ReportLevel.FailuresAndSuccesses)
    storage = BlobServiceClient.from_connection_string(connection_string)
    container = f"fidelity-{table.lower()}"
    storage.create_container(container)
    blob_url = _blob_with_sas(storage, container, "rows.csv", b"1,a\n2,b\n3,a\n")
    source_ids = [str(ingest_client.ingest_from_blob(BlobDescriptor(blob_url, 12), properties).source_id)]
    for index in range(FILES_TO_INGEST):
        path = work_dir / f"file{index}.csv"
        path.write_text(f"{10 + index},a\n{20 + index},c\n")
        source_ids.append(str(ingest_client.ingest_from_file(str(path), properties).source_id))
    missing_url = _blob_with_sas(storage, container, "missing.csv", None)
    missing_id = str(ingest_client.ingest_from_blob(BlobDescriptor(missing_url, 10), properties).source_id)
    result["sourceIds"] = source_ids
    result["missingSourceId"] = missing_id

    succeeded, failed = _drain(KustoIngestStatusQueues(ingest_client), set(source_ids), {missing_id})
    common = ("OperationId", "Database", "Table", "IngestionSourceId", "IngestionSourcePath", "RootActivityId")
    result["successes"] = [_status(message, (*common, "SucceededOn")) for message in succeeded]
    failure_keys = ("FailedOn", "Details", "ErrorCode", "FailureStatus", "OriginatesFromUpdatePolicy", "ShouldRetry")
    result["failures"] = [_status(message, (*common, *failure_keys)) for message in failed]

    count = data_client.execute_query(database, f"{table} | count").primary_results[0]
    result["count"] = count[0]["Count"]
    taken = data_client.execute_query(database, f"{table} | take 5").primary_results[0]
    result["take"] = {"columns": [column.column_name for column in taken.columns], "rows": [row.to_list() for row in taken]}
    summary = data_client.execute_query(database, f"{table} | summarize n = count() by y | order by y asc").primary_results[0]
    result["summarize"] = {row["y"]: row["n"] for row in summary}
    try:
        data_client.execute_query(database, f"{table} | make-series count() on x step 1")
        result["unsupported"] = None
    except KustoApiError as error:
        api_error = error.get_api_error()
        result["unsupported"] = {"code": api_error.code, "description": api_error.description, "permanent": api_error.permanent}
    return result


if __name__ == "__main__":
    emulator_url, storage_connection, database_name, table_name, work = sys.argv[1:6]
    print(json.dumps(main(emulator_url, storage_connection, database_name, table_name, Path(work)), default=str))
