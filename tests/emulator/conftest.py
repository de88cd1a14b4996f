"""Helpers for the emulator tests: blobs in Azurite with SAS URLs, calls to the emulator, waiting for outcomes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, ContainerClient, generate_blob_sas

from devhost.processes import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, Emulator
from tests.support.stack import running_emulator
from tests.support.waiting import wait_for


@dataclass
class KustoCalls:
    """Thin HTTP calls to one emulator, as a client would make them."""

    url: str
    token: str | None = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def mgmt(self, database: str | None, csl: str) -> requests.Response:
        return requests.post(f"{self.url}/v1/rest/mgmt", json={"db": database, "csl": csl}, headers=self._headers(), timeout=30)

    def mgmt_rows(self, database: str | None, csl: str) -> list[dict[str, Any]]:
        response = self.mgmt(database, csl)
        assert response.status_code == 200, response.text
        table = response.json()["Tables"][0]
        names = [column["ColumnName"] for column in table["Columns"]]
        return [dict(zip(names, row, strict=True)) for row in table["Rows"]]

    def submit(self, database: str, table: str, blobs: list[dict[str, Any]], **properties: Any) -> requests.Response:
        body = {"blobs": blobs, "properties": {"format": "csv", "enableTracking": True, **properties}}
        return requests.post(
            f"{self.url}/v1/rest/ingestion/queued/{quote(database, safe='')}/{quote(table, safe='')}",
            json=body,
            headers=self._headers(),
            timeout=30,
        )

    def status(self, database: str, table: str, operation_id: str, details: bool = True) -> requests.Response:
        return requests.get(
            f"{self.url}/v1/rest/ingestion/queued/{database}/{table}/{quote(operation_id, safe='')}",
            params={"details": str(details).lower()},
            headers=self._headers(),
            timeout=30,
        )

    def wait(self, database: str, table: str, operation_id: str, timeout: float = 60) -> dict[str, Any]:
        """Poll the status until no blob is in progress; fails the test if that does not happen in time."""

        def settled() -> dict[str, Any] | None:
            response = self.status(database, table, operation_id)
            assert response.status_code == 200, response.text
            body = response.json()
            return body if body["status"]["inProgress"] == 0 else None

        return wait_for(settled, f"operation {operation_id} to settle", timeout=timeout, interval=0.1)

    def ingest(self, database: str, table: str, urls: list[str], **properties: Any) -> dict[str, Any]:
        response = self.submit(database, table, [{"url": url, "sourceId": f"s{i}"} for i, url in enumerate(urls)], **properties)
        assert response.status_code == 200, response.text
        return self.wait(database, table, response.json()["ingestionOperationId"])

    def query(self, database: str, kql: str) -> list[list[Any]]:
        response = requests.post(
            f"{self.url}/v2/rest/query", json={"db": database, "csl": kql}, headers=self._headers(), timeout=30
        )
        assert response.status_code == 200, response.text
        frames = [frame for frame in response.json() if frame.get("TableKind") == "PrimaryResult"]
        return frames[0]["Rows"]

    def count(self, database: str, table: str) -> int:
        return self.query(database, f"['{table}'] | count")[0][0]

    def healthy(self) -> bool:
        return requests.get(f"{self.url}/admin/health", timeout=10).status_code == 200


@dataclass
class Staging:
    """A container in Azurite; `put` uploads a blob and returns its SAS URL."""

    container: ContainerClient

    def put(self, name: str, data: bytes) -> str:
        self.container.upload_blob(name, data, overwrite=True)
        return self.sas_url(name)

    def sas_url(self, name: str, permission: BlobSasPermissions | None = None) -> str:
        sas = generate_blob_sas(
            AZURITE_ACCOUNT,
            self.container.container_name,
            name,
            account_key=AZURITE_KEY,
            permission=permission or BlobSasPermissions(read=True, delete=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        return f"{self.container.get_blob_client(name).url}?{sas}"

    def plain_url(self, name: str) -> str:
        return self.container.get_blob_client(name).url


@pytest.fixture
def kusto(emulator: Emulator) -> KustoCalls:
    return KustoCalls(emulator.url)


@pytest.fixture
def staging(azurite: Azurite, unique_name: str) -> Iterator[Staging]:
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(unique_name)
    container.create_container()
    yield Staging(container)
    container.delete_container()


@pytest.fixture
def db_table(kusto: KustoCalls, unique_name: str) -> Callable[[str], tuple[str, str]]:
    """Creates table `unique_name` in database `Db_<unique>` with the given column list; returns (db, table)."""

    def create(columns: str = "name:string, n:long, ts:datetime, ok:bool") -> tuple[str, str]:
        database, table = f"Db_{unique_name}", unique_name
        kusto.mgmt_rows(database, f".create table {table} ({columns})")
        return database, table

    return create


@pytest.fixture
def start_own_emulator(azurite: Azurite, tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    """Starts emulators with extra flags (stopped at the end); `data_dir` defaults to one per test, the log is
    `emulator.log` beside it."""
    with contextlib.ExitStack() as started:

        def start(*extra_args: str, data_dir: Path | None = None) -> Emulator:
            directory = data_dir or tmp_path / "emulator"
            return started.enter_context(
                running_emulator(azurite, directory, *extra_args, log_path=directory.parent / "emulator.log")
            )

        yield start
