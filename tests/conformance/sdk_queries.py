"""Queries through the official Python client, against the emulator: several statements, v2 frames, streaming reads.

Runs in `.venv-sdk` (see sdk_helpers.py). The table is filled with `.ingest inline`, then queried through
`execute_query` (the v2 endpoint, read whole), `execute_streaming_query` (the same endpoint, read frame by frame
with ijson) and the client's frame parser itself, which checks the order Kusto sends frames in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from azure.kusto.data import KustoClient
from azure.kusto.data._models import WellKnownDataSet
from sdk_helpers import api_error, connection, run

TWO_RESULTS = "let low = 2;\nPeople | where id >= low | count;\nPeople | where id >= low | project id, name | order by id asc"


def _frames(client: KustoClient, database: str) -> list[list[Any]]:
    """(FrameType, TableKind, TableName, TableId) of every frame, as the client's streaming parser reads them."""
    seen = []
    # A private method, but the one the SDK's own e2e suite checks frame order with.
    for frame in client._execute_streaming_query_parsed(database, TWO_RESULTS):
        if "Rows" in frame and not isinstance(frame["Rows"], list):
            frame["Rows"] = list(frame["Rows"])
        seen.append([frame["FrameType"].name, frame.get("TableKind"), frame.get("TableName"), frame.get("TableId")])
    return seen


def _streaming(client: KustoClient, database: str) -> dict[str, Any]:
    result = client.execute_streaming_query(database, TWO_RESULTS)
    result.set_skip_incomplete_tables(True)
    tables = [[row.to_list() for row in primary] for primary in result.iter_primary_results()]
    return {"tables": tables, "finished": result.finished, "errors": result.errors_count}


def _whole(client: KustoClient, database: str) -> dict[str, Any]:
    response = client.execute_query(database, TWO_RESULTS)
    properties = next(table for table in response.tables if table.table_kind == WellKnownDataSet.QueryProperties)
    return {
        "kinds": [table.table_kind.value for table in response.tables],
        "primaries": [[row.to_list() for row in table] for table in response.primary_results],
        "visualizations": [row.to_list() for row in properties],
        "errors": response.errors_count,
    }


def main(url: str, storage: str, database: str, work_dir: Path) -> dict[str, Any]:
    with KustoClient(connection(url)) as client:
        client.execute_mgmt(database, ".create table People (id:long, name:string, joined:datetime)")
        client.execute_mgmt(database, ".ingest inline into table People <| 1,ann,2024-01-01\n2,bob,2024-02-01\n3,cy,2024-03-01")
        return {
            "whole": _whole(client, database),
            "streaming": _streaming(client, database),
            "frames": _frames(client, database),
            "onlyLet": api_error(lambda: client.execute_query(database, "let a = 1; let b = 2;")),
            "management": api_error(lambda: client.execute_query(database, "People | count; .show tables")),
        }


if __name__ == "__main__":
    run(main)
