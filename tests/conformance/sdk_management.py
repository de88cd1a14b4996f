"""Management commands through the official Python client (`execute_mgmt`), against the emulator.

Runs in `.venv-sdk` (see sdk_helpers.py): `.show version`, mappings written with adjacent literals, the streaming
ingestion policy commands on a table and a database, the schema-cache command, and `.show ingestion failures` after
an `.ingest into` that fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from azure.kusto.data import KustoClient
from sdk_helpers import api_error, blob_with_sas, connection, run


def _table(client: KustoClient, database: str, command: str) -> dict[str, Any]:
    """The first table of the answer: column names in order and the rows as dicts."""
    result = client.execute_mgmt(database, command).primary_results[0]
    columns = [column.column_name for column in result.columns]
    return {"columns": columns, "rows": [dict(zip(columns, row.to_list(), strict=True)) for row in result]}


def _mappings(client: KustoClient, database: str) -> dict[str, Any]:
    client.execute_mgmt(
        database,
        ".create table Mapped ingestion json mapping 'Split' '['\n"
        """ '{"column": "id", "Properties": {"Path": "$.id"}},'\n"""
        """ '{"column": "name", "Properties": {"Path": "$[\\'the name\\']"}},'\n"""
        " ']'",
    )
    verbatim = """@'[{"column": "id", "Properties": {"Ordinal": "0"}}]'"""
    client.execute_mgmt(database, f'.create-or-alter table Mapped ingestion csv mapping "Verbatim" {verbatim}')
    json_mappings = _table(client, database, ".show table Mapped ingestion json mappings")["rows"]
    csv_mappings = _table(client, database, ".show table Mapped ingestion csv mappings")["rows"]
    return {
        "json": [(row["Name"], json.loads(row["Mapping"])) for row in json_mappings],
        "csv": [(row["Name"], json.loads(row["Mapping"])) for row in csv_mappings],
        "invalid": api_error(
            lambda: client.execute_mgmt(database, ".create table Mapped ingestion json mapping 'Bad' '[' '{\"column\": }' ']'")
        ),
    }


def _policies(client: KustoClient, database: str) -> dict[str, Any]:
    show = ".show table Mapped policy streamingingestion"
    answer: dict[str, Any] = {"initial": _table(client, database, show)}
    client.execute_mgmt(
        database, """.alter table Mapped policy streamingingestion '{"IsEnabled": true, "HintAllocatedRate": 2.1}'"""
    )
    answer["altered"] = _table(client, database, show)["rows"][0]["Policy"]
    client.execute_mgmt(database, """.alter-merge table Mapped policy streamingingestion '{"IsEnabled": false}'""")
    answer["merged"] = _table(client, database, show)["rows"][0]["Policy"]
    client.execute_mgmt(database, ".delete table Mapped policy streamingingestion")
    answer["deleted"] = _table(client, database, show)["rows"][0]["Policy"]
    client.execute_mgmt(database, f".alter database {database} policy streamingingestion enable")
    answer["database"] = _table(client, database, f".show database {database} policy streamingingestion")["rows"][0]
    answer["invalid"] = api_error(
        lambda: client.execute_mgmt(database, """.alter table Mapped policy streamingingestion '{"HintAllocatedRate": 1}'""")
    )
    answer["clearCache"] = _table(client, database, ".clear database cache streamingingestion schema")
    return answer


def _failures(client: KustoClient, database: str, storage: str) -> dict[str, Any]:
    missing = blob_with_sas(storage, f"conformance-{database.lower()}", "never-written.csv", None)
    refusal = api_error(lambda: client.execute_mgmt(database, f".ingest into table Mapped (h'{missing}') with (format='csv')"))
    failures = _table(client, database, ".show ingestion failures")
    ours = [row for row in failures["rows"] if row["Database"] == database and row["Table"] == "Mapped"]
    return {"refusal": refusal, "columns": failures["columns"], "rows": ours}


def main(url: str, storage: str, database: str, work_dir: Path) -> dict[str, Any]:
    with KustoClient(connection(url)) as client:
        client.execute_mgmt(database, ".create table Mapped (id:long, name:string)")
        return {
            "version": _table(client, database, ".show version"),
            "mappings": _mappings(client, database),
            "policies": _policies(client, database),
            "failures": _failures(client, database, storage),
            "unsupported": api_error(lambda: client.execute_mgmt(database, ".ingest async into table Mapped ('http://x/y.csv')")),
        }


if __name__ == "__main__":
    run(main)
