"""An emulator of its own for the queue-based protocol tests (own queues), and a client that speaks the protocol."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from devhost.processes import Azurite, Emulator
from tests.support.stack import AUTO_CREATE, running_emulator

NOTIFICATION_WAIT_SECONDS = 60


@dataclass
class ProtocolClient:
    """What a queued-ingestion client does, by hand: mgmt calls, blob upload, message post, notification read."""

    emulator: Emulator
    connection_string: str

    def mgmt(self, csl: str, database: str = "NetDefaultDB") -> requests.Response:
        return requests.post(f"{self.emulator.url}/v1/rest/mgmt", json={"db": database, "csl": csl}, timeout=30)

    def mgmt_table(self, csl: str, database: str = "NetDefaultDB") -> dict[str, Any]:
        response = self.mgmt(csl, database)
        assert response.status_code == 200, response.text
        return response.json()["Tables"][0]

    def resources(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for kind, url in self.mgmt_table(".get ingestion resources")["Rows"]:
            found.setdefault(kind, []).append(url)
        return found

    def token(self) -> str:
        return self.mgmt_table(".get kusto identity token")["Rows"][0][0]

    def create_table(self, database: str, table: str) -> None:
        self.mgmt_table(f".create table {table} (x:long, y:string)", database)

    def count(self, database: str, table: str) -> int:
        response = requests.post(
            f"{self.emulator.url}/v1/rest/query", json={"db": database, "csl": f"{table} | count"}, timeout=30
        )
        assert response.status_code == 200, response.text
        return response.json()["Tables"][0]["Rows"][0][0]

    def blob(self, container: str, name: str, data: bytes | None) -> str:
        """Upload `data` (unless None) and return the blob URL with a read+delete SAS."""
        service = BlobServiceClient.from_connection_string(self.connection_string)
        client = service.get_blob_client(container, name)
        if data is not None:
            if not service.get_container_client(container).exists():
                service.create_container(container)
            client.upload_blob(data, overwrite=True)
        sas = generate_blob_sas(
            service.account_name,
            container,
            name,
            account_key=service.credential.account_key,
            permission=BlobSasPermissions(read=True, delete=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        return f"{client.url}?{sas}"

    def message(self, database: str, table: str, blob_url: str, **fields: Any) -> dict[str, Any]:
        """A message as the Python SDK writes it (PascalCase, integer enums), reporting everything to queues."""
        message = {
            "Id": str(uuid.uuid4()),
            "BlobPath": blob_url,
            "DatabaseName": database,
            "TableName": table,
            "RetainBlobOnSuccess": True,
            "FlushImmediately": True,
            "ReportLevel": 2,
            "ReportMethod": 0,
            "AdditionalProperties": {"authorizationContext": self.token(), "format": "csv"},
        }
        message.update(fields)
        return message

    def post(self, message: dict[str, Any] | str, queue_url: str | None = None) -> None:
        """Post base64 JSON (as every SDK does) or, for a string, exactly that text."""
        text = message if isinstance(message, str) else base64.b64encode(json.dumps(message).encode()).decode()
        QueueClient.from_queue_url(queue_url or self.resources()["SecuredReadyForAggregationQueue"][0]).send_message(text)

    def notification(self, kind: str, source_id: str) -> dict[str, Any]:
        """The success or failure notification for `source_id`, removed from its queue; fails after a generous wait."""
        queue_type = "SuccessfulIngestionsQueue" if kind == "success" else "FailedIngestionsQueue"
        queue = QueueClient.from_queue_url(self.resources()[queue_type][0], message_decode_policy=TextBase64DecodePolicy())
        seen: list[str] = []
        deadline = time.monotonic() + NOTIFICATION_WAIT_SECONDS
        while time.monotonic() < deadline:
            for page in queue.receive_messages(messages_per_page=32, visibility_timeout=1).by_page():
                for message in page:
                    body = json.loads(message.content)
                    if body["IngestionSourceId"] == source_id:
                        queue.delete_message(message)
                        return body
                    seen.append(body["IngestionSourceId"])
                break
            time.sleep(0.2)
        raise AssertionError(f"no {kind} notification for {source_id} arrived; saw {seen}")


@pytest.fixture(scope="module")
def queued_emulator(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with running_emulator(azurite, tmp_path_factory.mktemp("queued-emulator"), AUTO_CREATE) as service:
        yield service


@pytest.fixture
def protocol(queued_emulator: Emulator, azurite: Azurite) -> ProtocolClient:
    return ProtocolClient(queued_emulator, azurite.connection_string)
