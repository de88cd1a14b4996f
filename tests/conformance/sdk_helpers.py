"""What the conformance scenarios share; they run in `.venv-sdk`, next to this file, so they import it by name.

Every scenario is started as `python sdk_<name>.py EMULATOR_URL STORAGE_CONNECTION_STRING DATABASE WORK_DIR` and
prints one JSON object: what the official clients saw. The tests in this folder assert on that object.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.kusto.data import KustoClient, KustoConnectionStringBuilder
from azure.kusto.data.exceptions import KustoApiError
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

WAIT_SECONDS = 60


def connection(url: str) -> KustoConnectionStringBuilder:
    """The emulator accepts any token or none; the clients are otherwise configured as for a real cluster."""
    return KustoConnectionStringBuilder.with_no_authentication(url)


def api_error(action: Callable[[], Any]) -> dict[str, Any] | None:
    """Run `action`; the Kusto API error it raised (code, permanence, HTTP status), or None if it succeeded."""
    try:
        action()
    except KustoApiError as error:
        found = error.get_api_error()
        status = error.http_response.status_code if error.http_response is not None else None
        return {"code": found.code, "permanent": found.permanent, "type": found.type, "status": status}
    return None


def count(client: KustoClient, database: str, table: str) -> int:
    return client.execute_query(database, f"['{table}'] | count").primary_results[0][0]["Count"]


def wait_for_count(client: KustoClient, database: str, table: str, expected: int) -> int:
    """Poll until the table holds `expected` rows (queued ingestion finishes in the background); the last count seen."""
    deadline = time.monotonic() + WAIT_SECONDS
    while (seen := count(client, database, table)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return seen


def rows(client: KustoClient, database: str, query: str) -> list[list[Any]]:
    return [row.to_list() for row in client.execute_query(database, query).primary_results[0]]


def blob_with_sas(connection_string: str, container: str, name: str, data: bytes | None) -> str:
    """Upload `data` (unless None: a blob that does not exist) and return its URL with a read SAS."""
    service = BlobServiceClient.from_connection_string(connection_string)
    client = service.get_container_client(container)
    if not client.exists():
        client.create_container()
    blob = client.get_blob_client(name)
    if data is not None:
        blob.upload_blob(data, overwrite=True)
    sas = generate_blob_sas(
        service.account_name,
        container,
        name,
        account_key=service.credential.account_key,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"{blob.url}?{sas}"


def run(main: Callable[[str, str, str, Path], dict[str, Any]]) -> None:
    """Call the scenario with the command-line arguments and print its result as JSON."""
    url, storage, database, work_dir = sys.argv[1:5]
    print(json.dumps(main(url, storage, database, Path(work_dir)), default=str))
