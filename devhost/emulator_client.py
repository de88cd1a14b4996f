"""A small client for the local Kusto emulator: management commands, row counts, operation status, faults.

Used by `make run` (create the demo tables, report rows ingested) and by the end-to-end tests. Built on the
azure-core pipeline like the app's own Kusto client, so retries and transport come from one place.
"""

from __future__ import annotations

from typing import Any

from azure.core import PipelineClient
from azure.core.pipeline.policies import RetryPolicy
from azure.core.rest import HttpRequest, HttpResponse

from shared.names import check_entity_name, quote_path_segment


class EmulatorRequestError(RuntimeError):
    """The emulator answered a request with an error; the message carries its status and Kusto error text."""


class EmulatorClient:
    """Talks to one emulator at `url` (http://127.0.0.1:PORT)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self._base = url.rstrip("/")
        self._client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
            self._base, policies=[RetryPolicy(retry_total=10, retry_status=10, retry_backoff_factor=0.2)]
        )
        self._timeout = timeout

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        url = self._base + path
        request = HttpRequest(method, url, json=body) if body is not None else HttpRequest(method, url)
        response = self._client.send_request(request, timeout=self._timeout)
        if response.status_code >= 400:
            raise EmulatorRequestError(f"{method} {path}: HTTP {response.status_code}: {response.text()[:500]}")
        return response.json() if response.content else None

    def mgmt(self, database: str | None, command: str) -> Any:
        """Run a management command (`.create table ...`) through POST /v1/rest/mgmt."""
        body = {"csl": command} if database is None else {"db": check_entity_name(database, "database"), "csl": command}
        return self._send("POST", "/v1/rest/mgmt", body)

    def query_rows(self, database: str, query: str) -> list[list[Any]]:
        """Rows of the primary result of a KQL query (POST /v2/rest/query)."""
        frames = self._send("POST", "/v2/rest/query", {"db": check_entity_name(database, "database"), "csl": query})
        primary = next(frame for frame in frames if frame.get("TableKind") == "PrimaryResult")
        return primary["Rows"]

    def count(self, database: str, table: str) -> int:
        return int(self.query_rows(database, f"['{check_entity_name(table, 'table')}'] | count")[0][0])

    def operation_status(self, database: str, table: str, operation_id: str) -> dict[str, Any]:
        path = (
            f"/v1/rest/ingestion/queued/{quote_path_segment(check_entity_name(database, 'database'))}/"
            f"{quote_path_segment(check_entity_name(table, 'table'))}/{quote_path_segment(operation_id)}?details=true"
        )
        return self._send("GET", path)

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """PUT /admin/faults, e.g. `set_faults(throttleRate=0.5)`."""
        return self._send("PUT", "/admin/faults", faults)

    def stats(self) -> dict[str, Any]:
        return self._send("GET", "/admin/stats")
